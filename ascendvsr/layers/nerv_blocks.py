"""NeRV building blocks (Chen et al., "NeRV: Neural Representations for Videos", NeurIPS 2021).

Named after the official ``model_nerv.py`` modules so their PyTorch state-dict keys address our
weights directly (``stem.0.weight``, ``layers.3.conv.conv.weight``, ``head_layers.4.bias``,
``layers.1.norm.running_var`` ...). All feature maps are NHWC.

* :func:`positional_encoding` -- the frame-index embedding, float32 with the official op order;
* :func:`activation` -- the official ``ActivationLayer`` choices by name;
* :class:`PrunableConv2d` -- :class:`ascendcv.layers.conv.Conv2d` with ``keep_zeros`` (an
  exactly-zero, pruned weight gets no gradient, as for :class:`ascendcv.layers.linear.Linear`
  and :class:`ascendcv.layers.conv.ConvTranspose2d`) and an optional bfloat16 compute path;
* :func:`norm_layer` -- the official ``NormLayer`` (:mod:`ascendcv.layers.norm`);
* :class:`CustomConv` and :class:`NeRVBlock` -- upsampling conv (``conv`` + PixelShuffle,
  ``deconv`` or ``bilinear``) followed by norm and activation.
"""
import math

import keras
import numpy as np
import tensorflow as tf

from ascendcv.layers.conv import Conv2d, ConvTranspose2d
from ascendcv.layers.norm import BatchNorm2d, InstanceNorm2d
from ascendcv.layers.sampling import pixel_shuffle
from ascendcv.layers.torch_compat import freeze_zeros

ACTIVATIONS = ('relu', 'leaky', 'leaky01', 'relu6', 'gelu', 'sin', 'swish', 'softplus',
               'hardswish')
NORMS = ('none', 'bn', 'in')
CONV_TYPES = ('conv', 'deconv', 'bilinear')


# --------------------------------------------------------------------------- encoding

def parse_embed(embed):
    """``'1.25_40'`` -> ``(1.25, 40)``; ``'none'`` -> ``None``. Raises ValueError otherwise."""
    if str(embed).lower() == 'none':
        return None
    try:
        base, levels = str(embed).split('_')
        base, levels = float(base), int(levels)
    except ValueError:
        raise ValueError(f"nerv embed must look like '<base>_<levels>' (e.g. '1.25_40') or "
                         f"'none'; got {embed!r}") from None
    if levels < 1 or base <= 0:
        raise ValueError(f'nerv embed {embed!r}: base must be > 0 and levels >= 1')
    return base, levels


def embed_length(embed):
    """Length of the positional encoding: ``2 * levels`` (1 for 'none')."""
    parsed = parse_embed(embed)
    return 1 if parsed is None else 2 * parsed[1]


def positional_encoding(t, embed='1.25_40'):
    """Official NeRV ``PositionalEncoding`` of normalised frame indices ``t`` ``[B]``.

    ``[sin(v_0), cos(v_0), sin(v_1), cos(v_1), ...]`` with ``v_i = (t * base**i) * pi``
    computed in float32 in exactly that order (``base**i`` and ``pi`` rounded to float32 first,
    as PyTorch does with Python scalars). The arguments reach ``base**(L-1) * pi`` (~2e4 rad for
    1.25_40) where one float32 ulp is ~2e-3 rad, so any other op order changes the embedding by
    up to ~2e-3. Returns ``[B, 2 * levels]`` float32 (``[B, 1]`` = ``t`` for 'none').
    """
    t = tf.reshape(tf.cast(t, tf.float32), [-1])
    parsed = parse_embed(embed)
    if parsed is None:
        return t[:, None]
    base, levels = parsed
    scale = tf.constant(np.array([base ** i for i in range(levels)], np.float32))
    u = t[:, None] * scale[None, :]                 # [B, L], float32 rounding as the official
    # times float32(pi), rounded to float32 once: the float64 product of two float32 values is
    # exact, so this equals the float32 multiply -- and the casts stop graph optimisers
    # (grappler's constant push-down) from re-associating it into t * (base**i * pi), which
    # would change the embedding by up to ~1e-3
    pi = tf.constant(np.float64(np.float32(math.pi)))
    v = tf.cast(tf.cast(u, tf.float64) * pi, tf.float32)
    return tf.reshape(tf.stack([tf.sin(v), tf.cos(v)], axis=-1), [-1, 2 * levels])


