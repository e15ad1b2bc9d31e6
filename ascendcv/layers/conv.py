"""2-D convolutions with PyTorch semantics: ``Conv2d`` (symmetric explicit padding) and the
non-overlapping ``ConvTranspose2d`` (kernel = stride), NHWC.

TF's 'SAME' pads stride-2 convolutions asymmetrically (more at the bottom/right), while
``nn.Conv2d(..., stride=2, padding=1)`` pads one pixel on every side. Our ``Conv2d`` takes the
PyTorch arguments and pads explicitly so converted weights reproduce PyTorch outputs.
"""
import math

import keras
import tensorflow as tf

from ascendcv.layers.precision import ReducedPrecisionLayer, link_reduced, lowered, raised, with_bias
from ascendcv.layers.torch_compat import (TorchWeightLayer, freeze_zeros, iohw_to_hwio,
                                          oihw_to_hwio, torch_uniform)


class ConvNd(ReducedPrecisionLayer, TorchWeightLayer):
    """The constructor :class:`Conv2d` and :class:`ascendcv.layers.conv3d.Conv3d` share:
    ``torch.nn.ConvNd`` arguments, weights ``kernel`` ``(*kernel_size, in, out)`` and ``bias``
    ``(out,)`` with PyTorch's default initialisation.

    ``spatial_arg(value, name)`` turns a kernel_size / stride / padding / dilation argument into
    the stored attribute: an int (2-D, here); 3-D subclasses store ``(d, h, w)`` triples.
    The product runs in ``compute_precision`` (:mod:`ascendcv.layers.precision`), the bias in
    float32.
    """

    config_keys = ('in_channels', 'out_channels', 'kernel_size', 'stride', 'padding', 'dilation',
                   'bias')

    def __init__(self, in_channels, out_channels, kernel_size=3, stride=1, padding=0, dilation=1,
                 bias=True, **kwargs):
        super().__init__(**kwargs)
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size = self.spatial_arg(kernel_size, 'kernel_size')
        self.stride = self.spatial_arg(stride, 'stride')
        self.padding = self.spatial_arg(padding, 'padding')
        self.dilation = self.spatial_arg(dilation, 'dilation')
        dims = self.kernel_dims()
        self.add_torch_weights((*dims, self.in_channels, self.out_channels), self.out_channels,
                               bias, torch_uniform(self.in_channels * math.prod(dims)))

    @staticmethod
    def spatial_arg(value, name):
        return int(value)

    def kernel_dims(self):
        """The spatial kernel shape: ``(k, k)`` in 2-D, the stored triple in 3-D."""
        k = self.kernel_size
        return tuple(k) if isinstance(k, tuple) else (k, k)


class Conv2d(ConvNd):
    """2-D convolution, NHWC, with ``torch.nn.Conv2d`` arguments.

    Args:
        in_channels, out_channels (int): channel counts (``in_channels`` fixes the weight shape
            at construction, as in PyTorch, so weights can be loaded before the first call).
        kernel_size, stride, padding, dilation (int): as in ``nn.Conv2d``; padding is zeros on
            all four sides.
        bias (bool): add a learned bias.

    Input ``[N, H, W, in_channels]`` -> output ``[N, H', W', out_channels]`` with
    ``H' = (H + 2p - d(k-1) - 1) // s + 1``. Weights: ``kernel`` (k, k, in, out), ``bias`` (out,).
    """

    weight_layout = staticmethod(oihw_to_hwio)

    def call(self, x):
        return self.convolve(x, self.kernel)

    def convolve(self, x, kernel):
        """This convolution (padding, stride, dilation, bias) with another ``kernel`` of the
        same shape (e.g. a fake-quantized one)."""
        p = self.padding
        pads = [[0, 0], [p, p], [p, p], [0, 0]] if p else 'VALID'
        if self.dilation > 1 and p:
            x = tf.pad(x, pads)
            pads = 'VALID'
        x, kernel = lowered(self, x, kernel)
        return with_bias(self, tf.nn.conv2d(x, kernel, strides=self.stride, padding=pads,
                                            dilations=self.dilation), self.bias)


class ConvTranspose2d(ReducedPrecisionLayer, TorchWeightLayer):
    """``nn.ConvTranspose2d(in, out, kernel_size=s, stride=s)`` (no overlap, no padding), NHWC.

    ``out[n, h*s+i, w*s+j, o] = bias[o] + sum_c x[n, h, w, c] * W[c, o, i, j]``; input
    ``[N, H, W, in]`` -> ``[N, sH, sW, out]``. Weight ``kernel`` (s, s, in, out) (PyTorch
    ``(in, out, s, s)``), ``bias`` (out,). ``keep_zeros``: exactly-zero weights receive no
    gradient (pruned weights stay pruned).
    """

    weight_layout = staticmethod(iohw_to_hwio)
    config_keys = ('in_channels', 'out_channels', 'stride', 'bias', 'keep_zeros')

    def __init__(self, in_channels, out_channels, stride, bias=True, keep_zeros=False, **kwargs):
        super().__init__(**kwargs)
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.stride, self.keep_zeros = int(stride), bool(keep_zeros)
        s = self.stride
        # PyTorch computes the fan-in of a transposed conv weight (in, out, k, k) as out * k * k
        self.add_torch_weights((s, s, self.in_channels, self.out_channels), self.out_channels,
                               bias, torch_uniform(self.out_channels * s * s))

    def call(self, x):
        s, c_in, c_out = self.stride, self.in_channels, self.out_channels
        k = freeze_zeros(self.kernel) if self.keep_zeros else self.kernel
        mat = tf.reshape(tf.transpose(k, [2, 0, 1, 3]), [c_in, s * s * c_out])
        shape = tf.shape(x)
        n, h, w = shape[0], shape[1], shape[2]
        flat, mat = lowered(self, tf.reshape(x, [-1, c_in]), mat)
        y = tf.reshape(raised(tf.matmul(flat, mat)), [n, h, w, s, s, c_out])
        y = tf.reshape(tf.transpose(y, [0, 1, 3, 2, 4, 5]), [n, h * s, w * s, c_out])
        return y + self.bias if self.bias is not None else y


def leaky_relu(x, negative_slope=0.1):
    """``nn.LeakyReLU(negative_slope)``; EDVR uses 0.1."""
    return tf.nn.leaky_relu(x, alpha=negative_slope)


class ResidualBlockNoBN(keras.layers.Layer):
    """Residual block without BN (EDSR/BasicSR): ``x + res_scale * conv2(relu(conv1(x)))``.

    Input and output ``[N, H, W, num_feat]``. Weight names ``conv1``/``conv2`` as in BasicSR.
    """

    def __init__(self, num_feat=64, res_scale=1.0, **kwargs):
        super().__init__(**kwargs)
        self.num_feat, self.res_scale = int(num_feat), float(res_scale)
        self.conv1 = Conv2d(num_feat, num_feat, 3, 1, 1, name='conv1')
        self.conv2 = Conv2d(num_feat, num_feat, 3, 1, 1, name='conv2')

    def link_reduced_chains(self):
        """conv1 - ReLU - conv2 may stay bfloat16 (:func:`ascendcv.layers.precision.link_reduced`)."""
        return link_reduced(self.conv1, (), self.conv2)

    def call(self, x):
        out = self.conv2(tf.nn.relu(self.conv1(x)))
        return x + out * self.res_scale if self.res_scale != 1.0 else x + out

    def get_config(self):
        cfg = super().get_config()
        cfg.update(num_feat=self.num_feat, res_scale=self.res_scale)
        return cfg
