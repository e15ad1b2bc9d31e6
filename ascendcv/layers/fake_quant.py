"""LSQ fake quantization (learned step size, Esser et al. 2020) as in Q-SCI's official code
(mcao92/QuantizedSCI, ``cacti/models/Quant.py`` and ``_quant_base.py``): the quantizers and the
quantized ``Conv2d`` / ``Conv3d`` / ``Linear`` with the official parameter names.

Quantizers (``b`` bits; ``Qn, Qp = -2^(b-1), 2^(b-1) - 1`` signed, ``0, 2^b - 1`` unsigned):

* **weights**, per output channel (official ``kernel_wise`` mode), always signed::

      w_q = round(clamp(w / alpha, Qn, Qp)) * alpha          alpha (out,)

* **activations**, per input channel, signed or unsigned (the ``signed`` buffer), integer zero
  point ``round(zero_point)``::

      x_q = (round(clamp(x / alpha + round(zp), Qn, Qp)) - round(zp)) * alpha

  ``alpha`` / ``zero_point`` ``(in,)`` broadcast along the channel axis of the input (``axis``;
  the official code: dim 1 of 4-D/5-D PyTorch tensors, the last axis of 2-D/3-D ones, i.e. the
  last axis of our channels-last feature maps and of token tensors).

Straight-through gradients exactly as the official autograd graph: ``round`` passes the
gradient unchanged (``round_pass``), ``clamp`` passes it inside ``[Qn, Qp]`` (boundaries
included) and blocks it outside, and ``alpha`` / ``zero_point`` gradients are scaled by the LSQ
factor ``g = 1 / sqrt(n * Qp)`` (``grad_scale``; ``n`` = elements of the weight, or of the
whole activation tensor *including the batch*). Resulting gradients (per element, summed over
the elements sharing a channel)::

    dw_q/dw = 1 inside, 0 clipped          dw_q/dalpha = g * (round(v) - v) inside,
                                                         g * (Qn|Qp) clipped
    dx_q/dx = 1 inside, 0 clipped          dx_q/dalpha = g * (round(u) - zp_r - x / alpha) inside,
                                                         g * (Qn|Qp - zp_r) clipped
                                           dx_q/dzp    = 0 inside, -g * alpha clipped

with ``v = w / alpha``, ``u = x / alpha + zp_r``, ``zp_r = round(zp)``. The forward values use the
official straight-through arithmetic for ``alpha`` and the zero point (``(a - a g) + a g``, which
may differ from ``a`` by one ulp); ``round_pass`` itself is value-exact, so evaluation uses a
plain ``round``.

Initialisation (official first training iteration): a quantizer whose ``init_state`` is 0 sets,
the first time it runs in training mode,

* weights: ``alpha = 2 mean|w| / sqrt(Qp)`` (one scalar broadcast to every channel);
* activations: ``signed = min(x) < -1e-5``, ``alpha = 2 mean|x| / sqrt(Qp)``,
  ``zero_point = 0.9 zero_point + 0.1 (min(x) - alpha Qn)`` (zero point initially 0),

then ``init_state = 1``; later quantizers of the same forward see already quantized inputs. Here
this happens in an *eager* training-mode call (the calibration pass,
:func:`calibrate_quantizers`). The official code evaluates a never-initialised quantizer with
uninitialised memory (undefined output); ours refuses: evaluating (or tracing a graph of) a
quantizer with ``init_state == 0`` raises :class:`QuantizerNotInitializedError` naming it.

``quantize=False`` is the official "quantization off" path (``alpha = None``): the layer is the
plain float layer (the quantizer variables stay, so checkpoints still load).

PyTorch names: ``Conv3dQ`` / ``Conv2dQ`` / ``LinearQ``: ``weight``, ``bias``, ``alpha`` (out,),
``init_state`` (1,) and the input quantizer ``act.alpha``, ``act.zero_point`` (in,),
``act.init_state``, ``act.signed`` (1,); ``ActQ``: ``alpha``, ``zero_point``, ``init_state``,
``signed``.
"""
import math

import keras
import numpy as np
import tensorflow as tf

