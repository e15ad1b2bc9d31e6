"""Image quality metrics with BasicSR's conventions (``basicsr/metrics/psnr_ssim.py``).

Numbers computed here are comparable with the PSNR/SSIM tables of BasicSR-based
VSR papers (EDVR, BasicVSR ...):

* images are ``[H, W, C]`` (or ``[H, W]``) numpy arrays in ``[0, 255]``, uint8 or
  float, **RGB** channel order (BasicSR reads BGR with OpenCV; only the Y
  channel conversion depends on the order and :func:`rgb2ycbcr_y` uses the RGB
  coefficients, so results agree);
* ``crop_border`` pixels are removed from each of the four sides first
  (benchmarks usually crop ``scale`` pixels);
* ``test_y_channel=True`` evaluates on the Y channel of ITU-R BT.601 YCbCr
  (MATLAB ``rgb2ycbcr``), range ``[16, 235]``;
* everything is computed in float64.

:func:`calculate_psnr` returns ``inf`` for identical images, as BasicSR does.
:func:`calculate_ssim` is Wang et al.'s SSIM with an 11x11 Gaussian window
(sigma 1.5), evaluated only where the window fits in the image ("valid"
filtering, like BasicSR's ``cv2.filter2D(...)[5:-5, 5:-5]``) and averaged over
pixels and then over channels.

:func:`psnr_tf` is a TensorFlow batch helper for training/validation loops on
tensors in ``[0, 1]``.
"""
import numbers

import numpy as np

__all__ = ['rgb2ycbcr_y', 'calculate_psnr', 'calculate_ssim', 'gaussian_window', 'psnr_tf']

# MATLAB rgb2ycbcr (ITU-R BT.601), Y row, for R, G, B in [0, 1] -> Y in [16, 235].
_Y_COEFFS = np.array([65.481, 128.553, 24.966], dtype=np.float64)

_SSIM_WINDOW = 11
_SSIM_SIGMA = 1.5


def rgb2ycbcr_y(img):
    """Y channel (BT.601, MATLAB ``rgb2ycbcr``) of an RGB image in ``[0, 255]``.

    ``Y = (65.481 R + 128.553 G + 24.966 B) / 255 + 16``, the same value as
    BasicSR's ``to_y_channel`` (``bgr2ycbcr(img / 255., y_only=True) * 255``)
    up to BasicSR's float32 rounding.  Black maps to 16, white to 235.

    Args:
        img (np.ndarray): ``[..., 3]`` RGB, uint8 or float, range ``[0, 255]``.

    Returns:
        float64 array of shape ``img.shape[:-1]`` (the channel axis is dropped),
        range ``[16, 235]``; not rounded.
    """
    img = np.asarray(img)
    if img.ndim < 1 or img.shape[-1] != 3:
        raise ValueError(f'rgb2ycbcr_y expects an RGB image [..., 3], got shape {img.shape}')
    return img.astype(np.float64) / 255. @ _Y_COEFFS + 16.


def _prepare_pair(img, img2, crop_border, test_y_channel, name):
    """Validate, crop and (optionally) convert to Y; returns two float64 arrays."""
    img = np.asarray(img)
    img2 = np.asarray(img2)
    if img.shape != img2.shape:
        raise ValueError(f'{name}: image shapes differ: {img.shape} vs {img2.shape}')
    if img.ndim not in (2, 3):
        raise ValueError(f'{name}: expected [H, W] or [H, W, C] images, got shape {img.shape}')
    if isinstance(crop_border, bool) or not isinstance(crop_border, numbers.Integral) or crop_border < 0:
        raise ValueError(f'{name}: crop_border must be a non-negative integer, got {crop_border!r}')
    height, width = img.shape[:2]
    if 2 * crop_border >= min(height, width):
        raise ValueError(f'{name}: crop_border={crop_border} removes the whole {height}x{width} image')
    if crop_border:
        img = img[crop_border:-crop_border, crop_border:-crop_border, ...]
        img2 = img2[crop_border:-crop_border, crop_border:-crop_border, ...]
    if test_y_channel:
        if img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f'{name}: test_y_channel needs RGB [H, W, 3] images, got shape {img.shape}')
        return rgb2ycbcr_y(img), rgb2ycbcr_y(img2)
    return img.astype(np.float64), img2.astype(np.float64)


def calculate_psnr(img, img2, crop_border=0, test_y_channel=False, max_value=255.):
    """PSNR between two images (BasicSR ``calculate_psnr``).

    ``10 * log10(max_value**2 / MSE)`` with the MSE averaged over all pixels and
    channels of the cropped images, in float64.

    Args:
        img, img2 (np.ndarray): ``[H, W]`` or ``[H, W, C]`` (RGB), same shape,
            uint8 or float in ``[0, max_value]``.
        crop_border (int): pixels removed from each side before measuring.
        test_y_channel (bool): measure the Y channel (:func:`rgb2ycbcr_y`) of
            RGB images instead of all channels.
        max_value (float): peak signal value (255 for ``[0, 255]`` images).

    Returns:
        float PSNR in dB; ``inf`` when the (cropped) images are identical.

    Raises:
        ValueError: different shapes, unsupported rank, a crop that leaves no
            pixel, or ``test_y_channel`` on non-RGB images.
    """
    img, img2 = _prepare_pair(img, img2, crop_border, test_y_channel, 'calculate_psnr')
    mse = np.mean((img - img2) ** 2)
    if mse == 0:
        return float('inf')
    return float(10. * np.log10(float(max_value) ** 2 / mse))


