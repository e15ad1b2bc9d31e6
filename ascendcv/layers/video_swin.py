"""Video Swin Transformer blocks (Liu et al., "Video Swin Transformer", CVPR 2022) with the rules
of RVRT / VRT (``models/network_rvrt.py``: ``WindowAttention``, ``STL``, ``STG``), channels-last.

Tensors are ``[B, D, H, W, C]`` (D = frames). One Swin layer (:class:`STL`)::

    x = x + crop(roll+(reverse(attn(partition(roll-(pad(norm1(x))))))))
    x = x + mlp(norm2(x))

* **Window size per input** (:func:`effective_window`): in a dimension where the input is not
  larger than the window, the window is the input size and the shift 0.
* **Padding**: after ``norm1``, zeros are appended to D, H, W up to window multiples; padded
  tokens are *not* masked (their q/k/v are the ``qkv_self`` bias) and are cropped afterwards.
* **Shift**: blocks alternate no shift / ``window // 2``; cyclic ``roll(-shift)`` before the
  partition, ``roll(+shift)`` after; token pairs from different regions of the padded volume
  get ``-100`` (not ``-inf``) added to their logits (:func:`shift_mask`).
* **Windows** are enumerated batch-major then (d, h, w) window index; tokens inside a window
  (d, h, w) row-major (:func:`window_partition`).
* **Relative position bias** (optional: RVRT Light has none): table
  ``((2Wd-1)(2Wh-1)(2Ww-1), heads)`` indexed by the stored ``relative_position_index``
  ``(N, N)``; a window smaller than the configured one uses the index's first N rows and
  columns (the official rule, not an index recomputed for the smaller window).

Numerics options: ``approximate_gelu`` (PyTorch exact erf GELU: False; MindSpore ports: True)
and ``norm_eps`` (LayerNorm epsilon; PyTorch 1e-5, MindSpore 1e-7).

Sizes may be static (Python ints; the usual case) or dynamic (scalar tensors): the rules above
are then evaluated in the graph.
"""
import keras
import numpy as np
import tensorflow as tf

from ascendcv.layers.linear import Linear
from ascendcv.layers.mlp import Mlp
from ascendcv.layers.norm import LayerNorm
from ascendcv.layers.precision import ReducedPrecisionLayer, lowered, raised
from ascendcv.layers.torch_compat import identity

MASK_VALUE = -100.0


def _is_static(*values):
    return all(isinstance(v, (int, np.integer)) for v in values)


def spatial_sizes(x):
    """``(D, H, W)`` of ``x`` ``[B, D, H, W, C]``: Python ints where static, else scalar tensors."""
    dyn = None
    out = []
    for i in (1, 2, 3):
        s = x.shape[i]
        if s is None:
            dyn = tf.shape(x) if dyn is None else dyn
            s = dyn[i]
        out.append(s)
    return tuple(out)


def effective_window(sizes, window_size, shift_size):
    """Official ``get_window_size``: per dimension, ``(size, 0)`` when ``size <= window``, else
    ``(window, shift)``. Returns ``(window, shift)`` tuples (ints or scalar tensors)."""
    win, sft = [], []
    for s, w, sh in zip(sizes, window_size, shift_size):
        if _is_static(s):
            small = s <= w
            win.append(int(s) if small else int(w))
            sft.append(0 if small else int(sh))
        else:
            small = s <= w
            win.append(tf.where(small, s, w))
            sft.append(0 if int(sh) == 0 else tf.where(small, 0, sh))
    return tuple(win), tuple(sft)