from ascendcv.layers.conv import Conv2d
from ascendcv.layers.conv3d import Conv3d
from ascendcv.layers.linear import Linear
from ascendcv.layers.torch_compat import identity, torch_state_variables

__all__ = ['QuantizerNotInitializedError', 'quant_range', 'grad_scale', 'round_pass',
           'fake_quant_weight', 'fake_quant_activation', 'weight_codes', 'activation_codes',
           'ActQ', 'Conv2dQ', 'Conv3dQ', 'LinearQ',
           'quantizers_of', 'name_quantizers', 'calibrate_quantizers', 'uninitialized_quantizers']

SIGNED_THRESHOLD = -1e-5  # official: signed = x.min() < -1e-5 at initialisation


class QuantizerNotInitializedError(ValueError):
    """A fake quantizer was used for evaluation before its LSQ initialisation."""


def quant_range(nbits, signed=True):
    """``(Qn, Qp)`` integer range of ``nbits`` (signed: two's complement)."""
    nbits = int(nbits)
    if signed:
        return -2 ** (nbits - 1), 2 ** (nbits - 1) - 1
    return 0, 2 ** nbits - 1


def grad_scale(x, scale):
    """Value ``x`` (computed as the official ``(x - x s) + x s``), gradient ``scale * dy``."""
    scaled = x * scale
    return (tf.stop_gradient(x) - tf.stop_gradient(scaled)) + scaled


def round_pass(x):
    """Value ``round(x)`` (half to even, as ``torch.round``), gradient passed unchanged."""
    return (tf.stop_gradient(tf.round(x)) - tf.stop_gradient(x)) + x


def _round(x, training):
    return round_pass(x) if training else tf.round(x)


def fake_quant_weight(w, alpha, nbits, training=False):
    """Official weight fake quantization, per output channel.

    Args:
        w: kernel with the output channels on the last axis (TF layouts ``(..., in, out)``).
        alpha: ``(out,)`` step sizes (or ``(1,)``).
        nbits (int): bit width (signed range).
        training (bool): straight-through graph (for gradients); the value is the same.

    Returns ``round(clamp(w / alpha', Qn, Qp)) * alpha'`` with ``alpha' = grad_scale(alpha, g)``,
    ``g = 1 / sqrt(w.size * Qp)``.
    """
    k, a = weight_codes(w, alpha, nbits, training)
    return k * a


def weight_codes(w, alpha, nbits, training=False):
    """The integer side of :func:`fake_quant_weight`: ``(k, a)`` with the integer-valued
    ``k = round(clamp(w / a, Qn, Qp))`` (``w``'s shape) and the step sizes ``a`` (``alpha``'s
    shape) the value is computed with (``w_q = k a``)."""
    qn, qp = quant_range(nbits, True)
    g = 1.0 / math.sqrt(int(np.prod(w.shape)) * qp)
    a = grad_scale(alpha, g)
    return _round(tf.clip_by_value(w / a, float(qn), float(qp)), training), a


def _channel_shape(rank, axis, channels):
    shape = [1] * rank
    shape[axis] = channels
    return shape


def fake_quant_activation(x, alpha, zero_point, signed, nbits, axis=-1, training=False):
    """Official activation fake quantization, per channel of ``axis``.

    Args:
        x: any tensor; ``alpha``, ``zero_point`` ``(C,)`` broadcast along ``axis`` (``C`` =
            ``x.shape[axis]``, or 1 = one value for the whole tensor).
        signed: scalar tensor or bool (1 = signed range).
        nbits (int): bit width.
        training (bool): straight-through graph (for gradients); the value is the same.

    Returns ``(round(clamp(x / a + z, Qn, Qp)) - z) * a`` with ``z = grad_scale(round(zp), g)``,
    ``a = grad_scale(alpha, g)``, ``g = 1 / sqrt(x.size * Qp)``.
    """
    q, zp, a = activation_codes(x, alpha, zero_point, signed, nbits, axis, training)
    return (q - zp) * a


