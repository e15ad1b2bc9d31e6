"""Modulated deformable convolution (DCNv2) with torchvision ``deform_conv2d`` semantics.

Layouts (NHWC; see DESIGN.md): input ``[N, H, W, C]``; kernel ``[kh, kw, C, O]``; ``offset``
``[N, Ho, Wo, 2*G*K]`` holding ``(dy, dx)`` pairs, channel ``g*2K + 2k (+1)`` for deformable group
``g`` and kernel tap ``k = i*kw + j`` (the torchvision / BasicSR order, so official weights load
unchanged); ``mask`` ``[N, Ho, Wo, G*K]`` (already through a sigmoid). Tap ``k`` of output pixel
``(oy, ox)`` reads ``y = oy*stride - pad + i*dil + dy``, ``x = ox*stride - pad + j*dil + dx``
bilinearly, zero outside the image, times the mask.

Implementations (``impl``):

* ``'tf'`` -- core TF ops only: four gathers (one per bilinear corner) of ``C/G``-channel rows from
  a flat table of the zero-padded input, weighted by the bilinear weights with the mask folded in,
  then one matmul with the kernel reshaped to ``[K*C, O]`` (an im2col over sampled values). It
  freezes and exports to ONNX. With ``jit_compile=True`` the sampling and matmul are compiled by
  XLA, which fuses the gathers and the weighting into one pass and never materialises the
  ``[N, Ho, Wo, K, G, 4, C/G]`` corner tensor (measured: 0.19 s -> 0.08 s on 1x180x320x64, G=8,
  see ``benchmarks/edvr_speed.py``). Export paths build the layer with ``jit_compile=False``.
* ``'npu'`` -- Ascend's native ``DeformableOffsets`` op via ``npu_bridge`` (graph mode only); fails
  at build time with a clear message when ``npu_bridge`` is not importable.
"""
import tensorflow as tf

from ascendcv.layers.precision import ReducedPrecisionLayer, raised
from ascendcv.layers.sampling import bilinear_sample
from ascendcv.layers.torch_compat import TorchWeightLayer, oihw_to_hwio, torch_uniform

IMPLS = ('tf', 'npu')


def _pair(v):
    return (int(v), int(v)) if isinstance(v, int) else tuple(int(i) for i in v)


def deform_conv2d(x, offset, mask, kernel, bias=None, stride=1, padding=0, dilation=1,
                  deformable_groups=1, compute_dtype='float32'):
    """Functional DCNv2 (``impl='tf'``), semantics of ``torchvision.ops.deform_conv2d``.

    Args:
        x: ``[N, H, W, C]``.
        offset: ``[N, Ho, Wo, 2*G*kh*kw]`` (dy, dx) pairs, torchvision channel order.
        mask: ``[N, Ho, Wo, G*kh*kw]`` modulation (``None`` = DCNv1, all ones).
        kernel: ``[kh, kw, C, O]``; bias ``[O]`` or None.
        stride, padding, dilation: int or (h, w) pair, as in PyTorch.
        deformable_groups: ``G``; ``C`` must be divisible by it.
        compute_dtype: ``'bfloat16'`` runs the final matmul in bfloat16 (the sampling stays
            float32, :mod:`ascendcv.layers.precision`).

    Returns:
        ``[N, Ho, Wo, O]``.
    """
    kh, kw, cin, cout = kernel.shape
    sh, sw = _pair(stride)
    ph, pw = _pair(padding)
    dh, dw = _pair(dilation)
    g = int(deformable_groups)
    k = kh * kw
    shape = tf.shape(offset)
    n, ho, wo = shape[0], shape[1], shape[2]

    # offsets (g, k, yx) -> (k, g, yx): sampled values then come out as (k, c) columns, which is
    # the HWIO kernel's own row order, so the kernel needs only a reshape
    off = tf.transpose(tf.reshape(offset, [n, ho, wo, g, k, 2]), [0, 1, 2, 4, 3, 5])
    taps_y = tf.constant([i * dh for i in range(kh) for _ in range(kw)], x.dtype)
    taps_x = tf.constant([j * dw for _ in range(kh) for j in range(kw)], x.dtype)
    grid_y = tf.cast(tf.range(ho) * sh - ph, x.dtype)[:, None] + taps_y  # [Ho, K]
    grid_x = tf.cast(tf.range(wo) * sw - pw, x.dtype)[:, None] + taps_x  # [Wo, K]
    y = off[..., 0] + grid_y[None, :, None, :, None]
    xx = off[..., 1] + grid_x[None, None, :, :, None]
    m = None
    if mask is not None:
        m = tf.transpose(tf.reshape(mask, [n, ho, wo, g, k]), [0, 1, 2, 4, 3])

    cols = bilinear_sample(x, y, xx, groups=g, weight=m)  # [N, Ho, Wo, K, G, C/G]
    cols, kmat = tf.reshape(cols, [-1, k * cin]), tf.reshape(kernel, [k * cin, cout])
    if compute_dtype != 'float32':
        cols, kmat = tf.cast(cols, compute_dtype), tf.cast(kmat, compute_dtype)
    out = tf.reshape(raised(tf.matmul(cols, kmat)), [n, ho, wo, cout])
    if bias is not None:
        out = out + bias
    return out


_deform_conv2d_xla = tf.function(deform_conv2d, jit_compile=True, autograph=False)


def _npu_cube():
    try:
        from npu_bridge.estimator.npu import npu_cube  # noqa: F401  (Ascend TF adapter)
    except ImportError as err:
        raise RuntimeError(
            "impl='npu' (config key edvr.impl) needs the Ascend TensorFlow adapter (npu_bridge), which is not "
            f"importable here ({err}). Use edvr.impl='tf' on CPU/GPU.") from err
    return npu_cube