def _ceil_to(size, mult):
    if _is_static(size, mult):
        return -(-size // mult) * mult
    return (size + mult - 1) // mult * mult


def window_partition(x, window):
    """``[B, D, H, W, C]`` (sizes multiples of ``window``) -> ``[B * nW, Wd*Wh*Ww, C]``."""
    b, c = tf.shape(x)[0], x.shape[-1]
    d, h, w = spatial_sizes(x)
    wd, wh, ww = window
    x = tf.reshape(x, [b, d // wd, wd, h // wh, wh, w // ww, ww, c])
    x = tf.transpose(x, [0, 1, 3, 5, 2, 4, 6, 7])
    return tf.reshape(x, [-1, wd * wh * ww, c])


def window_reverse(windows, window, b, d, h, w):
    """Inverse of :func:`window_partition`: ``[B * nW, N, C]`` -> ``[B, D, H, W, C]``."""
    wd, wh, ww = window
    c = windows.shape[-1]
    x = tf.reshape(windows, [b, d // wd, h // wh, w // ww, wd, wh, ww, c])
    x = tf.transpose(x, [0, 1, 4, 2, 5, 3, 6, 7])
    return tf.reshape(x, [b, d, h, w, c])


def _region_labels(size, window, shift):
    """Region of each position along one padded axis: ``[0, P-ws)``, ``[P-ws, P-s)``,
    ``[P-s, P)`` -> 0, 1, 2; a zero shift is one region (the official slices with ``-0``)."""
    if _is_static(size, window, shift):
        i = np.arange(size)
        if shift == 0:
            return np.zeros(size, np.int32)
        return ((i >= size - window).astype(np.int32) + (i >= size - shift)).astype(np.int32)
    i = tf.range(size)
    lab = tf.cast(i >= size - window, tf.int32) + tf.cast(i >= size - shift, tf.int32)
    return tf.where(tf.equal(shift, 0), tf.zeros_like(lab), lab)


def shift_mask(padded_sizes, window, shift):
    """Official ``compute_mask``: ``[nW, N, N]`` with ``-100`` between tokens of different
    regions of the padded ``(Dp, Hp, Wp)`` volume, 0 elsewhere (float32)."""
    labels = [_region_labels(s, w, sh) for s, w, sh in zip(padded_sizes, window, shift)]
    if all(isinstance(lab, np.ndarray) for lab in labels):
        img = (labels[0][:, None, None] * 9 + labels[1][None, :, None] * 3
               + labels[2][None, None, :]).astype(np.float32)
        img = tf.constant(img[None, ..., None])
    else:
        ld, lh, lw = (tf.cast(lab, tf.float32) for lab in labels)
        img = ld[:, None, None] * 9.0 + lh[None, :, None] * 3.0 + lw[None, None, :]
        img = img[None, ..., None]
    win = window_partition(img, window)[..., 0]  # [nW, N]
    diff = win[:, None, :] - win[:, :, None]
    return tf.where(tf.equal(diff, 0.0), 0.0, MASK_VALUE)


def relative_position_index(window_size):
    """``(N, N)`` int index into the bias table, ``N = Wd*Wh*Ww``:
    ``(dd+Wd-1)(2Wh-1)(2Ww-1) + (dh+Wh-1)(2Ww-1) + (dw+Ww-1)`` with ``d* = coord_i - coord_j``."""
    wd, wh, ww = window_size
    coords = np.stack(np.meshgrid(np.arange(wd), np.arange(wh), np.arange(ww), indexing='ij'))
    coords = coords.reshape(3, -1)
    rel = (coords[:, :, None] - coords[:, None, :]).transpose(1, 2, 0)
    rel = rel + np.array([wd - 1, wh - 1, ww - 1])
    return (rel[..., 0] * (2 * wh - 1) * (2 * ww - 1) + rel[..., 1] * (2 * ww - 1)
            + rel[..., 2]).astype(np.int32)


def _index_layout(w):
    return np.asarray(w).astype(np.int32)


class WindowAttention(ReducedPrecisionLayer, keras.layers.Layer):
    """Window multi-head self-attention (official ``WindowAttention``).

    Args:
        dim (int): channels C. num_heads (int): heads (head width ``C / heads``).
        window_size ((int, int, int)): configured window ``(Wd, Wh, Ww)``.
        qkv_bias (bool): bias of ``qkv_self``. qk_scale (float or None): default
            ``head_dim ** -0.5``.
        relative_position_bias (bool): learned bias table + stored index (torch names
            ``relative_position_bias_table``, ``relative_position_index``).

    Call: ``x`` ``[B_, N, C]`` (``N <= Wd*Wh*Ww`` tokens per window), ``attn_mask`` ``[nW, N, N]``
    or None -> ``[B_, N, C]``. Sub-layers ``qkv_self`` (Linear C -> 3C, split as
    ``(3, heads, C/heads)``) and ``proj`` (Linear C -> C).
    """

    def __init__(self, dim, window_size, num_heads, qkv_bias=True, qk_scale=None,
                 relative_position_bias=True, **kwargs):
        super().__init__(**kwargs)
        self.dim, self.num_heads = int(dim), int(num_heads)
        if self.dim % self.num_heads:
            raise ValueError(f'WindowAttention dim {dim} is not divisible by num_heads '
                             f'{num_heads}')
        self.window_size = tuple(int(v) for v in window_size)
        self.head_dim = self.dim // self.num_heads
        self.scale = float(qk_scale) if qk_scale else self.head_dim ** -0.5
        self.use_bias_table = bool(relative_position_bias)
        if self.use_bias_table:
            wd, wh, ww = self.window_size
            size = (2 * wd - 1) * (2 * wh - 1) * (2 * ww - 1)
            self.relative_position_bias_table = self.add_weight(
                name='relative_position_bias_table', shape=(size, self.num_heads),
                initializer='zeros')
            index = relative_position_index(self.window_size)
            self.relative_position_index = self.add_weight(
                name='relative_position_index', shape=index.shape, dtype='int32',
                trainable=False, initializer=keras.initializers.Constant(index))
        self.qkv_self = Linear(self.dim, 3 * self.dim, bias=qkv_bias, name='qkv_self')
        self.proj = Linear(self.dim, self.dim, name='proj')
        self.built = True

    def torch_weights(self):
        if not self.use_bias_table:
            return {}
        return {'relative_position_bias_table': (self.relative_position_bias_table, identity),
                'relative_position_index': (self.relative_position_index, _index_layout)}

    def position_bias(self, n):
        """``[heads, n, n]`` bias of the first ``n`` tokens (official ``index[:N, :N]``)."""
        index = self.relative_position_index[:n, :n]
        bias = tf.gather(self.relative_position_bias_table, index)  # [n, n, heads]
        return tf.transpose(bias, [2, 0, 1])

    def call(self, x, attn_mask=None):
        mask = attn_mask
        c, heads = self.dim, self.num_heads
        n = x.shape[1] if x.shape[1] is not None else tf.shape(x)[1]
        qkv = tf.reshape(self.qkv_self(x), [-1, n, 3, heads, self.head_dim])
        qkv = tf.transpose(qkv, [2, 0, 3, 1, 4])  # [3, B_, heads, N, hd]
        q, k, v = qkv[0], qkv[1], qkv[2]
        q, k, v = lowered(self, q * self.scale, k, v)
        attn = raised(tf.matmul(q, k, transpose_b=True))  # [B_, heads, N, N]
        if self.use_bias_table:
            attn = attn + self.position_bias(n)[None]
        if mask is not None:
            nw = tf.shape(mask)[0]
            attn = tf.reshape(attn, [-1, nw, heads, n, n]) + mask[None, :, None]
            attn = tf.reshape(attn, [-1, heads, n, n])
        attn, = lowered(self, tf.nn.softmax(attn, axis=-1))
        out = tf.transpose(raised(tf.matmul(attn, v)), [0, 2, 1, 3])
        return self.proj(tf.reshape(out, [-1, n, c]))


class STL(keras.layers.Layer):
    """Swin Transformer Layer (official ``STL``): window attention + MLP, both pre-norm
    residuals. ``[B, D, H, W, C]`` -> same; sub-layers ``norm1``, ``attn``, ``norm2``, ``mlp``
    (``fc1`` C -> mlp_ratio*C, GELU, ``fc2``).

    Args:
        dim, num_heads: channels and heads. window_size, shift_size: configured triples.
        mlp_ratio (float), qkv_bias (bool), qk_scale: as the official.
        relative_position_bias, approximate_gelu, norm_eps: see the module docstring.
    """

    def __init__(self, dim, num_heads, window_size=(2, 8, 8), shift_size=(0, 0, 0), mlp_ratio=2.0,
                 qkv_bias=True, qk_scale=None, relative_position_bias=True, approximate_gelu=False,
                 norm_eps=1e-5, **kwargs):
        super().__init__(**kwargs)
        self.window_size = tuple(int(v) for v in window_size)
        self.shift_size = tuple(int(v) for v in shift_size)
        if not all(0 <= s < w for s, w in zip(self.shift_size, self.window_size)):
            raise ValueError(f'shift_size {self.shift_size} must be in [0, window_size '
                             f'{self.window_size})')
        self.norm1 = LayerNorm(dim, eps=norm_eps, name='norm1')
        self.attn = WindowAttention(dim, self.window_size, num_heads, qkv_bias, qk_scale,
                                    relative_position_bias, name='attn')
        self.norm2 = LayerNorm(dim, eps=norm_eps, name='norm2')
        self.mlp = Mlp(dim, int(dim * mlp_ratio), dim, approximate_gelu=approximate_gelu,
                       name='mlp')
        self.built = True

    def attention_part(self, x, mask):
        b = tf.shape(x)[0]
        d, h, w = spatial_sizes(x)
        window, shift = effective_window((d, h, w), self.window_size, self.shift_size)
        x = self.norm1(x)
        dp, hp, wp = (_ceil_to(s, ws) for s, ws in zip((d, h, w), window))
        pads = [s_p - s for s_p, s in zip((dp, hp, wp), (d, h, w))]
        needs_pad = not _is_static(*pads) or any(pads)
        if needs_pad:
            x = tf.pad(x, [[0, 0], [0, pads[0]], [0, pads[1]], [0, pads[2]], [0, 0]])
        shifted = not _is_static(*shift) or any(shift)
        if shifted:
            x = tf.roll(x, shift=[-s for s in shift], axis=[1, 2, 3])
        windows = window_partition(x, window)
        windows = self.attn(windows, attn_mask=mask if shifted else None)
        x = window_reverse(windows, window, b, dp, hp, wp)
        if shifted:
            x = tf.roll(x, shift=list(shift), axis=[1, 2, 3])
        if needs_pad:
            x = x[:, :d, :h, :w]
        return x

    def call(self, x, attn_mask=None):
        x = x + self.attention_part(x, attn_mask)
        return x + self.mlp(self.norm2(x))


class STG(keras.layers.Layer):
    """Swin Transformer Group (official ``STG``): ``depth`` :class:`STL` blocks, even ones
    unshifted, odd ones shifted by ``shift_size`` (default ``window // 2``), sharing one shift
    mask computed on the padded input size. ``[B, D, H, W, C]`` -> same; sub-layers
    ``blocks.<i>``."""

    def __init__(self, dim, depth, num_heads, window_size=(2, 8, 8), shift_size=None,
                 mlp_ratio=2.0, qkv_bias=True, qk_scale=None, relative_position_bias=True,
                 approximate_gelu=False, norm_eps=1e-5, **kwargs):
        super().__init__(**kwargs)
        self.window_size = tuple(int(v) for v in window_size)
        self.shift_size = (tuple(w // 2 for w in self.window_size) if shift_size is None
                           else tuple(int(v) for v in shift_size))
        self.blocks = [STL(dim, num_heads, self.window_size,
                           (0, 0, 0) if i % 2 == 0 else self.shift_size, mlp_ratio, qkv_bias,
                           qk_scale, relative_position_bias, approximate_gelu, norm_eps,
                           name=f'blocks_{i}') for i in range(int(depth))]
        self.built = True

    def call(self, x):
        mask = None
        if len(self.blocks) > 1:
            sizes = spatial_sizes(x)
            window, shift = effective_window(sizes, self.window_size, self.shift_size)
            padded = tuple(_ceil_to(s, w) for s, w in zip(sizes, window))
            mask = shift_mask(padded, window, shift)
        for blk in self.blocks:
            x = blk(x, mask)
        return x
