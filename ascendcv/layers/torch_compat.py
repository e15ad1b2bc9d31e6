"""Naming and layout bridge between our Keras layers and PyTorch state dicts.

Every layer whose weights come from a PyTorch module implements ``torch_weights()``, returning
``{torch_param_name: (variable, to_tf)}`` where ``to_tf`` maps the PyTorch array layout to ours
(e.g. OIHW -> HWIO). Composite layers need nothing: :func:`torch_state_variables` walks their
public attributes (layers, lists and dicts of layers) in definition order and builds the same
dotted key names a PyTorch ``state_dict()`` has, provided attributes are named like the
PyTorch modules (which our models do, following the official code).
"""
import math
from collections import OrderedDict

import keras
import numpy as np
import tensorflow as tf


def oihw_to_hwio(w):
    """Conv2d weight (out, in, kh, kw) -> TF (kh, kw, in, out)."""
    return np.transpose(w, (2, 3, 1, 0))


def oidhw_to_dhwio(w):
    """Conv3d weight (out, in, kd, kh, kw) -> TF (kd, kh, kw, in, out)."""
    return np.transpose(w, (2, 3, 4, 1, 0))


def iohw_to_hwio(w):
    """ConvTranspose2d weight (in, out, kh, kw) -> our (kh, kw, in, out)."""
    return np.transpose(w, (2, 3, 0, 1))


def iodhw_to_dhwoi(w):
    """ConvTranspose3d weight (in, out, kd, kh, kw) -> tf.nn.conv3d_transpose (kd, kh, kw, out, in)."""
    return np.transpose(w, (2, 3, 4, 1, 0))


def linear_to_tf(w):
    """Linear weight (out, in) -> TF (in, out)."""
    return np.transpose(w, (1, 0))


def identity(w):
    return w


def torch_uniform(fan_in):
    """PyTorch's default init of conv / linear weights and biases: ``kaiming_uniform(a=sqrt(5))``
    = ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``."""
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    return keras.initializers.RandomUniform(-bound, bound)


def freeze_zeros(kernel):
    """``kernel`` with no gradient through its exactly-zero entries, so they stay zero while
    training: the effect of ``torch.nn.utils.prune``'s ``weight_orig * weight_mask``
    re-parametrisation without a separate mask variable. Same shape as ``kernel``."""
    mask = tf.stop_gradient(tf.cast(tf.not_equal(kernel, 0.0), kernel.dtype))
    return kernel * mask


class ConfigKeysLayer(keras.layers.Layer):
    """A layer whose ``get_config()`` holds its constructor arguments ``config_keys``, read back
    from the attributes of the same names (``config_aliases`` maps a key to another attribute),
    so ``type(layer).from_config(layer.get_config())`` rebuilds it."""
    config_keys = ()
    config_aliases = {}

    def get_config(self):
        cfg = super().get_config()
        cfg.update({k: getattr(self, self.config_aliases.get(k, k)) for k in self.config_keys})
        return cfg


class TorchWeightLayer(ConfigKeysLayer):
    """Base of layers that stand for a PyTorch module with ``weight`` and an optional ``bias``.

    Subclasses set ``weight_layout`` (PyTorch layout -> ours, e.g. :func:`oihw_to_hwio`) and
    ``config_keys`` (their constructor arguments; ``bias`` is read back from ``use_bias``), and
    create the weights with :meth:`add_torch_weights`.
    """
    weight_layout = staticmethod(identity)
    config_aliases = {'bias': 'use_bias'}

    def add_torch_weights(self, kernel_shape, out_channels, bias, init, bias_init=None):
        """Create ``kernel`` (our layout) and, when ``bias``, ``bias`` ``(out_channels,)``."""
        self.use_bias = bool(bias)
        self.kernel = self.add_weight(name='kernel', shape=tuple(kernel_shape), initializer=init)
        self.bias = (self.add_weight(name='bias', shape=(int(out_channels),),
                                     initializer=bias_init or init)
                     if self.use_bias else None)
        self.built = True  # weights exist from construction: checkpoints load before a call

    def torch_weights(self):
        w = {'weight': (self.kernel, type(self).weight_layout)}
        if self.bias is not None:
            w['bias'] = (self.bias, identity)
        return w


def _children(layer):
    """Yield (name, child) for the sub-layers of ``layer`` in attribute definition order."""
    for name, value in vars(layer).items():
        if name.startswith('_'):
            continue
        if isinstance(value, keras.layers.Layer):
            yield name, value
        elif isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                if isinstance(item, keras.layers.Layer):
                    yield f'{name}.{i}', item
        elif isinstance(value, dict):
            for key, item in value.items():
                if isinstance(item, keras.layers.Layer):
                    yield f'{name}.{key}', item


def named_layers(layer, prefix=''):
    """Yield ``(dotted name, layer)`` for ``layer`` (name ``prefix``, '' for the root) and every
    sub-layer, named like the PyTorch modules (the state-dict prefixes)."""
    yield prefix, layer
    for name, child in _children(layer):
        yield from named_layers(child, f'{prefix}.{name}' if prefix else name)


def torch_state_variables(layer, prefix=''):
    """Return ``OrderedDict{torch_key: (variable, to_tf)}`` for a built layer tree."""
    out = OrderedDict()
    own = getattr(layer, 'torch_weights', None)
    if callable(own):
        for key, pair in own().items():
            out[prefix + key] = pair
    for name, child in _children(layer):
        out.update(torch_state_variables(child, prefix + name + '.'))
    return out


def torch_state_dict(layer):
    """Our weights in PyTorch names and layouts (the inverse of what the converters do)."""
    result = OrderedDict()
    for key, (var, to_tf) in torch_state_variables(layer).items():
        value = np.asarray(var.numpy())
        result[key] = np.transpose(value, np.argsort(_perm_of(to_tf, value.ndim)))
    return result


def _perm_of(fn, ndim):
    """The axis permutation a layout function applies, traced on a probe of distinct sizes."""
    shape = tuple(range(2, 2 + ndim))
    moved = fn(np.zeros(shape)).shape
    return [shape.index(s) for s in moved]
