"""Integer convolutions inside the TF graph, on oneDNN's int8 kernels.

TF's x86 CPU build carries oneDNN's quantized 2-D convolution (``QuantizedConv2DWithBias``:
uint8 activations x int8 weights, int32 accumulation, VNNI / AMX-INT8 where the CPU has them).
It runs only in a graph whose filter is a constant. :class:`IntegerConv` builds on it a
convolution of activation *codes* that returns float:

* a 3-D kernel ``(kd, kh, kw, C, O)`` is the sum of ``kd`` 2-D convolutions, tap ``i`` over the
  frames ``i * dil_d + t * s_d`` (folded into the batch). The taps are summed in int32, so the
  result is exactly the 3-D integer convolution; a 2-D kernel is one such convolution;
* the int32 accumulator becomes float in one XLA-compiled pass (the epilogue)::

      y[o] = sum (u - zu) k[o] * a * s[o] + b[o]
           = (a s[o]) acc[o] + (b[o] - a zu sum(k[o] s[o]))        acc = sum u k   (int32)

  with ``u`` the uint8 input codes (``x_q = (u - zu) a``, the input padded with the code ``zu``
  of 0), ``k`` the int8 kernel codes and ``s[o]`` the weight step sizes (``w_q = k s``).

Measured (``benchmarks/int8_conv_speed.py``: input 1 x 8 x 128 x 128 x 64, 64 outputs, 2 cores
with AMX, medians of alternating calls): a 3x3x3 convolution -- quantizing pass, three taps,
epilogue -- takes 38 ms against 112 ms in float32 and 52 ms in bfloat16; a (1, 3, 3) one 25 ms
against 64 / 36 ms. ``QuantizedConv2D`` without a bias runs a slower reference kernel, so a
zero bias is passed. Everything else of a model stays float.
"""
import functools

import numpy as np
import tensorflow as tf

__all__ = ['IntegerConv', 'integer_kernels_available']

MAX_ABS_ACCUMULATOR = 2 ** 31 - 1


@functools.lru_cache(maxsize=1)
def integer_kernels_available():
    """``(True, '')`` when this TF build runs oneDNN's int8 convolution correctly, else
    ``(False, why)``; checked once on a 1 x 3 x 3 x 2 example."""
    codes = np.arange(18, dtype=np.uint8).reshape(1, 3, 3, 2)
    kernel = np.array([1, -2, 3, -4, 5, -6, 7, -8, 9] * 2, np.int8).reshape(3, 3, 2, 1)
    want = int(np.sum(codes.astype(np.int64)[0, ..., None] * kernel))
    try:
        got = int(np.asarray(_conv_fn(kernel, (1, 1), (1, 1))(tf.constant(codes))).ravel()[0])
    except (tf.errors.OpError, TypeError, ValueError) as err:
        return False, (f'TensorFlow {tf.__version__} here has no oneDNN int8 convolution '
                       f'(QuantizedConv2DWithBias: {str(err).splitlines()[0][:200]}); it needs '
                       f'the x86 build with TF_ENABLE_ONEDNN_OPTS unset or 1')
    if got != want:
        return False, f'oneDNN int8 convolution check gave {got}, expected {want}'
    return True, ''


def _conv_fn(kernel, strides, dilations):
    """A graph function ``codes [B, H, W, C] uint8 -> acc [B, H', W', O] int32`` (VALID) with
    ``kernel`` ``(kh, kw, C, O)`` int8 as its constant filter."""
    kernel = np.ascontiguousarray(kernel, np.int8)
    out = kernel.shape[-1]

    @tf.function(autograph=False)
    def conv(codes):
        acc = tf.raw_ops.QuantizedConv2DWithBias(
            input=tf.bitcast(codes, tf.quint8), filter=tf.constant(kernel, tf.qint8),
            bias=tf.zeros([out], tf.float32), min_input=0.0, max_input=255.0,
            min_filter=-127.0, max_filter=127.0, strides=[1, *strides, 1], padding='VALID',
            dilations=[1, *dilations, 1], out_type=tf.qint32)[0]
        return tf.bitcast(acc, tf.int32)
    return conv


