"""Tests for ascendcv.utils.metrics (BasicSR PSNR / SSIM conventions).

References: scikit-image's metrics, and an SSIM written here with
``scipy.signal.correlate2d(mode='valid')`` and a Gaussian window built
independently (the ``cv2.getGaussianKernel(11, 1.5)`` formula).
"""
import numpy as np
import pytest
from scipy.signal import correlate2d
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from ascendcv.utils.metrics import calculate_psnr, calculate_ssim, gaussian_window, psnr_tf, rgb2ycbcr_y


def _pair(shape=(40, 48, 3), noise=12, seed=0):
    """A random uint8 image and a noisy copy of it."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, shape, dtype=np.uint8)
    noisy = np.clip(img.astype(int) + rng.integers(-noise, noise + 1, shape), 0, 255).astype(np.uint8)
    return img, noisy


def _y(img):
    """BT.601 luma, [16, 235], written out per channel."""
    img = img.astype(np.float64)
    return 16. + (65.481 * img[..., 0] + 128.553 * img[..., 1] + 24.966 * img[..., 2]) / 255.


def _window():
    g = np.exp(-(np.arange(11) - 5.) ** 2 / (2 * 1.5 ** 2))
    g /= g.sum()
    return np.outer(g, g)


def _ssim_reference(a, b):
    """Wang et al. SSIM of two 2-D [0, 255] images, 'valid' 11x11 Gaussian window."""
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    w = _window()

    def filt(x):
        return correlate2d(x, w, mode='valid')

    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu_a, mu_b = filt(a), filt(b)
    var_a = filt(a * a) - mu_a ** 2
    var_b = filt(b * b) - mu_b ** 2
    cov = filt(a * b) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return ssim_map.mean()


# ----------------------------------------------------------------------------- Y channel

@pytest.mark.parametrize('rgb, expected', [
    ((255, 255, 255), 235.0),
    ((0, 0, 0), 16.0),
    ((255, 0, 0), 16 + 65.481),
    ((0, 255, 0), 16 + 128.553),
    ((0, 0, 255), 16 + 24.966),
])
def test_y_channel_of_pure_colours(rgb, expected):
    img = np.full((2, 3, 3), rgb, dtype=np.uint8)
    y = rgb2ycbcr_y(img)
    assert y.shape == (2, 3) and y.dtype == np.float64
    np.testing.assert_allclose(y, expected, rtol=0, atol=1e-10)


def test_y_channel_matches_formula_for_uint8_and_float():
    img, _ = _pair()
    np.testing.assert_allclose(rgb2ycbcr_y(img), _y(img), rtol=0, atol=1e-10)
    np.testing.assert_allclose(rgb2ycbcr_y(img.astype(np.float32)), _y(img), rtol=0, atol=1e-10)


def test_y_channel_rejects_non_rgb():
    with pytest.raises(ValueError, match=r'\[\.\.\., 3\]'):
        rgb2ycbcr_y(np.zeros((4, 4, 4)))


# ----------------------------------------------------------------------------- PSNR

@pytest.mark.parametrize('crop', [0, 4])
def test_psnr_matches_skimage(crop):
    img, noisy = _pair()
    h, w = img.shape[:2]
    window = (slice(crop, h - crop), slice(crop, w - crop))
    expected = peak_signal_noise_ratio(img[window], noisy[window], data_range=255)
    assert abs(calculate_psnr(img, noisy, crop_border=crop) - expected) < 1e-10
    # float input in [0, 255] gives the same number
    assert abs(calculate_psnr(img.astype(np.float32), noisy.astype(np.float64), crop_border=crop) - expected) < 1e-10


def test_psnr_on_y_channel_matches_formula():
    img, noisy = _pair()
    y1, y2 = _y(img)[4:-4, 4:-4], _y(noisy)[4:-4, 4:-4]
    expected = 10 * np.log10(255. ** 2 / np.mean((y1 - y2) ** 2))
    assert abs(calculate_psnr(img, noisy, crop_border=4, test_y_channel=True) - expected) < 1e-10
    assert calculate_psnr(img, noisy, test_y_channel=True) != calculate_psnr(img, noisy)


def test_psnr_grayscale_and_max_value():
    img, noisy = _pair(shape=(20, 20))
    a, b = img / 255., noisy / 255.
    expected = peak_signal_noise_ratio(a, b, data_range=1.)
    assert abs(calculate_psnr(a, b, max_value=1.) - expected) < 1e-10
    assert abs(calculate_psnr(a, b, max_value=1.) - calculate_psnr(img, noisy)) < 1e-10


def test_psnr_identical_images_is_inf():
    img, _ = _pair()
    assert calculate_psnr(img, img.copy()) == float('inf')
    assert calculate_psnr(img, img, test_y_channel=True) == float('inf')
    # differences confined to the cropped border do not count
    other = img.copy()
    other[0, :] = 255 - other[0, :]
    assert calculate_psnr(img, other) < float('inf')
    assert calculate_psnr(img, other, crop_border=1) == float('inf')


def test_psnr_known_value():
    a = np.zeros((8, 8, 3), dtype=np.uint8)
    b = np.full((8, 8, 3), 255, dtype=np.uint8)
    assert calculate_psnr(a, b) == 0.0
    c = np.full((8, 8, 3), 1, dtype=np.uint8)  # MSE 1 -> 20 log10(255)
    assert abs(calculate_psnr(a, c) - 20 * np.log10(255.)) < 1e-12


def test_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r'\(8, 8, 3\) vs \(8, 9, 3\)'):
        calculate_psnr(np.zeros((8, 8, 3)), np.zeros((8, 9, 3)))
    with pytest.raises(ValueError, match=r'\(16, 16\) vs \(16, 16, 1\)'):
        calculate_ssim(np.zeros((16, 16)), np.zeros((16, 16, 1)))


@pytest.mark.parametrize('crop', [4, 5, 10])
def test_crop_larger_than_image(crop):
    img = np.zeros((8, 12, 3))
    with pytest.raises(ValueError, match='crop_border'):
        calculate_psnr(img, img, crop_border=crop)
    with pytest.raises(ValueError, match='crop_border'):
        calculate_ssim(img, img, crop_border=crop)


def test_invalid_arguments():
    img = np.zeros((16, 16, 3))
    with pytest.raises(ValueError, match='crop_border'):
        calculate_psnr(img, img, crop_border=-1)
    with pytest.raises(ValueError, match='test_y_channel'):
        calculate_psnr(img[..., 0], img[..., 0], test_y_channel=True)
    with pytest.raises(ValueError, match='shape'):
        calculate_psnr(np.zeros((2, 4, 4, 3)), np.zeros((2, 4, 4, 3)))


# ----------------------------------------------------------------------------- SSIM

def test_gaussian_window_matches_opencv_formula():
    g = gaussian_window()
    assert g.shape == (11,)
    np.testing.assert_allclose(np.outer(g, g), _window(), rtol=0, atol=1e-15)
    np.testing.assert_allclose(g.sum(), 1, atol=1e-15)


def test_ssim_single_channel_matches_references():
    img, noisy = _pair(shape=(40, 48), noise=30)
    value = calculate_ssim(img, noisy)
    assert abs(value - _ssim_reference(img, noisy)) < 1e-12
    # scikit-image: same constants, Gaussian window (truncate 3.5 -> 11 taps),
    # population covariance, mean over the map with (11-1)/2 pixels cropped
    # -- i.e. the same "valid" region.  Agreement is at round-off level.
    sk = structural_similarity(img.astype(np.float64), noisy.astype(np.float64), data_range=255,
                               gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    assert abs(value - sk) < 1e-6
    assert 0 < value < 1


def test_ssim_colour_is_mean_over_channels():
    img, noisy = _pair(noise=40, seed=1)
    expected = np.mean([_ssim_reference(img[..., c], noisy[..., c]) for c in range(3)])
    value = calculate_ssim(img, noisy)
    assert abs(value - expected) < 1e-12
    sk = structural_similarity(img, noisy, data_range=255, channel_axis=-1,
                               gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    assert abs(value - sk) < 1e-6


def test_ssim_crop_and_y_channel():
    img, noisy = _pair(noise=40, seed=2)
    value = calculate_ssim(img, noisy, crop_border=4, test_y_channel=True)
    expected = _ssim_reference(_y(img)[4:-4, 4:-4], _y(noisy)[4:-4, 4:-4])
    assert abs(value - expected) < 1e-12
    assert abs(calculate_ssim(img, noisy, crop_border=4) - np.mean(
        [_ssim_reference(img[4:-4, 4:-4, c], noisy[4:-4, 4:-4, c]) for c in range(3)])) < 1e-12


def test_ssim_identical_is_one_and_dtype_independent():
    img, noisy = _pair()
    assert abs(calculate_ssim(img, img) - 1) < 1e-12
    assert abs(calculate_ssim(img, noisy) - calculate_ssim(img.astype(np.float32), noisy.astype(np.float64))) < 1e-12


def test_ssim_needs_window_sized_image():
    img = np.zeros((12, 20, 3))
    calculate_ssim(img, img)  # 12x12 is fine
    with pytest.raises(ValueError, match='11x11'):
        calculate_ssim(img, img, crop_border=1)


# ----------------------------------------------------------------------------- TensorFlow

def test_psnr_tf_per_image():
    import tensorflow as tf

    batch = [_pair(shape=(16, 20, 3), seed=s) for s in range(3)]
    y_true = np.stack([a for a, _ in batch]) / 255.
    y_pred = np.stack([b for _, b in batch]) / 255.
    y_pred[2] = y_true[2]
    values = psnr_tf(y_true, y_pred)
    assert isinstance(values, tf.Tensor) and values.dtype == tf.float32
    assert values.shape == (3,)
    values = values.numpy()
    for i in range(2):
        assert abs(values[i] - calculate_psnr(y_true[i], y_pred[i], max_value=1.)) < 1e-3
    assert np.isinf(values[2])
    # [0, 255] data with max_val=255 gives the same numbers
    np.testing.assert_allclose(psnr_tf(y_true * 255., y_pred * 255., max_val=255.).numpy()[:2], values[:2],
                               rtol=1e-5)


def test_psnr_tf_shape_mismatch():
    with pytest.raises(ValueError, match='shapes differ'):
        psnr_tf(np.zeros((2, 8, 8, 3)), np.zeros((2, 8, 9, 3)))