def activation_codes(x, alpha, zero_point, signed, nbits, axis=-1, training=False):
    """The integer side of :func:`fake_quant_activation`: ``(q, z, a)`` with the codes
    ``q = round(clamp(x / a + z, Qn, Qp))`` (float tensor of integers, ``x``'s shape) and the
    ``z``, ``a`` the value is computed with (``x_q = (q - z) a``), broadcastable to ``x``."""
    dtype = x.dtype
    signed = tf.cast(signed, tf.bool)
    qn_s, qp_s = quant_range(nbits, True)
    qn_u, qp_u = quant_range(nbits, False)
    qn = tf.where(signed, tf.constant(qn_s, dtype), tf.constant(qn_u, dtype))
    qp = tf.where(signed, tf.constant(qp_s, dtype), tf.constant(qp_u, dtype))
    size = tf.cast(tf.size(x, out_type=tf.int64), tf.float64)
    g = tf.cast(1.0 / tf.sqrt(size * tf.cast(qp, tf.float64)), dtype)
    zp = _round(zero_point, training)
    a, zp = grad_scale(alpha, g), grad_scale(zp, g)
    rank = x.shape.rank
    channels = int(alpha.shape[0])
    if channels > 1 and axis % rank != rank - 1:
        a = tf.reshape(a, _channel_shape(rank, axis, channels))
        zp = tf.reshape(zp, _channel_shape(rank, axis, channels))
    q = _round(tf.clip_by_value(x / a + zp, qn, qp), training)
    return q, zp, a


def _initialised(var):
    """Read a quantizer's ``init_state`` outside any graph being traced."""
    with tf.init_scope():
        return float(np.asarray(var.numpy()).reshape(-1)[0]) != 0.0


def _not_initialised(layer):
    name = getattr(layer, 'torch_name', None) or layer.path or layer.name
    return QuantizerNotInitializedError(
        f'fake quantizer {name!r} ({layer.nbits}-bit) was never initialised (init_state = '
        f'0): its step size alpha is undefined (the official code would run on uninitialised '
        f'memory). Run the calibration pass first -- one eager training-mode forward, the '
        f'first iteration of the official training (ascendcv.layers.fake_quant.'
        f'calibrate_quantizers; the Q-SCI task does it when training starts) -- or load a '
        f'calibrated checkpoint')


class _Quantizer:
    """Shared state handling of the weight and activation quantizers (mixin for layers)."""

    def _add_state(self):
        self.init_state = self.add_weight(name='init_state', shape=(1,), initializer='zeros',
                                          trainable=False)

    def is_initialised(self):
        return _initialised(self.init_state)

    def _ready(self, training, calibrate):
        """True when the quantizer may run; initialises it (``calibrate()``) in an eager
        training call; raises when it cannot."""
        if self.is_initialised():
            return True
        if training and tf.executing_eagerly():
            calibrate()
            self.init_state.assign(tf.ones_like(self.init_state))
            return True
        raise _not_initialised(self)


