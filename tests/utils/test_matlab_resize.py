"""Tests for ascendcv.utils.matlab_resize (MATLAB imresize 'bicubic').

The reference below is written independently of the module: for every output
pixel it evaluates the (stretched) cubic kernel on *all* input positions within
its support, normalises the weights, mirrors out-of-range positions
symmetrically and sums -- no tap count, no column dropping, no padding.
"""
import math

import numpy as np
import pytest

from ascendcv.utils.matlab_resize import bicubic_degrade, calculate_weights_indices, cubic, imresize


def _keys_cubic(t):
    """Keys (a = -0.5) kernel for one scalar distance."""
    t = abs(t)
    if t <= 1:
        return 1.5 * t ** 3 - 2.5 * t ** 2 + 1
    if t <= 2:
        return -0.5 * t ** 3 + 2.5 * t ** 2 - 4 * t + 2
    return 0.0


def _mirror(k, n):
    """Symmetric (edge-repeating) reflection of integer position k into [0, n)."""
    k = k % (2 * n)
    return k if k < n else 2 * n - 1 - k


def _reference_matrix(in_len, scale, antialias=True):
    """[out_len, in_len] matrix: row i holds the weight of each input pixel for output i."""
    out_len = math.ceil(in_len * scale)
    stretch = scale < 1 and antialias
    half_support = 2.0 / scale if stretch else 2.0
    matrix = np.zeros((out_len, in_len))
    for i in range(out_len):
        centre = (i + 0.5) / scale - 0.5  # 0-based input coordinate of output pixel i
        taps = range(math.floor(centre - half_support) - 1, math.ceil(centre + half_support) + 2)
        weights = [scale * _keys_cubic(scale * (centre - k)) if stretch else _keys_cubic(centre - k)
                   for k in taps]
        total = sum(weights)
        for k, w in zip(taps, weights):
            matrix[i, _mirror(k, in_len)] += w / total
    return matrix


def _reference_resize(img, scale, antialias=True):
    """Float64 separable resize of [H, W] or [H, W, C] with the reference matrices."""
    img = np.asarray(img, dtype=np.float64)
    rows = _reference_matrix(img.shape[0], scale, antialias)
    cols = _reference_matrix(img.shape[1], scale, antialias)
    return np.einsum('ih,jw,hw...->ij...', rows, cols, img)


def _round_uint8(x):
    """MATLAB double -> uint8: saturate, round half away from zero."""
    return np.floor(np.clip(x, 0, 255) + 0.5).astype(np.uint8)


def _reference_resize_uint8(img, scale):
    """MATLAB on uint8: height pass, round to uint8, width pass, round to uint8."""
    rows = _reference_matrix(img.shape[0], scale)
    cols = _reference_matrix(img.shape[1], scale)
    first = _round_uint8(np.einsum('ih,hw...->iw...', rows, img.astype(np.float64)))
    return _round_uint8(np.einsum('jw,iw...->ij...', cols, first.astype(np.float64)))


SCALES = [1 / 4, 1 / 2, 1 / 3, 2, 4]


@pytest.mark.parametrize('scale', SCALES)
@pytest.mark.parametrize('shape', [(16, 20, 3), (13, 17)])
def test_matches_bruteforce_reference_float(scale, shape):
    img = np.random.default_rng(1).uniform(0, 1, shape)
    out = imresize(img, scale)
    expected = _reference_resize(img, scale)
    assert out.dtype == np.float64
    assert out.shape == expected.shape == (math.ceil(shape[0] * scale), math.ceil(shape[1] * scale)) + shape[2:]
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize('scale', [1 / 4, 1 / 2, 1 / 3])
def test_matches_reference_without_antialiasing(scale):
    img = np.random.default_rng(2).uniform(0, 255, (24, 18, 3))
    out = imresize(img, scale, antialiasing=False)
    np.testing.assert_allclose(out, _reference_resize(img, scale, antialias=False), rtol=0, atol=1e-9)
    # Plain interpolation differs from the antialiased default when shrinking.
    assert np.abs(out - imresize(img, scale)).max() > 1


@pytest.mark.parametrize('scale', SCALES)
def test_matches_bruteforce_reference_uint8(scale):
    img = np.random.default_rng(3).integers(0, 256, (20, 24, 3), dtype=np.uint8)
    out = imresize(img, scale)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, _reference_resize_uint8(img, scale))