# --------------------------------------------------------------------------- activations

def activation(name):
    """The official ``ActivationLayer(act_type)`` as a function of a tensor."""
    if name == 'relu':
        return tf.nn.relu
    if name == 'leaky':
        return lambda x: tf.nn.leaky_relu(x, alpha=0.01)    # nn.LeakyReLU() default slope
    if name == 'leaky01':
        return lambda x: tf.nn.leaky_relu(x, alpha=0.1)
    if name == 'relu6':
        return tf.nn.relu6
    if name == 'gelu':
        return lambda x: tf.nn.gelu(x, approximate=False)   # nn.GELU() is the exact erf form
    if name == 'sin':
        return tf.sin
    if name == 'swish':
        return lambda x: x * tf.sigmoid(x)                  # nn.SiLU
    if name == 'softplus':
        # nn.Softplus(beta=1, threshold=20): linear above the threshold
        return lambda x: tf.where(x > 20.0, x, tf.nn.softplus(x))
    if name == 'hardswish':
        return lambda x: x * tf.nn.relu6(x + 3.0) / 6.0
    raise ValueError(f'unknown nerv activation {name!r}; choose one of {ACTIVATIONS}')


class Activation(keras.layers.Layer):
    """A parameter-free activation layer (keeps ``nn.Sequential`` indices such as ``stem.2``)."""

    def __init__(self, act='relu', **kwargs):
        super().__init__(**kwargs)
        self.act = act
        self.fn = activation(act)
        self.built = True

    def call(self, x):
        return self.fn(x)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(act=self.act)
        return cfg


# --------------------------------------------------------------------------- weight layers

class PrunableConv2d(Conv2d):
    """:class:`ascendcv.layers.conv.Conv2d` whose exactly-zero weights can be kept at zero
    (``keep_zeros``), for fine-tuning a pruned network.

    ``compute_dtype='bfloat16'`` runs the convolution on bfloat16 inputs and weights (float32
    accumulation in oneDNN, output rounded to bfloat16, then float32 again; about 2x faster on
    CPUs with AVX512-BF16, ~3 significant digits); the bias is added in float32. It sets the
    layer's ``compute_precision`` (:mod:`ascendcv.layers.precision`).
    """

    def __init__(self, *args, keep_zeros=False, compute_dtype='float32', **kwargs):
        super().__init__(*args, **kwargs)
        self.keep_zeros = bool(keep_zeros)
        if compute_dtype not in ('float32', 'bfloat16'):
            raise ValueError(f"compute_dtype must be 'float32' or 'bfloat16'; got {compute_dtype!r}")
        self.compute_precision = compute_dtype

    def effective_kernel(self):
        return freeze_zeros(self.kernel) if self.keep_zeros else self.kernel

    def call(self, x):
        return self.convolve(x, self.effective_kernel())

    def get_config(self):
        cfg = super().get_config()
        cfg.update(keep_zeros=self.keep_zeros, compute_dtype=self.compute_precision)
        return cfg


# --------------------------------------------------------------------------- norms

class Identity(keras.layers.Layer):
    def __init__(self, *args, **kwargs):
        super().__init__(**kwargs)
        self.built = True

    def call(self, x, training=False):
        return x


def norm_layer(norm, channels, name='norm'):
    """The official ``NormLayer(norm_type, ch_width)``."""
    if norm == 'none':
        return Identity(name=name)
    if norm == 'bn':
        return BatchNorm2d(channels, name=name)
    if norm == 'in':
        return InstanceNorm2d(channels, name=name)
    raise ValueError(f'unknown nerv norm {norm!r}; choose one of {NORMS}')


