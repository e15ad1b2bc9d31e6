"""Image quality metrics (numpy, float64): one PSNR, one Gaussian window, one SSIM core.

* :func:`psnr` is the PSNR core ``10 log10(peak**2 / MSE)``; ``peak=1`` is NeRV's
  ``-10 log10(MSE)``, ``peak=None`` uses the reference's maximum (PnP-SCI).
* :func:`ssim_terms` is the SSIM core (local statistics under a Gaussian window),
  parametrised by the blur, i.e. by how borders are handled: :func:`ssim_2d` offers
  ``'valid'`` (BasicSR / OpenCV) and ``'replicate'`` (MATLAB ``ssim``) borders; the
  TensorFlow SSIM / MS-SSIM of :mod:`ascendcv.utils.metrics_tf` (``pytorch_msssim``,
  separable 'valid') reuses it.
* Conventions: :func:`calculate_psnr` / :func:`calculate_ssim` (BasicSR),
  :func:`psnr_sci` / :func:`ssim_matlab` / :func:`sci_frame_scores` (video SCI
  benchmarks, 'pnp' and 'cacti' PSNR peaks).

The BasicSR functions (``basicsr/metrics/psnr_ssim.py``) give numbers comparable
with the PSNR/SSIM tables of BasicSR-based VSR papers (EDVR, BasicVSR ...):

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

__all__ = ['rgb2ycbcr_y', 'psnr', 'psnr_sci', 'calculate_psnr', 'gaussian_window', 'ssim_terms',
           'ssim_2d', 'ssim_matlab', 'calculate_ssim', 'SCI_PEAKS', 'sci_frame_scores', 'psnr_tf']

# MATLAB rgb2ycbcr (ITU-R BT.601), Y row, for R, G, B in [0, 1] -> Y in [16, 235].
_Y_COEFFS = np.array([65.481, 128.553, 24.966], dtype=np.float64)

_SSIM_WINDOW = 11
_SSIM_SIGMA = 1.5
_SSIM_K = (0.01, 0.03)

SCI_PEAKS = {'pnp': None, 'cacti': 1.0}
"""PSNR peak of each video-SCI convention: ``pnp`` (PnP-SCI ``gapdenoise_cacti.m``) the
ground-truth frame's maximum, ``cacti`` 1 (frames in [0, 1], i.e. 255 for 8-bit data)."""


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


# ============================================================================ inputs

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


# ============================================================================ PSNR

def psnr(ref, x, peak=1.0):
    """PSNR (dB) of ``x`` against ``ref``: ``10 log10(peak**2 / MSE)`` in float64.

    Args:
        ref, x (array-like): same shape, any rank; the MSE is over all elements.
        peak (float or None): peak signal value; ``None`` uses ``ref.max()``
            (PnP-SCI convention). ``peak=1`` is ``-10 log10(MSE)`` (NeRV).

    Returns:
        float PSNR; ``inf`` for identical inputs.
    """
    ref = np.asarray(ref, np.float64)
    x = np.asarray(x, np.float64)
    if ref.shape != x.shape:
        raise ValueError(f'psnr: shapes differ: {ref.shape} vs {x.shape}')
    peak = float(ref.max()) if peak is None else float(peak)
    mse = float(np.mean((ref - x) ** 2))
    return float('inf') if mse == 0 else float(10 * np.log10(peak ** 2 / mse))


def psnr_sci(ref, x, peak=None):
    """:func:`psnr` with the video-SCI default peak, ``ref.max()`` (``SCI_PEAKS['pnp']``)."""
    return psnr(ref, x, peak)


