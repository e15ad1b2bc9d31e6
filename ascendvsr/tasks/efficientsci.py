"""The EfficientSCI task: :class:`ascendvsr.tasks.sci.SciTask` (the network is called as
``model((meas_re, mask))``, exactly the official ``y / Phi_s`` and ``Phi`` inputs, and returns
frames last) with the official training loss and input checks before a graph runs.

* Loss (``efficientsci.rmse_loss``, default True): the official ``tools/train.py`` trains on
  ``sqrt(MSELoss(out, gt))``, the root of the mean squared error over the batch; False uses
  ``solver.loss``.
* Frames per measurement and colour come from the live model (``compress_ratio``, ``color``).
* Reconstruction (:meth:`predict_fn`): measurements whose height/width are odd, or masks of
  another frame count, are refused with a :class:`ascendcv.dataloader.sci.SciDataError` naming
  the shapes before the (dynamic-shape) graph runs; the graph is compiled with XLA when the model
  was built with ``jit_compile`` (``efficientsci.jit_compile``).
"""
import numpy as np

from ascendcv.dataloader.sci import SciDataError
from ascendvsr.tasks.sci import SciTask

__all__ = ['EfficientSciTask', 'check_measurement']


def check_measurement(meas, mask, frames):
    """Refuse ``meas [N, H, W]`` / ``mask [(N,) H, W, B]`` an EfficientSCI of ``frames`` frames
    per measurement cannot reconstruct (odd sizes, other frame count, size mismatch)."""
    ms, ks = tuple(np.shape(meas)), tuple(np.shape(mask))
    if len(ms) != 3 or len(ks) not in (3, 4):
        raise SciDataError(f'EfficientSCI takes meas [N, H, W] and mask [H, W, B]; got meas {ms}, '
                           f'mask {ks}')
    if ks[-1] != frames:
        raise SciDataError(f'the mask has {ks[-1]} frames per measurement but the EfficientSCI '
                           f'model reconstructs {frames} (sci.compression_ratio); mask {ks}')
    if ms[1:] != ks[-3:-1]:
        raise SciDataError(f'measurement size {ms[1:]} differs from the mask size {ks[-3:-1]}')
    if ms[1] % 2 or ms[2] % 2:
        raise SciDataError(f'EfficientSCI needs an even measurement height and width (its '
                           f'stride-2 feature extraction halves them); got {ms[1]}x{ms[2]}')


class EfficientSciTask(SciTask):
    """SCI task of EfficientSCI (see the module docstring)."""

    def loss(self):
        if not self.cfg.efficientsci.rmse_loss:
            return super().loss()
        import tensorflow as tf

        def rmse(pred, target):
            return tf.sqrt(tf.reduce_mean(tf.square(tf.cast(pred, tf.float32) - target)))
        return rmse

    def compression_ratio(self, model):
        if self.is_live(model):
            return int(model.compress_ratio)
        return super().compression_ratio(model)

    def is_color(self, model):
        if self.is_live(model):
            return bool(model.color)
        return super().is_color(model)

    def predict_fn(self, model):
        if not self.is_live(model):
            return super().predict_fn(model)
        import tensorflow as tf
        graph = tf.function(lambda meas, mask: self.serve(model, meas, mask),
                            jit_compile=bool(getattr(model, 'jit_compile', False)),
                            input_signature=[tf.TensorSpec([None, None, None], tf.float32),
                                             tf.TensorSpec([None, None, None], tf.float32)])
        frames = self.compression_ratio(model)

        def predict(meas, mask):
            check_measurement(meas, mask, frames)
            return graph(meas, mask)
        return predict

    def example_size(self, model):
        return (32, 32)

    def export_meta(self, model):
        meta = super().export_meta(model)
        meta['sci']['model'] = dict(getattr(model, 'arch', {}))
        return meta