def _epilogue(accs, a, zu, step, ksum, bias):
    """``float(sum accs) * (a step) + (bias - a zu ksum)`` in one pass (see module docstring)."""
    acc = tf.cast(tf.add_n(list(accs)), step.dtype)
    return acc * (a * step) + (bias - a * zu * ksum)


class IntegerConv:
    """A convolution of uint8 activation codes with int8 kernel codes, float output.

    Args:
        kernel_codes: integer-valued ``(kh, kw, C, O)`` (2-D) or ``(kd, kh, kw, C, O)`` (3-D),
            in ``[-128, 127]``.
        step: ``(O,)`` weight step sizes (the fake-quantized kernel is ``kernel_codes * step``).
        bias: ``(O,)`` or None.
        stride, dilation: per spatial dimension (2 or 3 ints). Padding is the caller's: the
            codes come padded with ``zu``.

    ``__call__(codes, a, zu)``: ``codes`` uint8 ``[N, H, W, C]`` / ``[N, D, H, W, C]``
    (padded), ``a`` and ``zu`` scalar float tensors (input step size and the code of 0) ->
    float32 ``[N, (D',) H', W', O]``.
    """

    def __init__(self, kernel_codes, step, bias=None, stride=None, dilation=None):
        k = np.asarray(kernel_codes, np.float64)
        if k.ndim not in (4, 5):
            raise ValueError(f'IntegerConv takes a 2-D (kh, kw, C, O) or 3-D (kd, kh, kw, C, O) '
                             f'kernel; got shape {k.shape}')
        if np.any(k != np.round(k)) or k.min() < -128 or k.max() > 127:
            raise ValueError('IntegerConv kernel codes must be integers in [-128, 127]')
        spatial = k.ndim - 2
        self.stride = tuple(int(s) for s in (stride or (1,) * spatial))
        self.dilation = tuple(int(d) for d in (dilation or (1,) * spatial))
        if len(self.stride) != spatial or len(self.dilation) != spatial:
            raise ValueError(f'IntegerConv: stride {self.stride} / dilation {self.dilation} '
                             f'need {spatial} values for kernel shape {k.shape}')
        taps = k if spatial == 3 else k[None]
        fan_in = int(np.prod(taps.shape[:-1]))
        if 255 * 128 * fan_in > MAX_ABS_ACCUMULATOR:
            raise ValueError(f'IntegerConv: {fan_in} products per output may overflow int32')
        self.spatial, self.out_channels = spatial, int(k.shape[-1])
        step = np.asarray(step, np.float64).reshape(-1)
        self.step = tf.constant(step.astype(np.float32))
        self.ksum = tf.constant((k.reshape(-1, k.shape[-1]) * step).sum(0).astype(np.float32))
        self.bias = tf.constant(np.zeros(self.out_channels, np.float32) if bias is None
                                else np.asarray(bias, np.float32))
        self._convs = [_conv_fn(t.astype(np.int8), self.stride[-2:], self.dilation[-2:])
                       for t in taps]
        self._epilogue = tf.function(_epilogue, jit_compile=True, autograph=False)

    def __call__(self, codes, a, zu):
        shape = tf.shape(codes)
        if self.spatial == 2:
            accs = [self._convs[0](codes)]
            return self._epilogue(accs, a, zu, self.step, self.ksum, self.bias)
        n, d = shape[0], shape[1]
        sd, dd = self.stride[0], self.dilation[0]
        d_out = (d - dd * (len(self._convs) - 1) - 1) // sd + 1
        accs = []
        for i, conv in enumerate(self._convs):
            frames = codes if (len(self._convs), sd) == (1, 1) else \
                codes[:, i * dd: i * dd + (d_out - 1) * sd + 1: sd]
            accs.append(conv(tf.reshape(frames, tf.concat([[-1], shape[2:]], 0))))
        y = self._epilogue(accs, a, zu, self.step, self.ksum, self.bias)
        ys = tf.shape(y)
        return tf.reshape(y, tf.concat([[n, d_out], ys[1:]], 0))
