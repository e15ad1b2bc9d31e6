"""Tests for ascendcv.layers.sampling against numpy implementations of the PyTorch rules."""
import math

import numpy as np
import pytest
import tensorflow as tf

from ascendcv.layers.sampling import (avg_pool_torch, bilinear_sample, flow_warp, max_pool_torch,
                                      pixel_shuffle, upsample_bilinear)


def max_abs(a, b):
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def rand(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# pixel_shuffle
# ---------------------------------------------------------------------------------------------

def pixel_shuffle_ref(x, r):
    """torch: out[c, h*r+i, w*r+j] = in[c*r*r + i*r + j, h, w], here on NHWC."""
    n, h, w, cin = x.shape
    c = cin // (r * r)
    out = np.zeros((n, h * r, w * r, c), x.dtype)
    for ch in range(c):
        for i in range(r):
            for j in range(r):
                out[:, i::r, j::r, ch] = x[:, :, :, ch * r * r + i * r + j]
    return out


@pytest.mark.parametrize('r,c', [(2, 3), (3, 2), (4, 1)])
def test_pixel_shuffle_torch_order(r, c):
    x = rand((2, 3, 5, c * r * r), seed=r)
    out = pixel_shuffle(tf.constant(x), r).numpy()
    assert out.shape == (2, 3 * r, 5 * r, c)
    np.testing.assert_array_equal(out, pixel_shuffle_ref(x, r))


def test_pixel_shuffle_differs_from_depth_to_space():
    x = rand((1, 2, 2, 3 * 4))
    ours = pixel_shuffle(tf.constant(x), 2).numpy()
    assert max_abs(ours, tf.nn.depth_to_space(x, 2)) > 0.1


def test_pixel_shuffle_dynamic_batch_and_size():
    fn = tf.function(lambda t: pixel_shuffle(t, 2),
                     input_signature=[tf.TensorSpec([None, None, None, 8])])
    x = rand((3, 4, 2, 8), seed=4)
    np.testing.assert_array_equal(fn(x).numpy(), pixel_shuffle_ref(x, 2))


# ---------------------------------------------------------------------------------------------
# upsample_bilinear
# ---------------------------------------------------------------------------------------------

def _axis_weights(in_size, scale):
    """PyTorch upsample_bilinear2d (align_corners=False) source indices and lambdas per output."""
    idx0, idx1, lam = [], [], []
    for dst in range(in_size * scale):
        src = (dst + 0.5) / scale - 0.5
        src = max(src, 0.0)
        i0 = int(math.floor(src))
        i1 = i0 + 1 if i0 < in_size - 1 else i0
        idx0.append(i0)
        idx1.append(i1)
        lam.append(src - i0)
    return np.array(idx0), np.array(idx1), np.array(lam)


def upsample_bilinear_ref(x, scale):
    n, h, w, c = x.shape
    y0, y1, ly = _axis_weights(h, scale)
    x0, x1, lx = _axis_weights(w, scale)
    x = x.astype(np.float64)
    ly, lx = ly[None, :, None, None], lx[None, None, :, None]
    top = x[:, y0][:, :, x0] * (1 - lx) + x[:, y0][:, :, x1] * lx
    bot = x[:, y1][:, :, x0] * (1 - lx) + x[:, y1][:, :, x1] * lx
    return top * (1 - ly) + bot * ly


@pytest.mark.parametrize('scale', [2, 4])
@pytest.mark.parametrize('size', [(5, 7), (4, 4), (1, 3)])
def test_upsample_bilinear_matches_torch_rule(scale, size):
    x = rand((2, *size, 3), seed=scale)
    out = upsample_bilinear(tf.constant(x), scale).numpy()
    assert out.shape == (2, size[0] * scale, size[1] * scale, 3)
    assert out.dtype == np.float32
    assert max_abs(out, upsample_bilinear_ref(x, scale)) <= 1e-5


def test_upsample_bilinear_is_not_align_corners_true():
    x = rand((1, 4, 4, 1), seed=9)
    ours = upsample_bilinear(tf.constant(x), 2).numpy()
    # align_corners=True keeps the corner pixels and uses a different interior grid;
    # align_corners=False (ours) does too at the corners, so compare an interior row
    ac = tf.compat.v1.image.resize_bilinear(x, [8, 8], align_corners=True).numpy()
    assert max_abs(ours[:, 1:-1, 1:-1], ac[:, 1:-1, 1:-1]) > 1e-2


# ---------------------------------------------------------------------------------------------
# pools
# ---------------------------------------------------------------------------------------------

def pool_ref(x, k, s, p, mode):
    n, h, w, c = x.shape
    fill = -np.inf if mode == 'max' else 0.0
    xp = np.full((n, h + 2 * p, w + 2 * p, c), fill)
    xp[:, p:p + h, p:p + w] = x
    ho, wo = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    out = np.zeros((n, ho, wo, c))
    for i in range(ho):
        for j in range(wo):
            win = xp[:, i * s:i * s + k, j * s:j * s + k]
            out[:, i, j] = win.max(axis=(1, 2)) if mode == 'max' else win.sum(axis=(1, 2)) / (k * k)
    return out


@pytest.mark.parametrize('size', [(7, 9), (8, 6), (5, 5), (2, 3)])
def test_max_pool_torch(size):
    # all-negative input: zero padding would win the max at the border
    x = -np.abs(rand((2, *size, 3), seed=size[0])) - 0.1
    out = max_pool_torch(tf.constant(x), 3, 2, 1).numpy()
    ref = pool_ref(x, 3, 2, 1, 'max')
    assert out.shape == ref.shape
    np.testing.assert_array_equal(out, ref.astype(np.float32))


@pytest.mark.parametrize('size', [(7, 9), (8, 6), (5, 5), (2, 3)])
def test_avg_pool_torch_counts_padding(size):
    x = np.abs(rand((2, *size, 3), seed=size[1])) + 0.1
    out = avg_pool_torch(tf.constant(x), 3, 2, 1).numpy()
    ref = pool_ref(x, 3, 2, 1, 'avg')
    assert out.shape == ref.shape
    assert max_abs(out, ref) <= 1e-6
    # TF's SAME pooling excludes the padding from the count: the border values differ
    same = tf.nn.avg_pool2d(x, 3, 2, 'SAME').numpy()
    if same.shape == ref.shape:
        assert max_abs(same, ref) > 1e-3


@pytest.mark.parametrize('k,s,p', [(2, 2, 0), (3, 1, 1), (5, 2, 2)])
def test_pools_other_settings(k, s, p):
    x = rand((1, 9, 8, 2), seed=k)
    assert max_abs(max_pool_torch(tf.constant(x), k, s, p), pool_ref(x, k, s, p, 'max')) == 0.0
    assert max_abs(avg_pool_torch(tf.constant(x), k, s, p), pool_ref(x, k, s, p, 'avg')) <= 1e-6


# ---------------------------------------------------------------------------------------------
# bilinear_sample and flow_warp
# ---------------------------------------------------------------------------------------------

def test_bilinear_sample_integer_coordinates_index_exactly():
    rng = np.random.default_rng(1)
    img = rand((2, 5, 6, 3), seed=1)
    ys = rng.integers(0, 5, (2, 10)).astype(np.float32)
    xs = rng.integers(0, 6, (2, 10)).astype(np.float32)
    out = bilinear_sample(tf.constant(img), tf.constant(ys[..., None]), tf.constant(xs[..., None]))
    assert out.shape == (2, 10, 1, 3)
    expected = img[np.arange(2)[:, None], ys.astype(int), xs.astype(int)]
    np.testing.assert_allclose(out.numpy()[:, :, 0], expected, rtol=0, atol=1e-6)


def test_bilinear_sample_zero_outside():
    img = np.abs(rand((1, 4, 5, 2))) + 1.0
    ys = np.array([[-1.0, -1.0, 4.0, 1.0, 1.0, -50.0, 1e6, -1e6]], np.float32)
    xs = np.array([[2.0, 6.0, 2.0, -1.0, 5.0, 1.0, 2.0, -1e6]], np.float32)
    out = bilinear_sample(tf.constant(img), tf.constant(ys[..., None]), tf.constant(xs[..., None]))
    np.testing.assert_array_equal(out.numpy(), np.zeros((1, 8, 1, 2), np.float32))


def test_bilinear_sample_partial_border_and_fraction():
    img = np.arange(20, dtype=np.float32).reshape(1, 4, 5, 1) + 1.0
    ys = np.array([[1.5, -0.5, 3.25, 0.0]], np.float32)
    xs = np.array([[2.25, 0.0, 4.0, 4.5]], np.float32)
    out = bilinear_sample(tf.constant(img), tf.constant(ys[..., None]), tf.constant(xs[..., None]))
    im = img[0, :, :, 0]
    expected = [
        0.5 * (0.75 * im[1, 2] + 0.25 * im[1, 3]) + 0.5 * (0.75 * im[2, 2] + 0.25 * im[2, 3]),
        0.5 * im[0, 0],            # upper corners outside contribute zero
        0.75 * im[3, 4],           # lower corners outside
        0.5 * im[0, 4],            # right corner outside
    ]
    np.testing.assert_allclose(out.numpy()[0, :, 0, 0], expected, rtol=1e-6)


def test_bilinear_sample_groups_and_weight():
    img = rand((1, 4, 4, 4), seed=3)
    y = np.array([[[0.0, 3.0]]], np.float32)  # group 0 at (0, 1), group 1 at (3, 2)
    x = np.array([[[1.0, 2.0]]], np.float32)
    wgt = np.array([[[2.0, -0.5]]], np.float32)
    out = bilinear_sample(tf.constant(img), tf.constant(y), tf.constant(x), groups=2,
                          weight=tf.constant(wgt)).numpy()
    assert out.shape == (1, 1, 2, 2)
    np.testing.assert_allclose(out[0, 0, 0], 2.0 * img[0, 0, 1, :2], atol=1e-6)
    np.testing.assert_allclose(out[0, 0, 1], -0.5 * img[0, 3, 2, 2:], atol=1e-6)


@pytest.mark.parametrize('dx,dy', [(1, 0), (0, -2), (-3, 1)])
def test_flow_warp_integer_flow_is_shift(dx, dy):
    x = np.abs(rand((2, 6, 7, 3), seed=dx + 5)) + 1.0
    flow = np.zeros((2, 6, 7, 2), np.float32)
    flow[..., 0], flow[..., 1] = dx, dy
    out = flow_warp(tf.constant(x), tf.constant(flow)).numpy()
    # out[h, w] = x[h + dy, w + dx], zeros where that is outside
    expected = np.zeros_like(x)
    h, w = 6, 7
    ys, ye = max(0, -dy), min(h, h - dy)
    xs, xe = max(0, -dx), min(w, w - dx)
    expected[:, ys:ye, xs:xe] = x[:, ys + dy:ye + dy, xs + dx:xe + dx]
    assert out.shape == x.shape
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-6)


def test_flow_warp_half_pixel_and_per_pixel_flow():
    x = rand((1, 5, 6, 2), seed=8)
    flow = np.zeros((1, 5, 6, 2), np.float32)
    flow[..., 0] = 0.5                       # half a pixel to the right everywhere
    flow[0, 2, 3] = [-1.0, 2.0]              # one pixel reads (4, 2)
    out = flow_warp(tf.constant(x), tf.constant(flow)).numpy()
    np.testing.assert_allclose(out[0, 1, 1], 0.5 * (x[0, 1, 1] + x[0, 1, 2]), atol=1e-6)
    np.testing.assert_allclose(out[0, 2, 3], x[0, 4, 2], atol=1e-6)
    np.testing.assert_allclose(out[0, 0, 5], 0.5 * x[0, 0, 5], atol=1e-6)  # right neighbour is outside