class ActQ(_Quantizer, keras.layers.Layer):
    """Official ``ActQ(in_features, nbits_a)`` (``kernel_wise``): activation fake quantizer.

    Args:
        in_features (int): channels ``C`` of ``alpha`` / ``zero_point`` (1 = one scalar).
        nbits (int): bit width.
        axis (int): the input axis the per-channel values apply to (default last).
        quantize (bool): False = identity (official ``alpha = None``).

    Input any tensor with ``x.shape[axis] == in_features`` (or ``in_features == 1``); output the
    same shape. Variables (PyTorch names): ``alpha`` (C,), ``zero_point`` (C,) trainable;
    ``init_state`` (1,), ``signed`` (1,) buffers.
    """

    def __init__(self, in_features, nbits=8, axis=-1, quantize=True, **kwargs):
        super().__init__(**kwargs)
        self.in_features, self.nbits, self.axis = int(in_features), int(nbits), int(axis)
        if self.nbits < 2:
            raise ValueError(f'ActQ nbits must be >= 2; got {nbits}')
        self.fake_quant = bool(quantize)  # ('quantize' is a Keras Layer method)
        c = self.in_features
        self.alpha = self.add_weight(name='alpha', shape=(c,), initializer='ones')
        self.zero_point = self.add_weight(name='zero_point', shape=(c,), initializer='zeros')
        self._add_state()
        self.signed = self.add_weight(name='signed', shape=(1,), initializer='zeros',
                                      trainable=False)
        self.built = True

    def torch_weights(self):
        return {k: (getattr(self, k), identity)
                for k in ('alpha', 'zero_point', 'init_state', 'signed')}

    def initialise(self, x):
        """The official first-iteration rule on the tensor ``x`` (see the module docstring)."""
        x = tf.stop_gradient(tf.cast(x, self.alpha.dtype))
        low = tf.reduce_min(x)
        signed = bool(low.numpy() < SIGNED_THRESHOLD)
        qn, qp = quant_range(self.nbits, signed)
        self.signed.assign(tf.fill([1], tf.constant(1.0 if signed else 0.0, self.signed.dtype)))
        alpha = 2.0 * tf.reduce_mean(tf.abs(x)) / math.sqrt(qp)
        self.alpha.assign(tf.fill(self.alpha.shape, alpha))
        self.zero_point.assign(self.zero_point * 0.9 + 0.1 * (low - self.alpha * qn))

    def call(self, x, training=None):
        if not self.fake_quant:
            return x
        self._ready(training, lambda: self.initialise(x))
        c = self.in_features
        if c > 1 and x.shape[self.axis] is not None and x.shape[self.axis] != c:
            name = getattr(self, 'torch_name', None) or self.name
            raise ValueError(f'{name}: input axis {self.axis} has {x.shape[self.axis]} '
                             f'channels, the quantizer {c} (input shape {x.shape})')
        return fake_quant_activation(x, self.alpha, self.zero_point, self.signed[0] > 0.5,
                                     self.nbits, self.axis, bool(training))

    def get_config(self):
        return dict(super().get_config(), in_features=self.in_features, nbits=self.nbits,
                    axis=self.axis, quantize=self.fake_quant)


class _WeightQuant(_Quantizer):
    """Weight quantization shared by :class:`Conv2dQ`, :class:`Conv3dQ` and :class:`LinearQ`:
    ``alpha`` (out,) and ``init_state`` next to ``weight``, the input quantizer ``act``."""

    def _add_quantizers(self, in_channels, out_channels, nbits, quantize):
        self.nbits, self.fake_quant = int(nbits), bool(quantize)
        if self.nbits < 2:
            raise ValueError(f'{type(self).__name__} nbits must be >= 2; got {nbits}')
        self.alpha = self.add_weight(name='alpha', shape=(int(out_channels),), initializer='ones')
        self._add_state()
        self.act = ActQ(in_channels, self.nbits, axis=-1, quantize=quantize, name='act',
                        dtype=self.dtype_policy)

    def torch_weights(self):
        w = super().torch_weights()
        w.update(alpha=(self.alpha, identity), init_state=(self.init_state, identity))
        return w

    def initialise(self):
        """Official rule: ``alpha = 2 mean|w| / sqrt(Qp)`` for every output channel."""
        qp = quant_range(self.nbits, True)[1]
        alpha = 2.0 * tf.reduce_mean(tf.abs(self.kernel)) / math.sqrt(qp)
        self.alpha.assign(tf.fill(self.alpha.shape, alpha))

    def quantized_kernel(self, training=False):
        """The fake-quantized kernel (our layout)."""
        self._ready(training, self.initialise)
        return fake_quant_weight(self.kernel, self.alpha, self.nbits, bool(training))

    def set_quantize(self, quantize):
        self.fake_quant = self.act.fake_quant = bool(quantize)


class _ConvQ(_WeightQuant):
    """What :class:`Conv3dQ` and :class:`Conv2dQ` share: ``torch.nn.ConvNd`` arguments plus
    ``nbits`` (default :attr:`default_nbits`, the official module's) and ``quantize``; the input
    quantized by ``act`` (per input channel), the kernel per output channel, then the plain
    convolution (``quantize=False``: the plain conv alone)."""

    default_nbits = 4
    accepts_reduced_input = False  # the activation quantizer computes on the input first

    def __init__(self, in_channels, out_channels, kernel_size=3, stride=1, padding=0,
                 dilation=1, bias=True, nbits=None, quantize=True, **kwargs):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         bias, **kwargs)
        self._add_quantizers(in_channels, out_channels,
                             self.default_nbits if nbits is None else nbits, quantize)

    def call(self, x, training=None):
        if not self.fake_quant:
            return self.convolve(x, self.kernel)
        kernel = self.quantized_kernel(training)
        return self.convolve(self.act(x, training=training), kernel)


