"""The Q-SCI task: :class:`ascendvsr.tasks.efficientsci.EfficientSciTask` (same inputs, checks,
evaluation and export) with the official quantization-aware training start.

Training is one :class:`ascendcv.runner.task.Phase` whose ``on_start`` (a fresh run, or a resume
at step 0) does what the first iteration of the official ``tools/train.py`` does before its
optimizer step:

1. ``qsci.init_from`` (optional): copy a full-precision EfficientSCI into the model by name and
   shape, the official ``checkpoints="checkpoints/full_precision.pth"`` start
   (:func:`ascendvsr.convert.qsci.init_qsci_from_float`; only while no quantizer is initialised,
   so a resumed run is never overwritten);
2. calibration: one eager training-mode forward on the batch of the first step (the same batch
   that step then trains on), which initialises every quantizer by the official LSQ rule
   (:meth:`ascendvsr.models.qsci.QSCI.calibrate`); idempotent.

Then every step is quantization-aware training (straight-through gradients, LSQ gradient scale)
of every variable -- weights, biases, step sizes, zero points and ``moveq``/``movek`` -- with
one Adam, as the official ``build_optimizer(model.parameters())``. Loss (``qsci.rmse_loss``,
default True): ``sqrt(MSE)`` as ``tools/train.py``.

Evaluation of a model whose quantizers were never initialised is refused before a graph is
built (:class:`ascendcv.layers.fake_quant.QuantizerNotInitializedError`).
"""
from ascendcv.layers.fake_quant import QuantizerNotInitializedError
from ascendcv.runner.task import Phase
from ascendvsr.tasks.efficientsci import EfficientSciTask

__all__ = ['QSciTask']


class QSciTask(EfficientSciTask):
    """SCI task of Q-SCI (see the module docstring)."""

    def loss(self):
        if not self.cfg.qsci.rmse_loss:
            return super(EfficientSciTask, self).loss()
        import tensorflow as tf

        def rmse(pred, target):
            return tf.sqrt(tf.reduce_mean(tf.square(tf.cast(pred, tf.float32) - target)))
        return rmse

    def training_phases(self, model):
        return [Phase(until=int(self.cfg.solver.total_steps), on_start=self.start_qat,
                      description=f'Q-SCI {model.bit_depth}-bit: calibration on the first batch '
                                  f'(official LSQ initialisation), then quantization-aware '
                                  f'training')]

    def start_qat(self, trainer):
        """``Phase.on_start``: full-precision initialisation (fresh model only) and calibration
        on the first step's batch; True when the weights changed."""
        model = trainer.model
        if not model.fake_quant:
            return False
        left = model.uninitialized_quantizers()
        if not left:
            return False
        log = trainer.log.info
        if self.cfg.qsci.init_from and len(left) == len(model.quantizers()):
            from ascendvsr.convert.qsci import init_qsci_from_float
            init_qsci_from_float(model, self.cfg.qsci.init_from, logger=log)
        inputs, _ = next(iter(trainer.pipeline_fn(int(trainer.step.numpy()))))
        n = model.calibrate(inputs)
        log(f'Q-SCI calibration: {n} quantizers initialised on the first training batch '
            f'({tuple(inputs[0].shape)} measurements)')
        return True

    def integer_model(self, model):
        """``model.precision=int8``: the twin on oneDNN's int8 convolutions in the TF graph
        (:func:`ascendvsr.compression.qsci_int8_tf.build_int8_tf`; every quantizer exact), or
        None where this TF has no such kernels (then onnxruntime's static quantization)."""
        from ascendcv.layers.int8_conv import integer_kernels_available
        from ascendvsr.compression.qsci_int8_tf import build_int8_tf
        if not model.fake_quant or not integer_kernels_available()[0]:
            return None
        return build_int8_tf(model)

    def predict_fn(self, model):
        if self.is_live(model) and model.fake_quant:
            left = model.uninitialized_quantizers()
            if left:
                raise QuantizerNotInitializedError(
                    f'{self.cfg.model.name}: {len(left)} fake quantizers were never initialised '
                    f'({", ".join(left[:4])} ...): evaluate a calibrated model (model.checkpoint '
                    f'of a trained / converted Q-SCI; an official .pth through --mode convert)')
        return super().predict_fn(model)