def calculate_psnr(img, img2, crop_border=0, test_y_channel=False, max_value=255.):
    """PSNR between two images (BasicSR ``calculate_psnr``).

    :func:`psnr` with peak ``max_value`` of the cropped (and optionally
    Y-converted) images, in float64.

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
    return psnr(img, img2, max_value)


# ============================================================================ SSIM

def gaussian_window(size=_SSIM_WINDOW, sigma=_SSIM_SIGMA, dtype=np.float64):
    """Normalised 1-D Gaussian ``[size]`` computed in ``dtype``.

    ``cv2.getGaussianKernel(size, sigma)`` in float64; for odd sizes also MATLAB's
    ``ssim`` window (``sigma=1.5`` -> 11 taps) and, in float32, ``pytorch_msssim``'s
    ``_fspecial_gauss_1d``. The 2-D SSIM window is its outer product with itself.
    """
    offsets = np.arange(size, dtype=dtype) - dtype((size - 1) / 2.)
    kernel = np.exp(-offsets ** 2 / dtype(2. * sigma ** 2))
    return kernel / kernel.sum()


def ssim_terms(x, y, blur, data_range, k=_SSIM_K):
    """The SSIM core: luminance and contrast-structure terms of Wang et al.'s SSIM.

    Works on numpy arrays and TensorFlow tensors alike (only ``+ - *`` and ``blur``).

    Args:
        x, y: images of one shape, float.
        blur (callable): local Gaussian mean, ``blur(img) -> mean map``; decides the
            border handling and the output shape ``S`` (e.g. 'valid' shrinks it).
        data_range (float): ``L``; ``C1 = (k1 L)**2``, ``C2 = (k2 L)**2``.
        k (tuple): ``(k1, k2)``.

    Returns:
        ``((l_num, l_den), (cs_num, cs_den))`` maps of shape ``S``: luminance
        ``(2 mu_x mu_y + C1) / (mu_x**2 + mu_y**2 + C1)`` and contrast-structure
        ``(2 sigma_xy + C2) / (sigma_x**2 + sigma_y**2 + C2)`` as numerator/denominator
        pairs, so each convention keeps its own order of operations; SSIM = l * cs.
    """
    c1, c2 = (k[0] * data_range) ** 2, (k[1] * data_range) ** 2
    mu1, mu2 = blur(x), blur(y)
    mu1_sq, mu2_sq, mu1_mu2 = mu1 * mu1, mu2 * mu2, mu1 * mu2
    sigma1_sq = blur(x * x) - mu1_sq
    sigma2_sq = blur(y * y) - mu2_sq
    sigma12 = blur(x * y) - mu1_mu2
    return ((2 * mu1_mu2 + c1, mu1_sq + mu2_sq + c1),
            (2 * sigma12 + c2, sigma1_sq + sigma2_sq + c2))


def _blur_valid(img, kernel):
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


def _blur_replicate(img, kernel):
    """Separable correlation of a 2-D ``img`` with replicate padding, shape ``[H, W]``
    (MATLAB ``imgaussfilt(..., 'Padding', 'replicate')``)."""
    from scipy.ndimage import correlate1d
    return correlate1d(correlate1d(img, kernel, axis=0, mode='nearest'), kernel, axis=1,
                       mode='nearest')


_BLURS = {'valid': _blur_valid, 'replicate': _blur_replicate}


def ssim_2d(x, y, data_range, border):
    """Mean SSIM of two float64 ``[H, W]`` images (11x11 Gaussian window, sigma 1.5).

    Args:
        x, y (np.ndarray): ``[H, W]`` float64, same shape.
        data_range (float): ``L`` of the SSIM constants (255 or 1).
        border (str): ``'valid'``: the map only where the window fits,
            ``[H - 10, W - 10]`` (BasicSR); ``'replicate'``: the full ``[H, W]`` map
            with replicate padding (MATLAB).

    Returns:
        float mean of the SSIM map.
    """
    if border not in _BLURS:
        raise ValueError(f'ssim_2d: border must be one of {sorted(_BLURS)}, got {border!r}')
    kernel = gaussian_window()
    (l_num, l_den), (cs_num, cs_den) = ssim_terms(x, y, lambda im: _BLURS[border](im, kernel),
                                                  data_range)
    return float(((l_num * cs_num) / (l_den * cs_den)).mean())


def ssim_matlab(x, ref, data_range=1.0):
    """MATLAB ``ssim(x, ref)`` of two 2-D images: Gaussian window sigma 1.5 (11x11), replicate
    padding, mean of the full SSIM map, ``C1 = (0.01 L)^2``, ``C2 = (0.03 L)^2``.

    Args:
        x, ref (array-like): ``[H, W]``, same shape.
        data_range (float): ``L``.

    Returns:
        float SSIM.
    """
    x = np.asarray(x, np.float64)
    ref = np.asarray(ref, np.float64)
    if x.shape != ref.shape or x.ndim != 2:
        raise ValueError(f'ssim_matlab expects two [H, W] images of one shape, got {x.shape} and '
                         f'{ref.shape}')
    return ssim_2d(x, ref, data_range, 'replicate')


def calculate_ssim(img, img2, crop_border=0, test_y_channel=False):
    """SSIM between two images (BasicSR ``calculate_ssim``).

    Constants ``C1 = (0.01 * 255)**2``, ``C2 = (0.03 * 255)**2`` (peak 255);
    local statistics from an 11x11 Gaussian window (sigma 1.5) evaluated where
    it fits entirely inside the cropped image (:func:`ssim_2d` ``'valid'``); the
    SSIM map is averaged, then the per-channel values are averaged.

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
        return ssim_2d(img, img2, 255., 'valid')
    return float(np.mean([ssim_2d(img[..., c], img2[..., c], 255., 'valid')
                          for c in range(img.shape[2])]))


# ============================================================================ video SCI

def sci_frame_scores(gt, rec, convention):
    """Per-frame PSNR and SSIM of a video-SCI reconstruction, frames in [0, 1].

    Args:
        gt, rec (np.ndarray): ``[M, H, W, B]`` (``M`` measurements of ``B`` frames) or colour
            ``[M, H, W, 3, B]``, same shape; ``rec`` is not clipped.
        convention (str): ``'pnp'`` or ``'cacti'``, the PSNR peak (:data:`SCI_PEAKS`).

    Returns:
        ``(psnr, ssim)``: two lists of ``M * B`` floats in frame order ``m * B + t``; PSNR
        over all channels of a frame, SSIM :func:`ssim_matlab` (colour: mean over R, G, B).
    """
    if convention not in SCI_PEAKS:
        raise ValueError(f'convention must be one of {tuple(SCI_PEAKS)}, got {convention!r}')
    peak = SCI_PEAKS[convention]
    psnrs, ssims = [], []
    for m in range(gt.shape[0]):
        for t in range(gt.shape[-1]):
            ref, x = gt[m, ..., t], rec[m, ..., t]
            psnrs.append(psnr(ref, x, peak))
            if ref.ndim == 3:
                ssims.append(float(np.mean([ssim_matlab(x[..., c], ref[..., c])
                                            for c in range(ref.shape[-1])])))
            else:
                ssims.append(ssim_matlab(x, ref))
    return psnrs, ssims


# ============================================================================ TensorFlow

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
