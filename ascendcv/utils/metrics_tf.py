"""SSIM and MS-SSIM of TensorFlow image batches, as defined by ``pytorch_msssim`` 0.2.1.

Differentiable (used as training losses, e.g. NeRV's ``Fusion`` losses). Images are NHWC
tensors ``[B, H, W, C]``; the SSIM core is :func:`ascendcv.utils.metrics.ssim_terms` with

* an 11-tap float32 Gaussian window (sigma 1.5, :func:`ascendcv.utils.metrics.gaussian_window`)
  applied separably with 'valid' borders, skipped along a dimension shorter than the window;
* ``K = (0.01, 0.03)``, per-image, per-channel means of the SSIM map;
* MS-SSIM over 5 scales with weights :data:`MS_SSIM_WEIGHTS`, 2x2 average pooling with zero
  padding ``s % 2`` on both sides of odd sizes (count_include_pad), ReLU on the contrast terms
  and on the last SSIM.
"""
import numpy as np
import tensorflow as tf

from ascendcv.utils.metrics import gaussian_window, ssim_terms

__all__ = ['MS_SSIM_WEIGHTS', 'ssim_components', 'ssim', 'ms_ssim_per_image', 'ms_ssim']

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def _gaussian_filter(x, win):
    """Separable 'valid' blur of NHWC ``x`` per channel with the 1-D ``win`` ``[k]``.

    H first, then W; a dimension shorter than ``k`` is not filtered. Output
    ``[B, H - k + 1, W - k + 1, C]`` for large enough images.
    """
    k, c = len(win), x.shape[-1]
    if x.shape[1] is None or x.shape[1] >= k:
        x = tf.nn.depthwise_conv2d(x, tf.constant(np.tile(win.reshape(k, 1, 1, 1), (1, 1, c, 1))),
                                   [1, 1, 1, 1], 'VALID')
    if x.shape[2] is None or x.shape[2] >= k:
        x = tf.nn.depthwise_conv2d(x, tf.constant(np.tile(win.reshape(1, k, 1, 1), (1, 1, c, 1))),
                                   [1, 1, 1, 1], 'VALID')
    return x


def ssim_components(x, y, data_range=1.0, win_size=11, win_sigma=1.5, k=(0.01, 0.03)):
    """Per-image, per-channel ``(ssim, cs)``, two ``[B, C]`` tensors, of NHWC float32 images
    ``x``, ``y`` ``[B, H, W, C]`` (``pytorch_msssim._ssim``)."""
    win = gaussian_window(win_size, win_sigma, np.float32)
    (l_num, l_den), (cs_num, cs_den) = ssim_terms(x, y, lambda im: _gaussian_filter(im, win),
                                                  data_range, k)
    cs_map = cs_num / cs_den
    ssim_map = (l_num / l_den) * cs_map
    return tf.reduce_mean(ssim_map, axis=[1, 2]), tf.reduce_mean(cs_map, axis=[1, 2])


def ssim(x, y, data_range=1.0):
    """Mean SSIM (scalar) of NHWC batches ``[B, H, W, C]``
    (``pytorch_msssim.ssim(..., size_average=True)``)."""
    s, _ = ssim_components(tf.convert_to_tensor(x), tf.convert_to_tensor(y), data_range)
    return tf.reduce_mean(s)


def ms_ssim_per_image(x, y, data_range=1.0, weights=MS_SSIM_WEIGHTS):
    """MS-SSIM of each image, ``[B]``, of NHWC batches ``[B, H, W, C]``
    (``pytorch_msssim.ms_ssim``, mean over channels).

    Raises ValueError when the smaller side is not larger than 160 (4 downsamplings of the
    11-tap window), as ``pytorch_msssim`` does.
    """
    x, y = tf.convert_to_tensor(x), tf.convert_to_tensor(y)
    if min(x.shape[1], x.shape[2]) <= 160:
        raise ValueError(f'MS-SSIM needs frames larger than 160 px on the smaller side; got '
                         f'{x.shape[1]}x{x.shape[2]}')
    w = tf.constant(np.asarray(weights, np.float32), x.dtype)
    mcs = []
    for i in range(len(weights)):
        s, cs = ssim_components(x, y, data_range)
        if i < len(weights) - 1:
            mcs.append(tf.nn.relu(cs))
            ph, pw = x.shape[1] % 2, x.shape[2] % 2
            pads = [[0, 0], [ph, ph], [pw, pw], [0, 0]]
            x = tf.nn.avg_pool2d(tf.pad(x, pads), 2, 2, 'VALID')
            y = tf.nn.avg_pool2d(tf.pad(y, pads), 2, 2, 'VALID')
    values = tf.stack(mcs + [tf.nn.relu(s)], axis=0)  # [levels, B, C]
    return tf.reduce_mean(tf.reduce_prod(values ** w[:, None, None], axis=0), axis=1)


def ms_ssim(x, y, data_range=1.0):
    """Mean MS-SSIM (scalar) of NHWC batches ``[B, H, W, C]``."""
    return tf.reduce_mean(ms_ssim_per_image(x, y, data_range))
