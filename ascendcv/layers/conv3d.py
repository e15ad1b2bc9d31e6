"""3-D convolutions with PyTorch semantics, channels-last (NDHWC).

``Conv3d`` and ``ConvTranspose3d`` take the arguments of ``torch.nn.Conv3d`` /
``torch.nn.ConvTranspose3d`` (ints or ``(d, h, w)`` triples) and reproduce their outputs once the
PyTorch weights are loaded through ``torch_weights()`` (see :mod:`ascendcv.layers.torch_compat`).

* Padding is zeros on both sides of every dimension, as in PyTorch. TF's ``'SAME'`` is used only
  where it is the same thing (stride 1 and ``2p == dilation * (k - 1)``); otherwise the input is
  padded explicitly (``'SAME'`` would pad a stride-2 convolution asymmetrically).
* ``ConvTranspose3d`` runs ``tf.nn.conv3d_transpose`` with ``'VALID'`` padding, which yields the
  full output ``(L - 1) * s + k``, and crops ``padding`` from the start and
  ``padding - output_padding`` from the end (zero-extends when ``output_padding > padding``):
  ``L_out = (L - 1) * s - 2p + k + output_padding``, exactly PyTorch's size and alignment.

Layouts: input/output ``[N, D, H, W, C]``; ``Conv3d.kernel`` ``(kd, kh, kw, in, out)`` (PyTorch
``(out, in, kd, kh, kw)``); ``ConvTranspose3d.kernel`` ``(kd, kh, kw, out, in)`` as
``tf.nn.conv3d_transpose`` wants it (PyTorch ``(in, out, kd, kh, kw)``).
"""
import math

import tensorflow as tf

from ascendcv.layers.conv import ConvNd
from ascendcv.layers.precision import ReducedPrecisionLayer, lowered, with_bias
from ascendcv.layers.torch_compat import (TorchWeightLayer, iodhw_to_dhwoi, oidhw_to_dhwio,
                                          torch_uniform)


def _triple(value, what):
    if isinstance(value, int):
        return (value,) * 3
    value = tuple(int(v) for v in value)
    if len(value) != 3:
        raise ValueError(f'{what} must be an int or a (d, h, w) triple; got {value}')
    return value


class Conv3d(ConvNd):
    """3-D convolution, NDHWC, with ``torch.nn.Conv3d`` arguments.

    Args:
        in_channels, out_channels (int): channel counts (weights exist from construction, so a
            checkpoint can be loaded before the first call).
        kernel_size, stride, padding, dilation (int | (d, h, w)): as in ``nn.Conv3d``.
        bias (bool): add a learned bias.

    Input ``[N, D, H, W, in_channels]`` -> output ``[N, D', H', W', out_channels]`` with, per
    dimension, ``L' = (L + 2p - dil * (k - 1) - 1) // s + 1``.
    """

    weight_layout = staticmethod(oidhw_to_dhwio)
    spatial_arg = staticmethod(_triple)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        same = all(s == 1 and 2 * p == d * (k - 1) for k, s, p, d in
                   zip(self.kernel_size, self.stride, self.padding, self.dilation))
        self._tf_padding = 'SAME' if same else 'VALID'
        self._explicit_pad = None if (same or not any(self.padding)) else \
            [[0, 0]] + [[p, p] for p in self.padding] + [[0, 0]]
        # a kernel of depth 1 (stride 1, no depth padding) is a 2-D convolution of every frame:
        # run it as one, frames folded into the batch (oneDNN's 2-D kernels: (1,3,3) 64->64 on
        # 8x128x128 takes 0.074 s against 0.113 s as a 3-D convolution here)
        self._per_frame = (self.kernel_size[0], self.stride[0], self.padding[0]) == (1, 1, 0)

    def call(self, x):
        return self.convolve(x, self.kernel)

    def convolve(self, x, kernel):
        """This convolution (padding, stride, dilation, bias) with another ``kernel`` of the
        same shape (e.g. a fake-quantized one)."""
        if self._explicit_pad is not None:
            x = tf.pad(x, self._explicit_pad)
        x, kernel = lowered(self, x, kernel)
        if self._per_frame:
            y = self._conv_frames(x, kernel[0])
        else:
            y = tf.nn.conv3d(x, kernel, strides=(1, *self.stride, 1), padding=self._tf_padding,
                             dilations=(1, *self.dilation, 1))
        return with_bias(self, y, self.bias)


    def _conv_frames(self, x, kernel):
        """``x [N, D, H, W, C]`` through the 2-D ``kernel [kh, kw, C, out]`` frame by frame (one
        ``conv2d`` over ``N * D`` frames) -> ``[N, D, H', W', out]``."""
        dims = [x.shape[i] if x.shape[i] is not None else tf.shape(x)[i] for i in range(5)]
        y = tf.nn.conv2d(tf.reshape(x, [-1, *dims[2:]]), kernel,
                         strides=(1, *self.stride[1:], 1), padding=self._tf_padding,
                         dilations=(1, *self.dilation[1:], 1))
        out = [y.shape[i] if y.shape[i] is not None else tf.shape(y)[i] for i in (1, 2)]
        return tf.reshape(y, [dims[0], dims[1], *out, self.out_channels])


