"""Convolutions with PyTorch padding semantics (symmetric explicit padding).

TF's 'SAME' pads stride-2 convolutions asymmetrically (more at the bottom/right), while
``nn.Conv2d(..., stride=2, padding=1)`` pads one pixel on every side. Our ``Conv2d`` takes the
PyTorch arguments and pads explicitly so converted weights reproduce PyTorch outputs.
"""
import keras
import tensorflow as tf

from ascendcv.layers.torch_compat import TorchWeightLayer, oihw_to_hwio, torch_uniform


class Conv2d(TorchWeightLayer):
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
    config_keys = ('in_channels', 'out_channels', 'kernel_size', 'stride', 'padding', 'dilation',
                   'bias')

    def __init__(self, in_channels, out_channels, kernel_size=3, stride=1, padding=0, dilation=1,
                 bias=True, **kwargs):
        super().__init__(**kwargs)
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size, self.stride = int(kernel_size), int(stride)
        self.padding, self.dilation = int(padding), int(dilation)
        k = self.kernel_size
        self.add_torch_weights((k, k, self.in_channels, self.out_channels), self.out_channels, bias,
                               torch_uniform(self.in_channels * k * k))

    def call(self, x):
        p = self.padding
        pads = [[0, 0], [p, p], [p, p], [0, 0]] if p else 'VALID'
        if self.dilation > 1 and p:
            x = tf.pad(x, pads)
            pads = 'VALID'
        y = tf.nn.conv2d(x, self.kernel, strides=self.stride, padding=pads,
                         dilations=self.dilation)
        if self.bias is not None:
            y = tf.nn.bias_add(y, self.bias)
        return y


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

    def call(self, x):
        out = self.conv2(tf.nn.relu(self.conv1(x)))
        return x + out * self.res_scale if self.res_scale != 1.0 else x + out

    def get_config(self):
        cfg = super().get_config()
        cfg.update(num_feat=self.num_feat, res_scale=self.res_scale)
        return cfg
