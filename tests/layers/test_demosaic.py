"""Malvar-He-Cutler RGGB demosaicking."""
import numpy as np
import pytest

from ascendcv.utils.sci_physics import bayer_mosaic
from ascendcv.layers.demosaic import MALVAR_KERNELS, demosaic_rggb


def _smooth_rgb(h=24, w=28):
    """Colour channels that share their detail (as in natural images, which Malvar's
    gradient correction relies on): one luminance pattern, scaled and offset per channel."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    lum = 0.5 + 0.3 * np.sin(xx / 3) * np.cos(yy / 4)
    return np.stack([0.9 * lum + 0.05, lum, 0.8 * lum + 0.1], -1)


def test_kernels_sum_to_one_and_flat_images_are_exact():
    assert np.allclose(MALVAR_KERNELS.sum(axis=(0, 1, 2)), 1.0)
    flat = np.full((1, 8, 10), 0.37, np.float32)
    np.testing.assert_allclose(demosaic_rggb(flat).numpy(), 0.37, atol=1e-6)


def test_sampled_values_are_kept_and_smooth_images_are_close():
    rgb = _smooth_rgb()
    raw = bayer_mosaic(rgb)[None].astype(np.float32)
    out = demosaic_rggb(raw).numpy()[0]
    np.testing.assert_allclose(out[0::2, 0::2, 0], rgb[0::2, 0::2, 0], atol=1e-6)  # R at R
    np.testing.assert_allclose(out[0::2, 1::2, 1], rgb[0::2, 1::2, 1], atol=1e-6)  # G at G1
    np.testing.assert_allclose(out[1::2, 1::2, 2], rgb[1::2, 1::2, 2], atol=1e-6)  # B at B
    inner = (slice(2, -2), slice(2, -2))
    mse = np.mean((out[inner] - rgb[inner]) ** 2)
    assert 10 * np.log10(1 / mse) > 40
    # better than plain bilinear interpolation of the same mosaic (the 'G at R/B' estimate
    # without its Laplacian correction)
    green_bilinear = (np.roll(raw[0], 1, 0) + np.roll(raw[0], -1, 0) + np.roll(raw[0], 1, 1)
                      + np.roll(raw[0], -1, 1)) / 4
    err_malvar = np.abs(out[2:-2:2, 2:-2:2, 1] - rgb[2:-2:2, 2:-2:2, 1]).mean()
    err_bilinear = np.abs(green_bilinear[2:-2:2, 2:-2:2] - rgb[2:-2:2, 2:-2:2, 1]).mean()
    assert err_malvar < err_bilinear


def test_shape_errors():
    with pytest.raises(ValueError, match=r'\[N, H, W\]'):
        demosaic_rggb(np.zeros((4, 4)))