def deform_conv2d_npu(x, offset, mask, kernel, bias=None, stride=1, padding=0, dilation=1,
                      deformable_groups=1):
    """DCNv2 through Ascend's ``DeformableOffsets`` + strided conv (graph mode, NPU only).

    Ascend wants offsets as ``[dx(G*K), dy(G*K), mask(G*K)]``; ours are torchvision's interleaved
    ``(dy, dx)``, so they are re-laid-out here.
    """
    npu_cube = _npu_cube()
    kh, kw = kernel.shape[:2]
    g, k = int(deformable_groups), kernel.shape[0] * kernel.shape[1]
    shape = tf.shape(offset)
    off = tf.reshape(offset, [shape[0], shape[1], shape[2], g * k, 2])
    if mask is None:
        mask = tf.ones_like(off[..., 0])
    packed = tf.concat([off[..., 1], off[..., 0], mask], axis=-1)
    sh, sw = _pair(stride)
    ph, pw = _pair(padding)
    dh, dw = _pair(dilation)
    out = npu_cube.deformable_conv2d(x, kernel, packed, strides=[1, sh, sw, 1],
                                     pads=[ph, ph, pw, pw], data_format='NHWC',
                                     dilations=[1, dh, dw, 1], deformable_groups=g)
    return out + bias if bias is not None else out


class ModulatedDeformConv2d(ReducedPrecisionLayer, TorchWeightLayer):
    """DCNv2 layer holding ``weight``/``bias``; ``call(x, offset, mask)``.

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation: as ``nn.Conv2d``.
        deformable_groups (int): offset groups ``G`` (``in_channels % G == 0``).
        bias (bool): learned bias.
        impl (str): ``'tf'`` or ``'npu'`` (see module docstring).
        jit_compile (bool): XLA-compile the ``'tf'`` computation (fast path); export code sets
            it to False to keep a plain graph.

    Shapes: ``x [N, H, W, in]``, ``offset [N, Ho, Wo, 2*G*k*k]``, ``mask [N, Ho, Wo, G*k*k]`` ->
    ``[N, Ho, Wo, out]``.
    """

    weight_layout = staticmethod(oihw_to_hwio)
    config_keys = ('in_channels', 'out_channels', 'kernel_size', 'stride', 'padding', 'dilation',
                   'deformable_groups', 'bias', 'impl', 'jit_compile')

    def __init__(self, in_channels, out_channels, kernel_size=3, stride=1, padding=1, dilation=1,
                 deformable_groups=1, bias=True, impl='tf', jit_compile=False, **kwargs):
        super().__init__(**kwargs)
        if impl not in IMPLS:
            raise ValueError(f"deformable conv impl must be one of {IMPLS}, got {impl!r}")
        if in_channels % deformable_groups:
            raise ValueError(f'in_channels={in_channels} is not divisible by '
                             f'deformable_groups={deformable_groups}')
        if impl == 'npu':
            _npu_cube()  # fail at build time, not at the first call
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size, self.stride = int(kernel_size), int(stride)
        self.padding, self.dilation = int(padding), int(dilation)
        self.deformable_groups = int(deformable_groups)
        self.impl, self.jit_compile = impl, bool(jit_compile)
        k = self.kernel_size
        self.add_torch_weights((k, k, self.in_channels, self.out_channels), self.out_channels,
                               bias, torch_uniform(self.in_channels * k * k),  # BasicSR DCNv2Pack
                               bias_init='zeros')

    def call(self, x, offset, mask=None):
        kernel = tf.convert_to_tensor(self.kernel)
        bias = None if self.bias is None else tf.convert_to_tensor(self.bias)
        args = (x, offset, mask, kernel, bias, self.stride, self.padding, self.dilation,
                self.deformable_groups)
        if self.impl == 'npu':
            return deform_conv2d_npu(*args)
        fn = _deform_conv2d_xla if self.jit_compile else deform_conv2d
        return fn(*args, compute_dtype=self.compute_precision)


class DCNv2Pack(ModulatedDeformConv2d):
    """BasicSR ``DCNv2Pack``: offsets and mask predicted from a guide feature.

    ``conv_offset`` (a 3x3 conv, ``3*G*k*k`` outputs) maps the guide to ``o1, o2, mask``;
    ``offset = concat(o1, o2)``, ``mask = sigmoid(mask)``. ``call(x, feat)`` with
    ``x [N, H, W, in]`` and ``feat [N, H, W, in]`` -> ``[N, H, W, out]``.
    """

    def __init__(self, in_channels, out_channels, kernel_size=3, stride=1, padding=1, dilation=1,
                 deformable_groups=1, **kwargs):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         deformable_groups, **kwargs)
        from ascendcv.layers.conv import Conv2d
        k = self.kernel_size
        self.conv_offset = Conv2d(in_channels, 3 * deformable_groups * k * k, k, stride, padding,
                                  dilation, name='conv_offset')
        # BasicSR init_offset(): the offset/mask predictor starts at zero (regular conv, mask 0.5)
        self.conv_offset.kernel.assign(tf.zeros_like(self.conv_offset.kernel))
        self.conv_offset.bias.assign(tf.zeros_like(self.conv_offset.bias))

    def call(self, x, feat):
        out = self.conv_offset(feat)
        n_off = 2 * self.deformable_groups * self.kernel_size ** 2
        offset, mask = out[..., :n_off], tf.sigmoid(out[..., n_off:])
        return super().call(x, offset, mask)