def gaussian_window(size=_SSIM_WINDOW, sigma=_SSIM_SIGMA):
    """Normalised 1-D Gaussian (``cv2.getGaussianKernel(size, sigma)``), float64 ``[size]``.

    The 2-D SSIM window is its outer product with itself.
    """
    offsets = np.arange(size, dtype=np.float64) - (size - 1) / 2.
    kernel = np.exp(-offsets ** 2 / (2. * sigma ** 2))
    return kernel / kernel.sum()


def _filter_valid(img, kernel):
    """Separable 'valid' correlation of a 2-D ``img`` with ``outer(kernel, kernel)``.

    Output shape ``[H - k + 1, W - k + 1]``; equals
    ``cv2.filter2D(img, -1, window)[r:-r, r:-r]`` with ``r = (k - 1) // 2``.
    """
    size = kernel.size
    out_h, out_w = img.shape[0] - size + 1, img.shape[1] - size + 1
    rows = np.zeros((out_h, img.shape[1]), dtype=np.float64)
    for i, weight in enumerate(kernel):
        rows += weight * img[i:i + out_h, :]
    out = np.zeros((out_h, out_w), dtype=np.float64)
    for j, weight in enumerate(kernel):
        out += weight * rows[:, j:j + out_w]
    return out


def _ssim_single(img, img2):
    """Mean SSIM of two float64 ``[H, W]`` images in ``[0, 255]`` (BasicSR ``_ssim``)."""
    c1 = (0.01 * 255) ** 2
    c2 = (0.03 * 255) ** 2
    kernel = gaussian_window()
    mu1 = _filter_valid(img, kernel)
    mu2 = _filter_valid(img2, kernel)
    mu1_sq = mu1 ** 2
    mu2_sq = mu2 ** 2
    mu1_mu2 = mu1 * mu2
    sigma1_sq = _filter_valid(img ** 2, kernel) - mu1_sq
    sigma2_sq = _filter_valid(img2 ** 2, kernel) - mu2_sq
    sigma12 = _filter_valid(img * img2, kernel) - mu1_mu2
    ssim_map = ((2 * mu1_mu2 + c1) * (2 * sigma12 + c2)) / ((mu1_sq + mu2_sq + c1) * (sigma1_sq + sigma2_sq + c2))
    return float(ssim_map.mean())


def calculate_ssim(img, img2, crop_border=0, test_y_channel=False):
    """SSIM between two images (BasicSR ``calculate_ssim``).

    Constants ``C1 = (0.01 * 255)**2``, ``C2 = (0.03 * 255)**2`` (peak 255);
    local statistics from an 11x11 Gaussian window (sigma 1.5) evaluated where
    it fits entirely inside the cropped image; the SSIM map is averaged, then
    the per-channel values are averaged.

    Args:
        img, img2 (np.ndarray): ``[H, W]`` or ``[H, W, C]`` (RGB), same shape,
            uint8 or float in ``[0, 255]``; at least 11x11 after cropping.
        crop_border (int): pixels removed from each side before measuring.
        test_y_channel (bool): measure the Y channel of RGB images only.

    Returns:
        float SSIM (1.0 for identical images).

    Raises:
        ValueError: different shapes, unsupported rank, a crop that leaves no
            pixel or less than 11x11 pixels, or ``test_y_channel`` on non-RGB
            images.
    """
    img, img2 = _prepare_pair(img, img2, crop_border, test_y_channel, 'calculate_ssim')
    if min(img.shape[:2]) < _SSIM_WINDOW:
        raise ValueError(f'calculate_ssim: images must be at least {_SSIM_WINDOW}x{_SSIM_WINDOW} after '
                         f'cropping, got {img.shape[0]}x{img.shape[1]}')
    if img.ndim == 2:
        return _ssim_single(img, img2)
    return float(np.mean([_ssim_single(img[..., c], img2[..., c]) for c in range(img.shape[2])]))


def psnr_tf(y_true, y_pred, max_val=1.0):
    """Per-image PSNR of TensorFlow image batches (``tf.image.psnr``).

    Intended for training/validation on network tensors, which are in
    ``[0, 1]`` (hence ``max_val=1.0``); pass ``max_val=255.`` for ``[0, 255]``
    data.  No cropping, no Y conversion: use :func:`calculate_psnr` on uint8
    images for benchmark numbers.

    Args:
        y_true, y_pred: tensors / arrays ``[..., H, W, C]`` of the same shape
            (e.g. ``[N, H, W, C]`` or ``[N, T, H, W, C]``), any real dtype;
            cast to float32 without rescaling.
        max_val (float): peak value of the data range.

    Returns:
        float32 tensor of shape ``[...]`` (one PSNR per image, ``inf`` where
        the images are identical).
    """
    import tensorflow as tf  # local import: the numpy metrics do not need TensorFlow

    y_true = tf.cast(tf.convert_to_tensor(y_true), tf.float32)
    y_pred = tf.cast(tf.convert_to_tensor(y_pred), tf.float32)
    if y_true.shape.rank is not None and y_true.shape.rank < 3:
        raise ValueError(f'psnr_tf expects images [..., H, W, C], got shape {y_true.shape}')
    if not y_true.shape.is_compatible_with(y_pred.shape):
        raise ValueError(f'psnr_tf: image shapes differ: {y_true.shape} vs {y_pred.shape}')
    return tf.image.psnr(y_true, y_pred, max_val=max_val)
