"""Two-layer perceptron of the (video) Swin / RVRT transformers: ``fc2(GELU(fc1(x)))``."""
import tensorflow as tf

from ascendcv.layers.linear import Linear
from ascendcv.layers.precision import link_reduced
from ascendcv.layers.torch_compat import ConfigKeysLayer


class Mlp(ConfigKeysLayer):
    """``Mlp(in_features, hidden_features, out_features)`` of RVRT / Swin: Linear - GELU - Linear.

    Args:
        in_features (int): input channels.
        hidden_features (int): ``fc1`` width (default ``in_features``).
        out_features (int): output channels (default ``in_features``).
        approximate_gelu (bool): False = exact erf GELU (PyTorch ``nn.GELU()``, the official RVRT);
            True = the tanh approximation (MindSpore ``nn.GELU()``'s default, mindediting weights).

    Input ``[..., in_features]`` -> ``[..., out_features]``; weights ``fc1.*``, ``fc2.*`` (Linear).
    """

    config_keys = ('in_features', 'hidden_features', 'out_features', 'approximate_gelu')

    def __init__(self, in_features, hidden_features=None, out_features=None,
                 approximate_gelu=False, **kwargs):
        super().__init__(**kwargs)
        self.in_features = int(in_features)
        self.hidden_features = int(hidden_features or in_features)
        self.out_features = int(out_features or in_features)
        self.approximate_gelu = bool(approximate_gelu)
        self.fc1 = Linear(self.in_features, self.hidden_features, name='fc1')
        self.fc2 = Linear(self.hidden_features, self.out_features, name='fc2')
        self.built = True  # weights exist from construction

    def link_reduced_chains(self):
        """fc1 - GELU - fc2 may stay bfloat16 (:mod:`ascendcv.layers.precision`)."""
        return link_reduced(self.fc1, (), self.fc2)

    def call(self, x):
        return self.fc2(gelu(self.fc1(x), self.approximate_gelu))


def gelu(x, approximate=False):
    """GELU. Exact: ``0.5 x (1 + erf(x / sqrt 2))``, PyTorch's formula, written with ``Erf``
    (``tf.nn.gelu`` uses ``Erfc``, which tf2onnx cannot convert). Approximate: the tanh form."""
    if approximate:
        return tf.nn.gelu(x, approximate=True)
    return 0.5 * x * (1.0 + tf.math.erf(x * tf.constant(0.5 ** 0.5, x.dtype)))