@pytest.mark.parametrize('scale', SCALES)
def test_uint8_close_to_float_result_without_clipping(scale):
    # Smooth mid-grey content never leaves [0, 255], so rounding between the
    # passes moves a value by at most one grey level compared with rounding
    # the exact float result once.
    y, x = np.mgrid[0:20, 0:24]
    img = np.round(128 + 60 * np.sin(x / 3.0) * np.cos(y / 4.0)).astype(np.uint8)
    exact = _reference_resize(img, scale)
    assert 0 < exact.min() and exact.max() < 255
    diff = imresize(img, scale).astype(int) - _round_uint8(exact).astype(int)
    assert np.abs(diff).max() <= 1


def test_weights_are_normalised_and_indices_in_range():
    for in_len, scale in [(16, 1 / 4), (7, 1 / 3), (5, 2), (3, 4), (1, 1 / 2)]:
        out_len = math.ceil(in_len * scale)
        weights, indices = calculate_weights_indices(in_len, out_len, scale)
        assert weights.shape == indices.shape and weights.shape[0] == out_len
        np.testing.assert_allclose(weights.sum(axis=1), 1, atol=1e-12)
        assert indices.min() >= 0 and indices.max() < in_len
        assert np.all(np.any(weights != 0, axis=0))  # all-zero taps removed


