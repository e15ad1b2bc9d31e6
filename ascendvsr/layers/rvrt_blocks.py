"""RVRT's building blocks around the video Swin layers (``models/network_rvrt.py``: ``RSTB``,
``RSTBWithInputConv``, ``Upsample``), channels-last ``[N, D, H, W, C]`` (D = frames).

Torch names follow the official ``nn.Sequential`` indices, so official state dicts load key for
key: ``main.1`` (input conv), ``main.3`` (LayerNorm), ``main.5.<i>`` (RSTBs), ``main.7``
(LayerNorm); ``Upsample`` convs at ``0``, ``5`` (, ...) and the last conv at ``5 * steps``.
"""
import math

import keras
import tensorflow as tf

from ascendcv.layers.conv import leaky_relu
from ascendcv.layers.conv3d import Conv3d
from ascendcv.layers.linear import Linear
from ascendcv.layers.norm import LayerNorm
from ascendcv.layers.precision import link_reduced
from ascendcv.layers.sampling import pixel_shuffle
from ascendcv.layers.torch_compat import torch_state_variables
from ascendcv.layers.video_swin import STG


def swin_options(relative_position_bias=True, approximate_gelu=False, norm_eps=1e-5,
                 mlp_ratio=2.0, qkv_bias=True, qk_scale=None):
    """The STG keyword arguments every RVRT block shares (numerics and bias options)."""
    return dict(relative_position_bias=relative_position_bias, approximate_gelu=approximate_gelu,
                norm_eps=norm_eps, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, qk_scale=qk_scale)


class RSTB(keras.layers.Layer):
    """Residual Swin Transformer Block: ``x + linear(STG(x))``. ``[N, D, H, W, dim]`` -> same;
    sub-layers ``residual_group`` (:class:`ascendcv.layers.video_swin.STG`), ``linear``."""

    def __init__(self, dim, depth, num_heads, window_size, swin=None, **kwargs):
        super().__init__(**kwargs)
        self.residual_group = STG(dim, depth, num_heads, window_size, **(swin or {}),
                                  name='residual_group')
        self.linear = Linear(dim, dim, name='linear')
        self.built = True

    def call(self, x):
        return x + self.linear(self.residual_group(x))


class RSTBWithInputConv(keras.layers.Layer):
    """Conv3d (1, 3, 3) -> LayerNorm -> ``num_blocks`` x :class:`RSTB` -> LayerNorm (no outer
    residual). ``[N, D, H, W, in_channels]`` -> ``[N, D, H, W, dim]``.

    Args:
        in_channels (int), dim (int): channels in / out. kernel_size: the input conv's kernel
            (padding ``kernel // 2``). groups: must be 1 (grouped input convs are only used by
            the deblurring / denoising configurations, which are not ported).
        num_blocks, depth, num_heads, window_size: RSTB count and their STG settings.
        swin (dict): :func:`swin_options`.
    """

    def __init__(self, in_channels, dim, num_blocks, depth, num_heads, window_size,
                 kernel_size=(1, 3, 3), groups=1, swin=None, **kwargs):
        super().__init__(**kwargs)
        if int(groups) != 1:
            raise ValueError(f'RSTBWithInputConv supports groups=1 only (got {groups}); grouped '
                             f'input convolutions belong to the deblurring / denoising RVRT '
                             f'configurations, which are not ported')
        kernel_size = tuple(int(k) for k in kernel_size)
        self._conv = Conv3d(in_channels, dim, kernel_size,
                            padding=tuple(k // 2 for k in kernel_size), name='conv')
        self._norm_in = LayerNorm(dim, eps=(swin or {}).get('norm_eps', 1e-5), name='norm_in')
        self._blocks = [RSTB(dim, depth, num_heads, window_size, swin, name=f'rstb_{i}')
                        for i in range(int(num_blocks))]
        self._norm_out = LayerNorm(dim, eps=(swin or {}).get('norm_eps', 1e-5), name='norm_out')
        self.built = True

    def torch_weights(self):  # the sub-layers are private: named here, as the official indices
        out = {}
        out.update(torch_state_variables(self._conv, 'main.1.'))
        out.update(torch_state_variables(self._norm_in, 'main.3.'))
        for i, blk in enumerate(self._blocks):
            out.update(torch_state_variables(blk, f'main.5.{i}.'))
        out.update(torch_state_variables(self._norm_out, 'main.7.'))
        return out

    def call(self, x):
        x = self._norm_in(self._conv(x))
        for blk in self._blocks:
            x = blk(x)
        return self._norm_out(x)


class Upsample(keras.layers.Layer):
    """Official ``Upsample(scale, num_feat)`` for video SR: per power of 2, Conv3d (1, 3, 3)
    ``num_feat -> 4 num_feat``, pixel shuffle x2 (PyTorch channel order) per frame, LeakyReLU
    0.1; then Conv3d (1, 3, 3) ``num_feat -> num_feat``. Scale 3: one x3 step.
    ``[N, D, H, W, num_feat]`` -> ``[N, D, sH, sW, num_feat]``."""

    def __init__(self, scale, num_feat, **kwargs):
        super().__init__(**kwargs)
        scale = int(scale)
        if scale & (scale - 1) == 0 and scale > 0:
            factors = [2] * int(math.log2(scale))
        elif scale == 3:
            factors = [3]
        else:
            raise ValueError(f'Upsample scale {scale} is not supported (2^n or 3)')
        self.factors = factors
        self._up_convs = [Conv3d(num_feat, f * f * num_feat, (1, 3, 3), padding=(0, 1, 1),
                                name=f'up_conv_{i}') for i, f in enumerate(factors)]
        self._last_conv = Conv3d(num_feat, num_feat, (1, 3, 3), padding=(0, 1, 1),
                                name='last_conv')
        self.built = True

    def torch_weights(self):
        out = {}
        for i, conv in enumerate(self._up_convs):  # each step: conv, 2 rearranges, shuffle, act
            out.update(torch_state_variables(conv, f'{5 * i}.'))
        out.update(torch_state_variables(self._last_conv, f'{5 * len(self._up_convs)}.'))
        return out

    def link_reduced_chains(self):
        """Each conv reaches the next only through pixel shuffle and LeakyReLU: the feature
        maps between them may stay bfloat16 (:mod:`ascendcv.layers.precision`)."""
        convs = self._up_convs + [self._last_conv]
        return sum(link_reduced(a, (), b) for a, b in zip(convs, convs[1:]))

    def call(self, x):
        for conv, f in zip(self._up_convs, self.factors):
            x = conv(x)
            s = tf.shape(x)
            n, d = s[0], s[1]
            y = pixel_shuffle(tf.reshape(x, tf.concat([[n * d], s[2:]], 0)), f)
            ys = tf.shape(y)
            x = leaky_relu(tf.reshape(y, tf.concat([[n, d], ys[1:]], 0)), 0.1)
        return self._last_conv(x)