class Conv3dQ(_ConvQ, Conv3d):
    """Official ``Conv3dQ(in, out, kernel_size, stride, padding, nbits_w)`` on
    :class:`ascendcv.layers.conv3d.Conv3d` (NDHWC, PyTorch padding); 4 bits by default."""

    config_keys = Conv3d.config_keys + ('nbits', 'quantize')
    config_aliases = {'bias': 'use_bias', 'quantize': 'fake_quant'}
    default_nbits = 4


class Conv2dQ(_ConvQ, Conv2d):
    """Official ``Conv2dQ`` (kernel-wise) on NHWC 2-D convolutions; 8 bits by default."""

    config_keys = Conv2d.config_keys + ('nbits', 'quantize')
    config_aliases = {'bias': 'use_bias', 'quantize': 'fake_quant'}
    default_nbits = 8


class LinearQ(_WeightQuant, Linear):
    """Official ``LinearQ(in, out, bias, nbits_w)``: input ``[..., in]`` quantized per feature
    (the last axis), weight per output feature, then ``x_q @ w_q + bias``."""

    config_keys = Linear.config_keys + ('nbits', 'quantize')
    config_aliases = {'bias': 'use_bias', 'quantize': 'fake_quant'}
    accepts_reduced_input = False  # the activation quantizer computes on the input first

    def __init__(self, in_features, out_features, bias=True, nbits=4, quantize=True, **kwargs):
        super().__init__(in_features, out_features, bias=bias, **kwargs)
        self._add_quantizers(in_features, out_features, nbits, quantize)

    def call(self, x, training=None):
        if not self.fake_quant:
            kernel = self.kernel
        else:
            kernel = self.quantized_kernel(training)
            x = self.act(x, training=training)
        return self.multiply(x, kernel)


def quantizers_of(model):
    """Every fake quantizer under ``model`` (weight quantizers and :class:`ActQ`), in the
    order of ``model``'s sub-layers."""
    out = []
    for layer in model._flatten_layers(include_self=True, recursive=True):
        if isinstance(layer, (_WeightQuant, ActQ)) and layer not in out:
            out.append(layer)
    return out


def name_quantizers(model):
    """Give every quantizer under ``model`` its PyTorch module name (``torch_name``, e.g.
    ``'fem.0.act'``) from the state-dict keys, for error messages; returns ``{name: layer}``."""
    owners = {id(q.init_state): q for q in quantizers_of(model)}
    names = {}
    for key, (var, _) in torch_state_variables(model).items():
        q = owners.get(id(var))
        if q is not None and key.endswith('init_state'):
            q.torch_name = key[:-len('.init_state')] if '.' in key else ''
            names[q.torch_name] = q
    return names


def uninitialized_quantizers(model):
    """Names (PyTorch module names when :func:`name_quantizers` ran) of the quantizers of
    ``model`` whose ``init_state`` is 0."""
    return [getattr(q, 'torch_name', None) or q.name for q in quantizers_of(model)
            if not q.is_initialised()]


def calibrate_quantizers(model, inputs):
    """The official LSQ initialisation: one eager training-mode forward of ``model`` on
    ``inputs`` (no weight update); every quantizer not yet initialised initialises from what it
    sees, in forward order. Returns the number of quantizers initialised (0 = all were
    already, so it is idempotent)."""
    before = set(uninitialized_quantizers(model))
    if before:
        model(inputs, training=True)
    left = uninitialized_quantizers(model)
    if left:
        raise QuantizerNotInitializedError(
            f'calibration did not reach {len(left)} quantizer(s): {left[:8]}')
    return len(before)