def test_weights_for_quarter_downscale():
    weights, indices = calculate_weights_indices(16, 4, 1 / 4)
    # 18 taps, the first and last always zero (kernel width 16): 16 remain.
    assert weights.shape == (4, 16)
    # First output pixel: centre 1.5 (0-based), taps -6..9 mirrored.
    np.testing.assert_array_equal(indices[0], [5, 4, 3, 2, 1, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    np.testing.assert_array_equal(indices[-1], [6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 15, 14, 13, 12, 11, 10])


def test_cubic_kernel_values():
    np.testing.assert_allclose(cubic([0, 0.5, 1, 1.5, 2, 2.5, -0.5]),
                               [1, 0.5625, 0, -0.0625, 0, 0, 0.5625], atol=1e-15)


@pytest.mark.parametrize('scale', SCALES)
@pytest.mark.parametrize('dtype', [np.float64, np.float32, np.uint8])
def test_constant_image_stays_constant(scale, dtype):
    img = np.full((12, 9, 3), 137, dtype=dtype)
    out = imresize(img, scale)
    assert out.dtype == dtype
    np.testing.assert_allclose(out, 137, atol=1e-4 if dtype == np.float32 else 1e-12)


def test_ramp_downscale_by_two_samples_the_new_centres():
    ramp = np.tile(np.arange(16, dtype=np.float64), (6, 1))  # value = x along the width
    out = imresize(ramp, 1 / 2)
    assert out.shape == (3, 8)
    # Output j covers input pixels 2j, 2j+1: its centre is 2j + 0.5.  The
    # antialiased kernel spans +-4 input pixels, so j = 2..5 avoid the borders.
    np.testing.assert_allclose(out[:, 2:6], np.tile(2 * np.arange(2, 6) + 0.5, (3, 1)), rtol=0, atol=1e-12)
    # The mirrored samples at the borders break the linearity there.
    assert abs(out[0, 0] - 0.5) > 1e-3 and abs(out[0, -1] - 14.5) > 1e-3


@pytest.mark.parametrize('factor', [3, 4])
def test_ramp_integer_downscale(factor):
    ramp = np.tile(np.arange(48, dtype=np.float64), (2, 1))
    out = imresize(ramp, 1 / factor)
    centres = factor * np.arange(out.shape[1]) + (factor - 1) / 2
    interior = (centres - 2 * factor >= 0) & (centres + 2 * factor <= 47)
    assert interior.sum() >= 4
    np.testing.assert_allclose(out[0, interior], centres[interior], rtol=0, atol=1e-12)


def test_ramp_upscale_by_two_is_linear_inside():
    ramp = np.tile(np.arange(16, dtype=np.float64), (4, 1))
    out = imresize(ramp, 2)
    assert out.shape == (8, 32)
    x = np.arange(32)
    centres = (x + 0.5) / 2 - 0.5  # input coordinate of each output pixel
    interior = (centres >= 1) & (centres <= 14)
    np.testing.assert_allclose(out[:, interior], np.tile(centres[interior], (8, 1)), rtol=0, atol=1e-12)


def test_uint8_rounds_half_away_from_zero():
    # Upscaling [0, 2, ..., 30] by 2 gives exactly x - 0.5 inside (dyadic
    # weights); MATLAB rounds these halves up (numpy's round-half-even would not).
    row = np.arange(0, 32, 2, dtype=np.uint8)
    out = imresize(np.tile(row, (4, 1)), 2)
    exact = imresize(np.tile(row.astype(np.float64), (4, 1)), 2)
    interior = slice(3, 29)
    np.testing.assert_array_equal(exact[0, interior], np.arange(32)[interior] - 0.5)
    np.testing.assert_array_equal(out[0, interior], np.arange(32)[interior])


def test_uint8_clips_overshoot():
    img = np.zeros((8, 8), dtype=np.uint8)
    img[:, 4:] = 255  # a hard edge: the cubic kernel over/undershoots
    exact = imresize(img.astype(np.float64), 2)
    assert exact.min() < 0 and exact.max() > 255
    out = imresize(img, 2)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, _round_uint8(exact))  # rows are constant: no intermediate rounding


def test_float_dtypes_and_range_are_kept():
    img = np.random.default_rng(4).uniform(0, 1, (10, 10, 3))
    out32 = imresize(img.astype(np.float32), 1 / 2)
    out64 = imresize(img, 1 / 2)
    assert out32.dtype == np.float32 and out64.dtype == np.float64
    np.testing.assert_allclose(out32, out64, atol=1e-6)
    assert 0 < out64.mean() < 1


def test_grayscale_and_single_channel_shapes():
    img = np.random.default_rng(5).uniform(0, 255, (12, 16))
    assert imresize(img, 1 / 4).shape == (3, 4)
    np.testing.assert_allclose(imresize(img[..., None], 1 / 4)[..., 0], imresize(img, 1 / 4))


def test_anisotropic_scale_pair():
    img = np.random.default_rng(6).uniform(0, 255, (12, 16, 3))
    out = imresize(img, (1 / 2, 2))
    assert out.shape == (6, 32, 3)
    rows = _reference_matrix(12, 1 / 2)
    cols = _reference_matrix(16, 2)
    np.testing.assert_allclose(out, np.einsum('ih,jw,hwc->ijc', rows, cols, img), atol=1e-9)


def test_scale_one_is_identity():
    img = np.random.default_rng(7).integers(0, 256, (9, 11, 3), dtype=np.uint8)
    np.testing.assert_array_equal(imresize(img, 1), img)


@pytest.mark.parametrize('bad', [0, -0.5, float('nan'), (0.5, 0.5, 0.5)])
def test_invalid_scale(bad):
    with pytest.raises(ValueError, match='scale'):
        imresize(np.zeros((8, 8)), bad)


def test_invalid_image():
    with pytest.raises(ValueError, match='shape'):
        imresize(np.zeros((2, 8, 8, 3)), 0.5)
    with pytest.raises(TypeError, match='dtype'):
        imresize(np.zeros((8, 8), dtype=bool), 0.5)


def test_bicubic_degrade_shape_and_values():
    frames = np.random.default_rng(8).integers(0, 256, (3, 32, 48, 3), dtype=np.uint8)
    lr = bicubic_degrade(frames)
    assert lr.shape == (3, 8, 12, 3) and lr.dtype == np.uint8
    for t in range(3):
        np.testing.assert_array_equal(lr[t], imresize(frames[t], 1 / 4))
        np.testing.assert_array_equal(lr[t], _reference_resize_uint8(frames[t], 1 / 4))
    assert bicubic_degrade(frames, scale=2).shape == (3, 16, 24, 3)


def test_bicubic_degrade_rejects_indivisible_size():
    frames = np.zeros((2, 30, 32, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match=r'30x32.*not divisible by scale 4'):
        bicubic_degrade(frames, scale=4)


def test_bicubic_degrade_rejects_bad_input():
    with pytest.raises(ValueError, match=r'\[T, H, W, 3\]'):
        bicubic_degrade(np.zeros((32, 32, 3), dtype=np.uint8))
    with pytest.raises(TypeError, match='uint8'):
        bicubic_degrade(np.zeros((1, 32, 32, 3), dtype=np.float32))
    with pytest.raises(ValueError, match='scale'):
        bicubic_degrade(np.zeros((1, 32, 32, 3), dtype=np.uint8), scale=0.25)