class ConvTranspose3d(ReducedPrecisionLayer, TorchWeightLayer):
    """Transposed 3-D convolution, NDHWC, with ``torch.nn.ConvTranspose3d`` arguments.

    Args:
        in_channels, out_channels (int): channel counts.
        kernel_size, stride, padding, output_padding (int | (d, h, w)): as in PyTorch
            (``output_padding < stride`` per dimension).
        bias (bool): add a learned bias.

    Input ``[N, D, H, W, in_channels]`` -> output ``[N, D', H', W', out_channels]`` with, per
    dimension, ``L' = (L - 1) * s - 2p + k + output_padding``. Dilation and groups are not
    supported (RevSCI does not use them).
    """

    weight_layout = staticmethod(iodhw_to_dhwoi)
    config_keys = ('in_channels', 'out_channels', 'kernel_size', 'stride', 'padding',
                   'output_padding', 'bias')

    def __init__(self, in_channels, out_channels, kernel_size=3, stride=1, padding=0,
                 output_padding=0, bias=True, **kwargs):
        super().__init__(**kwargs)
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size = _triple(kernel_size, 'kernel_size')
        self.stride = _triple(stride, 'stride')
        self.padding = _triple(padding, 'padding')
        self.output_padding = _triple(output_padding, 'output_padding')
        for op, s in zip(self.output_padding, self.stride):
            if not 0 <= op < s:
                raise ValueError(f'output_padding {self.output_padding} must be smaller than '
                                 f'stride {self.stride} (as in PyTorch)')
        # PyTorch computes fan_in from weight dim 1, which is out_channels for transposed convs
        self.add_torch_weights((*self.kernel_size, self.out_channels, self.in_channels),
                               self.out_channels, bias,
                               torch_uniform(self.out_channels * math.prod(self.kernel_size)))

    def output_size(self, size, axis):
        """PyTorch output length along spatial ``axis`` (0 = D, 1 = H, 2 = W) for input ``size``."""
        k, s = self.kernel_size[axis], self.stride[axis]
        return (size - 1) * s - 2 * self.padding[axis] + k + self.output_padding[axis]

    def call(self, x):
        static, dynamic = x.shape, tf.shape(x)
        full = [static[i + 1] if static[i + 1] is not None else dynamic[i + 1] for i in range(3)]
        full = [(n - 1) * s + k for n, s, k in zip(full, self.stride, self.kernel_size)]
        batch = static[0] if static[0] is not None else dynamic[0]
        x, kernel = lowered(self, x, self.kernel)
        y = tf.nn.conv3d_transpose(x, kernel, tf.stack([batch, *full, self.out_channels]),
                                   strides=(1, *self.stride, 1), padding='VALID')
        # crop p at the start and p - output_padding at the end (zero-extend if negative)
        extend = [max(op - p, 0) for p, op in zip(self.padding, self.output_padding)]
        if any(extend):
            y = tf.pad(y, [[0, 0]] + [[0, e] for e in extend] + [[0, 0]])
        ends = [-(p - op) if p > op else None for p, op in zip(self.padding, self.output_padding)]
        y = y[:, self.padding[0]:ends[0], self.padding[1]:ends[1], self.padding[2]:ends[2], :]
        y = with_bias(self, y, self.bias)
        if any(d is not None for d in static[1:4]):  # keep static sizes for the next layers
            y.set_shape([static[0]] + [None if static[i + 1] is None else
                                       self.output_size(static[i + 1], i) for i in range(3)]
                        + [self.out_channels])
        return y
