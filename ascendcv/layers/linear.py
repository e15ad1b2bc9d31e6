"""``torch.nn.Linear`` with PyTorch weight names and initialisation."""
import tensorflow as tf

from ascendcv.layers.precision import ReducedPrecisionLayer, lowered, with_bias
from ascendcv.layers.torch_compat import TorchWeightLayer, freeze_zeros, linear_to_tf, torch_uniform


class Linear(ReducedPrecisionLayer, TorchWeightLayer):
    """``nn.Linear(in_features, out_features, bias)``; input ``[..., in]`` -> ``[..., out]``.

    Weights: ``kernel`` (in, out) (PyTorch ``weight`` is (out, in)), ``bias`` (out,).
    ``keep_zeros``: exactly-zero weights receive no gradient (pruned weights stay pruned,
    :func:`ascendcv.layers.torch_compat.freeze_zeros`).
    """

    weight_layout = staticmethod(linear_to_tf)
    config_keys = ('in_features', 'out_features', 'bias', 'keep_zeros')

    def __init__(self, in_features, out_features, bias=True, keep_zeros=False, **kwargs):
        super().__init__(**kwargs)
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.keep_zeros = bool(keep_zeros)
        self.add_torch_weights((self.in_features, self.out_features), self.out_features, bias,
                               torch_uniform(self.in_features))

    def call(self, x):
        return self.multiply(x, freeze_zeros(self.kernel) if self.keep_zeros else self.kernel)

    def multiply(self, x, kernel):
        """``x @ kernel + bias`` with another ``kernel`` of the same shape (e.g. a
        fake-quantized one); the product in ``compute_precision``."""
        x, kernel = lowered(self, x, kernel)
        return with_bias(self, tf.matmul(x, kernel), self.bias)
