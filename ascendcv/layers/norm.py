"""Normalisation layers with PyTorch semantics, names and state-dict keys (eps 1e-5).

* :class:`LayerNorm` -- ``nn.LayerNorm(C)`` over the last dimension, weights ``weight``/``bias``;
* :class:`BatchNorm2d` -- ``nn.BatchNorm2d(C)`` on NHWC, running statistics as in PyTorch;
* :class:`InstanceNorm2d` -- ``nn.InstanceNorm2d(C)`` (no affine, no running statistics).

Each exposes ``torch_weights()`` (see :mod:`ascendcv.layers.torch_compat`) and ``get_config()``.
"""
import tensorflow as tf

from ascendcv.layers.torch_compat import ConfigKeysLayer, identity


class LayerNorm(ConfigKeysLayer):
    """``nn.LayerNorm(normalized_shape, eps=1e-5, elementwise_affine)`` over the last dimension.

    ``y = (x - mean) / sqrt(var + eps) * weight + bias`` with the biased variance over the last
    axis; input and output ``[..., normalized_shape]``. Weights ``weight`` (ones) and ``bias``
    (zeros), shape ``(normalized_shape,)``, when ``elementwise_affine``.
    """

    config_keys = ('normalized_shape', 'eps', 'elementwise_affine')

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, **kwargs):
        super().__init__(**kwargs)
        self.normalized_shape, self.eps = int(normalized_shape), float(eps)
        self.elementwise_affine = bool(elementwise_affine)
        c = (self.normalized_shape,)
        if self.elementwise_affine:
            self.weight = self.add_weight(name='weight', shape=c, initializer='ones')
            self.bias = self.add_weight(name='bias', shape=c, initializer='zeros')
        else:
            self.weight = self.bias = None
        self.built = True  # weights exist from construction: checkpoints load before a call

    def call(self, x):
        mean, var = tf.nn.moments(x, axes=[-1], keepdims=True)
        y = (x - mean) * tf.math.rsqrt(var + self.eps)
        return y * self.weight + self.bias if self.elementwise_affine else y

    def torch_weights(self):
        if not self.elementwise_affine:
            return {}
        return {'weight': (self.weight, identity), 'bias': (self.bias, identity)}


class BatchNorm2d(ConfigKeysLayer):
    """``nn.BatchNorm2d(C)`` (eps 1e-5, momentum 0.1) on NHWC ``[N, H, W, C]``.

    Training: batch statistics over N, H, W (biased variance to normalise); running mean and
    running (unbiased) variance updated as in PyTorch. Inference: running statistics.
    Weights ``gamma``, ``beta``, ``running_mean``, ``running_var`` ``(C,)`` (PyTorch ``weight``,
    ``bias``, ``running_mean``, ``running_var``).
    """

    config_keys = ('num_features', 'eps', 'momentum')

    def __init__(self, num_features, eps=1e-5, momentum=0.1, **kwargs):
        super().__init__(**kwargs)
        self.num_features, self.eps, self.momentum = int(num_features), float(eps), float(momentum)
        c = (self.num_features,)
        self.gamma = self.add_weight(name='gamma', shape=c, initializer='ones')
        self.beta = self.add_weight(name='beta', shape=c, initializer='zeros')
        self.running_mean = self.add_weight(name='running_mean', shape=c, initializer='zeros',
                                            trainable=False)
        self.running_var = self.add_weight(name='running_var', shape=c, initializer='ones',
                                           trainable=False)
        self.built = True

    def call(self, x, training=False):
        if training:
            mean, var = tf.nn.moments(x, axes=[0, 1, 2])
            n = tf.cast(tf.reduce_prod(tf.shape(x)[:3]), x.dtype)
            unbiased = var * n / tf.maximum(n - 1.0, 1.0)
            m = self.momentum
            self.running_mean.assign((1 - m) * self.running_mean + m * mean)
            self.running_var.assign((1 - m) * self.running_var + m * unbiased)
        else:
            mean, var = self.running_mean, self.running_var
        return (x - mean) * tf.math.rsqrt(var + self.eps) * self.gamma + self.beta

    def torch_weights(self):
        return {'weight': (self.gamma, identity), 'bias': (self.beta, identity),
                'running_mean': (self.running_mean, identity),
                'running_var': (self.running_var, identity)}


class InstanceNorm2d(ConfigKeysLayer):
    """``nn.InstanceNorm2d(C)`` (no affine, no running stats, eps 1e-5) on NHWC: each image and
    channel normalised over H, W. ``[N, H, W, C]`` -> same shape; no weights."""

    config_keys = ('num_features', 'eps')

    def __init__(self, num_features=None, eps=1e-5, **kwargs):
        super().__init__(**kwargs)
        self.num_features = None if num_features is None else int(num_features)
        self.eps = float(eps)
        self.built = True

    def call(self, x, training=False):
        mean, var = tf.nn.moments(x, axes=[1, 2], keepdims=True)
        return (x - mean) * tf.math.rsqrt(var + self.eps)