# --------------------------------------------------------------------------- blocks

class CustomConv(keras.layers.Layer):
    """The official ``CustomConv``: upsample ``[N, H, W, ngf]`` by ``stride`` to ``new_ngf``.

    * ``conv``: ``conv`` = 3x3 conv to ``new_ngf * s^2`` channels, then PixelShuffle(s)
      (PyTorch channel order);
    * ``deconv``: ``conv`` = ConvTranspose2d(kernel s, stride s);
    * ``bilinear``: bilinear x s upsampling (align_corners=True), then ``up_scale`` =
      conv (2s+1)x(2s+1), padding s.
    """

    def __init__(self, ngf, new_ngf, stride, bias=True, conv_type='conv', keep_zeros=False,
                 compute_dtype='float32', **kwargs):
        super().__init__(**kwargs)
        self.ngf, self.new_ngf, self.stride = int(ngf), int(new_ngf), int(stride)
        self.conv_type = conv_type
        s = self.stride
        if conv_type == 'conv':
            self.conv = PrunableConv2d(ngf, new_ngf * s * s, 3, 1, 1, bias=bias,
                                       keep_zeros=keep_zeros, compute_dtype=compute_dtype,
                                       name='conv')
        elif conv_type == 'deconv':
            self.conv = ConvTranspose2d(ngf, new_ngf, s, bias=bias, keep_zeros=keep_zeros,
                                        name='conv')
        elif conv_type == 'bilinear':
            self.up_scale = PrunableConv2d(ngf, new_ngf, 2 * s + 1, 1, s, bias=bias,
                                           keep_zeros=keep_zeros, compute_dtype=compute_dtype,
                                           name='up_scale')
        else:
            raise ValueError(f'unknown nerv conv_type {conv_type!r}; choose one of {CONV_TYPES}')
        self.built = True

    def weight_layer(self):
        """The layer holding this block's convolution weight (what pruning acts on)."""
        return self.up_scale if self.conv_type == 'bilinear' else self.conv

    def call(self, x):
        s = self.stride
        if self.conv_type == 'conv':
            y = self.conv(x)
            return pixel_shuffle(y, s) if s > 1 else y
        if self.conv_type == 'deconv':
            return self.conv(x)
        if s > 1:
            shape = tf.shape(x)
            x = tf.compat.v1.image.resize_bilinear(x, [shape[1] * s, shape[2] * s],
                                                   align_corners=True)
        return self.up_scale(x)


class NeRVBlock(keras.layers.Layer):
    """``act(norm(CustomConv(x)))``: ``[N, H, W, ngf]`` -> ``[N, sH, sW, new_ngf]``."""

    def __init__(self, ngf, new_ngf, stride, bias=True, norm='none', act='swish',
                 conv_type='conv', keep_zeros=False, compute_dtype='float32', **kwargs):
        super().__init__(**kwargs)
        self.stride, self.norm_name, self.conv_type = int(stride), norm, conv_type
        self.conv = CustomConv(ngf, new_ngf, stride, bias=bias, conv_type=conv_type,
                               keep_zeros=keep_zeros, compute_dtype=compute_dtype, name='conv')
        self.norm = norm_layer(norm, new_ngf)
        self.act_name = act
        self.act = activation(act)
        self.built = True

    def call(self, x, training=False):
        if self.conv_type == 'conv' and self.norm_name == 'none':
            # the activation commutes with PixelShuffle (a permutation): applying it first at
            # low resolution lets oneDNN fuse conv + bias + activation
            y = self.act(self.conv.conv(x))
            return pixel_shuffle(y, self.stride) if self.stride > 1 else y
        return self.act(self.norm(self.conv(x), training=training))

    def pre_shuffle(self, x):
        """``act(conv(x))`` before the PixelShuffle (``conv`` type without norm only)."""
        return self.act(self.conv.conv(x))
