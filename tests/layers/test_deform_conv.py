"""Tests for ascendcv.layers.deform_conv (DCNv2 with torchvision ``deform_conv2d`` semantics).

Three kinds of evidence:

* parity with the official torchvision fixtures (``tests/fixtures/dcn_og{1,4}.npz``, NCHW/OIHW),
  forward and all five gradients, for the plain and the XLA-compiled function;
* an independent slow numpy reference (loops, torch layout) on small cases covering stride,
  dilation, padding 0, kernel 1, groups 1/2/4, samples outside the image and integer offsets;
* layer behaviour: ``ModulatedDeformConv2d`` / ``DCNv2Pack`` initialisation, weight names,
  config round trip, and construction errors.
"""
import importlib.util
import math
import os

import numpy as np
import pytest
import tensorflow as tf

from ascendcv.layers.conv import Conv2d
from ascendcv.layers.deform_conv import (DCNv2Pack, ModulatedDeformConv2d, _deform_conv2d_xla,
                                         deform_conv2d)
from ascendcv.layers.torch_compat import torch_state_dict, torch_state_variables

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'fixtures')

FUNCS = {'plain': deform_conv2d, 'xla': _deform_conv2d_xla}


def nchw_to_nhwc(a):
    return np.ascontiguousarray(np.transpose(a, (0, 2, 3, 1)))


def nhwc_to_nchw(a):
    return np.ascontiguousarray(np.transpose(a, (0, 3, 1, 2)))


def oihw_to_hwio(w):
    return np.ascontiguousarray(np.transpose(w, (2, 3, 1, 0)))


def max_abs(a, b):
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


# ---------------------------------------------------------------------------------------------
# 1. parity with the official torchvision fixtures
# ---------------------------------------------------------------------------------------------

def load_fixture(name):
    path = os.path.join(FIXTURES, name + '.npz')
    with np.load(path) as d:
        return {k: d[k] for k in d.files}


def run_fixture(fn, d, offset=None):
    """Forward + gradients of sum(out * grad_output); returns (out, {name: grad}) in NHWC/HWIO."""
    x = tf.constant(nchw_to_nhwc(d['input']))
    off = tf.constant(nchw_to_nhwc(d['offset'] if offset is None else offset))
    mask = tf.constant(nchw_to_nhwc(d['mask']))
    w = tf.constant(oihw_to_hwio(d['weight']))
    b = tf.constant(d['bias'])
    go = tf.constant(nchw_to_nhwc(d['grad_output']))
    stride, padding, dilation = (tuple(int(v) for v in d[k]) for k in ('stride', 'padding', 'dilation'))
    with tf.GradientTape() as tape:
        tape.watch([x, off, mask, w, b])
        out = fn(x, off, mask, w, b, stride, padding, dilation, int(d['offset_groups']))
        loss = tf.reduce_sum(out * go)
    gx, goff, gm, gw, gb = tape.gradient(loss, [x, off, mask, w, b])
    grads = {'input': gx, 'offset': goff, 'mask': gm, 'weight': gw, 'bias': gb}
    return out.numpy(), {k: v.numpy() for k, v in grads.items()}


@pytest.fixture(scope='module', params=['dcn_og1', 'dcn_og4'])
def dcn_fixture(request):
    return request.param, load_fixture(request.param)


@pytest.mark.parametrize('impl', sorted(FUNCS))
def test_fixture_parity_forward_and_gradients(dcn_fixture, impl):
    name, d = dcn_fixture
    out, grads = run_fixture(FUNCS[impl], d)
    assert out.shape == nchw_to_nhwc(d['output']).shape
    assert max_abs(out, nchw_to_nhwc(d['output'])) <= 1e-5, name

    refs = {'input': nchw_to_nhwc(d['grad_input']), 'offset': nchw_to_nhwc(d['grad_offset']),
            'mask': nchw_to_nhwc(d['grad_mask']), 'weight': oihw_to_hwio(d['grad_weight']),
            'bias': d['grad_bias']}
    for key, ref in refs.items():
        got = grads[key]
        assert got.shape == ref.shape, key
        # weight / bias gradients are sums over all output pixels (|ref| up to ~19): relative tol
        scale = max(1.0, float(np.max(np.abs(ref)))) if key in ('weight', 'bias') else 1.0
        assert max_abs(got, ref) <= 1e-5 * scale, (name, impl, key, max_abs(got, ref))


def test_fixture_is_sensitive_to_offset_order_and_border():
    """The fixtures would catch a (dy, dx) swap or a clamped (instead of zero) border."""
    d = load_fixture('dcn_og4')
    ref = nchw_to_nhwc(d['output'])
    off = d['offset']
    swapped = off.reshape(1, -1, 2, *off.shape[2:])[:, :, ::-1].reshape(off.shape)
    out_swapped, _ = run_fixture(deform_conv2d, d, offset=swapped)
    assert max_abs(out_swapped, ref) > 1e-2
    # a large share of the fixture's samples leave the image, so the zero border is exercised
    h, w = d['input'].shape[2:]
    k = off.shape[1] // 2
    oy = np.arange(h)[:, None] - 1 + (np.arange(k) % 9 // 3)[:, None, None]
    ox = np.arange(w)[None, :] - 1 + (np.arange(k) % 3)[:, None, None]
    sy, sx = oy + off[0, 0::2], ox + off[0, 1::2]
    outside = (np.floor(sy) < 0) | (np.floor(sy) + 1 > h - 1) | (np.floor(sx) < 0) | (np.floor(sx) + 1 > w - 1)
    assert outside.mean() > 0.15


# ---------------------------------------------------------------------------------------------
# 2. independent numpy reference (torchvision rule, torch layouts, plain loops)
# ---------------------------------------------------------------------------------------------

def _bilinear_ref(img, y, x):
    """torchvision's ``bilinear_interpolate`` on ``img [C, H, W]`` -> ``[C]``."""
    c, h, w = img.shape
    if y <= -1 or y >= h or x <= -1 or x >= w:
        return np.zeros(c)
    y_low, x_low = int(math.floor(y)), int(math.floor(x))
    y_high, x_high = y_low + 1, x_low + 1
    ly, lx = y - y_low, x - x_low
    hy, hx = 1.0 - ly, 1.0 - lx

    def at(i, j):
        return img[:, i, j] if 0 <= i < h and 0 <= j < w else np.zeros(c)

    return (hy * hx * at(y_low, x_low) + hy * lx * at(y_low, x_high)
            + ly * hx * at(y_high, x_low) + ly * lx * at(y_high, x_high))


def deform_conv2d_ref(x, offset, mask, weight, bias, stride, pad, dil, groups):
    """Slow DCNv2 in torch layouts: x NCHW, offset [N, 2GK, Ho, Wo], mask [N, GK, Ho, Wo] or None,
    weight OIHW, bias [O] or None -> NCHW (float64)."""
    x = np.asarray(x, np.float64)
    n, c, h, w = x.shape
    o, _, kh, kw = weight.shape
    kk = kh * kw
    ho = (h + 2 * pad - dil * (kh - 1) - 1) // stride + 1
    wo = (w + 2 * pad - dil * (kw - 1) - 1) // stride + 1
    assert offset.shape == (n, 2 * groups * kk, ho, wo)
    cg = c // groups
    cols = np.zeros((n, c, kk, ho, wo))
    for b in range(n):
        for oy in range(ho):
            for ox in range(wo):
                for g in range(groups):
                    for i in range(kh):
                        for j in range(kw):
                            k = i * kw + j
                            dy = offset[b, g * 2 * kk + 2 * k, oy, ox]
                            dx = offset[b, g * 2 * kk + 2 * k + 1, oy, ox]
                            m = 1.0 if mask is None else mask[b, g * kk + k, oy, ox]
                            sy = oy * stride - pad + i * dil + dy
                            sx = ox * stride - pad + j * dil + dx
                            cols[b, g * cg:(g + 1) * cg, k, oy, ox] = \
                                m * _bilinear_ref(x[b, g * cg:(g + 1) * cg], sy, sx)
    out = np.einsum('nckyx,ock->noyx', cols, weight.reshape(o, c, kk).astype(np.float64))
    if bias is not None:
        out = out + np.asarray(bias, np.float64)[None, :, None, None]
    return out


# (N, C, H, W, O, k, stride, pad, dil, G, offset std)
REF_CASES = {
    'base_g1': (2, 4, 6, 7, 3, 3, 1, 1, 1, 1, 2.0),
    'stride2_g2': (1, 4, 7, 8, 3, 3, 2, 1, 1, 2, 2.0),
    'dil2_g4': (1, 4, 8, 7, 2, 3, 1, 2, 2, 4, 3.0),
    'pad0_g2': (1, 6, 6, 6, 3, 3, 1, 0, 1, 2, 2.0),
    'k1_g4': (2, 4, 5, 6, 3, 1, 1, 0, 1, 4, 1.5),
    'stride2_dil2_g4_far': (1, 8, 7, 7, 4, 3, 2, 2, 2, 4, 4.0),
}


def make_case(case, seed, integer_offsets=False, with_mask=True, with_bias=True):
    n, c, h, w, o, k, s, p, d, g, std = case
    rng = np.random.default_rng(seed)
    ho = (h + 2 * p - d * (k - 1) - 1) // s + 1
    wo = (w + 2 * p - d * (k - 1) - 1) // s + 1
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    if integer_offsets:
        offset = rng.integers(-3, 4, (n, 2 * g * k * k, ho, wo)).astype(np.float32)
    else:
        offset = (rng.standard_normal((n, 2 * g * k * k, ho, wo)) * std).astype(np.float32)
    mask = rng.uniform(0, 1, (n, g * k * k, ho, wo)).astype(np.float32) if with_mask else None
    weight = rng.standard_normal((o, c, k, k)).astype(np.float32) * 0.3
    bias = rng.standard_normal(o).astype(np.float32) if with_bias else None
    return dict(x=x, offset=offset, mask=mask, weight=weight, bias=bias, stride=s, pad=p, dil=d,
                groups=g)


def run_tf(fn, cs):
    mask = None if cs['mask'] is None else tf.constant(nchw_to_nhwc(cs['mask']))
    bias = None if cs['bias'] is None else tf.constant(cs['bias'])
    out = fn(tf.constant(nchw_to_nhwc(cs['x'])), tf.constant(nchw_to_nhwc(cs['offset'])), mask,
             tf.constant(oihw_to_hwio(cs['weight'])), bias, cs['stride'], cs['pad'], cs['dil'],
             cs['groups'])
    return out.numpy()


def run_ref(cs):
    ref = deform_conv2d_ref(cs['x'], cs['offset'], cs['mask'], cs['weight'], cs['bias'],
                            cs['stride'], cs['pad'], cs['dil'], cs['groups'])
    return nchw_to_nhwc(ref)


def outside_fraction(cs):
    """Share of samples (per tap and group) with at least one bilinear corner outside the image."""
    n, c, h, w = cs['x'].shape
    off = cs['offset']
    k = int(round(math.sqrt(off.shape[1] // 2 // cs['groups'])))
    ho, wo = off.shape[2:]
    kk = np.arange(off.shape[1] // 2) % (k * k)
    base_y = (np.arange(ho) * cs['stride'] - cs['pad'])[:, None] + (kk // k * cs['dil'])[:, None, None]
    base_x = (np.arange(wo) * cs['stride'] - cs['pad'])[None, :] + (kk % k * cs['dil'])[:, None, None]
    sy, sx = base_y + off[:, 0::2], base_x + off[:, 1::2]
    return float(((np.floor(sy) < 0) | (np.floor(sy) >= h - 1)
                  | (np.floor(sx) < 0) | (np.floor(sx) >= w - 1)).mean())


@pytest.mark.parametrize('impl', sorted(FUNCS))
@pytest.mark.parametrize('case', sorted(REF_CASES))
def test_matches_numpy_reference(case, impl):
    cs = make_case(REF_CASES[case], seed=len(case))
    assert outside_fraction(cs) > 0.2  # the zero border is really exercised
    out = run_tf(FUNCS[impl], cs)
    ref = run_ref(cs)
    assert out.shape == ref.shape
    assert max_abs(out, ref) <= 2e-5, max_abs(out, ref)


@pytest.mark.parametrize('impl', sorted(FUNCS))
@pytest.mark.parametrize('case', ['base_g1', 'stride2_g2', 'dil2_g4'])
def test_integer_offsets_match_reference(case, impl):
    cs = make_case(REF_CASES[case], seed=7, integer_offsets=True)
    out = run_tf(FUNCS[impl], cs)
    assert max_abs(out, run_ref(cs)) <= 2e-5


@pytest.mark.parametrize('case', ['base_g1', 'stride2_dil2_g4_far'])
def test_no_mask_no_bias_is_dcnv1(case):
    cs = make_case(REF_CASES[case], seed=3, with_mask=False, with_bias=False)
    out = run_tf(deform_conv2d, cs)
    assert max_abs(out, run_ref(cs)) <= 2e-5


def test_integer_offset_equals_shifted_convolution():
    """Every tap displaced by (dy, dx) = (1, -2) is a plain conv of the image shifted, zeros entering."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 6, 7, 4)).astype(np.float32)
    kernel = rng.standard_normal((3, 3, 4, 5)).astype(np.float32)
    offset = np.zeros((1, 6, 7, 2 * 9), np.float32)
    offset[..., 0::2], offset[..., 1::2] = 1.0, -2.0
    out = deform_conv2d(tf.constant(x), tf.constant(offset), None, tf.constant(kernel), None, 1, 1, 1, 1)
    # tap (i, j) of output (oy, ox) reads x[oy - 1 + i + 1, ox - 1 + j - 2] = x[oy + i, ox + j - 3]:
    # a VALID conv over x with 0 rows on top, 2 at the bottom, 3 columns on the left (and the
    # right-hand column that would be the conv's right padding cropped away)
    shifted = np.pad(x, ((0, 0), (0, 2), (3, 0), (0, 0)))[:, :, :7 + 2]
    expected = tf.nn.conv2d(shifted, kernel, 1, 'VALID')
    assert max_abs(out, expected) <= 1e-5
    assert max_abs(out, tf.nn.conv2d(x, kernel, 1, [[0, 0], [1, 1], [1, 1], [0, 0]])) > 1e-1


def test_gradients_match_finite_differences_strided_dilated_grouped():
    """Directional derivatives (float64) for a stride-2, dilation-2, 2-group case."""
    cs = make_case((1, 4, 7, 8, 3, 3, 2, 2, 2, 2, 2.0), seed=11)
    rng = np.random.default_rng(12)
    args = [nchw_to_nhwc(cs['x']), nchw_to_nhwc(cs['offset']), nchw_to_nhwc(cs['mask']),
            oihw_to_hwio(cs['weight']), cs['bias']]
    args = [tf.constant(a.astype(np.float64)) for a in args]

    def f(x, off, m, w, b):
        return deform_conv2d(x, off, m, w, b, 2, 2, 2, 2)

    go = tf.constant(rng.standard_normal(f(*args).shape))
    with tf.GradientTape() as tape:
        tape.watch(args)
        loss = tf.reduce_sum(f(*args) * go)
    grads = tape.gradient(loss, args)
    eps = 1e-6
    for idx, name in enumerate(['input', 'offset', 'mask', 'weight', 'bias']):
        v = tf.constant(rng.standard_normal(args[idx].shape))
        plus = [a + eps * v if i == idx else a for i, a in enumerate(args)]
        minus = [a - eps * v if i == idx else a for i, a in enumerate(args)]
        numeric = (tf.reduce_sum(f(*plus) * go) - tf.reduce_sum(f(*minus) * go)) / (2 * eps)
        analytic = tf.reduce_sum(grads[idx] * v)
        assert abs(float(numeric) - float(analytic)) <= 1e-6 * max(1.0, abs(float(analytic))), name


@pytest.mark.parametrize('stride', [1, 2])
@pytest.mark.parametrize('groups', [1, 2])
def test_zero_offsets_unit_mask_equal_conv2d(stride, groups):
    rng = np.random.default_rng(stride * 10 + groups)
    dcn = ModulatedDeformConv2d(4, 6, 3, stride, 1, deformable_groups=groups)
    conv = Conv2d(4, 6, 3, stride, 1)
    conv.kernel.assign(dcn.kernel)
    dcn.bias.assign(rng.standard_normal(6).astype(np.float32))
    conv.bias.assign(dcn.bias)
    x = tf.constant(rng.standard_normal((2, 8, 9, 4)).astype(np.float32))
    expected = conv(x).numpy()
    ho, wo = expected.shape[1:3]
    offset = tf.zeros((2, ho, wo, 2 * groups * 9))
    mask = tf.ones((2, ho, wo, groups * 9))
    assert max_abs(dcn(x, offset, mask), expected) <= 1e-5
    assert max_abs(dcn(x, offset), expected) <= 1e-5  # mask None = all ones
    assert max_abs(dcn(x, offset, 0.5 * mask), expected) > 1e-2


def test_layer_jit_compile_matches_plain():
    rng = np.random.default_rng(5)
    plain = ModulatedDeformConv2d(4, 3, 3, 1, 1, deformable_groups=2)
    xla = ModulatedDeformConv2d(4, 3, 3, 1, 1, deformable_groups=2, jit_compile=True)
    xla.kernel.assign(plain.kernel)
    x = tf.constant(rng.standard_normal((1, 6, 5, 4)).astype(np.float32))
    off = tf.constant(rng.standard_normal((1, 6, 5, 36)).astype(np.float32) * 2)
    m = tf.constant(rng.uniform(size=(1, 6, 5, 18)).astype(np.float32))
    assert max_abs(plain(x, off, m), xla(x, off, m)) <= 1e-5


def test_layer_gradients_reach_weights():
    layer = ModulatedDeformConv2d(4, 3, 3, 1, 1, deformable_groups=2)
    x = tf.random.stateless_normal((1, 5, 5, 4), seed=[1, 2])
    off = tf.random.stateless_normal((1, 5, 5, 36), seed=[3, 4])
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(x, off) ** 2)
    grads = tape.gradient(loss, layer.trainable_variables)
    assert len(layer.trainable_variables) == 2
    assert all(g is not None and float(tf.reduce_max(tf.abs(g))) > 0 for g in grads)


# ---------------------------------------------------------------------------------------------
# 3. DCNv2Pack
# ---------------------------------------------------------------------------------------------

def test_dcnv2pack_starts_as_half_conv_plus_bias():
    rng = np.random.default_rng(1)
    pack = DCNv2Pack(8, 6, 3, padding=1, deformable_groups=2)
    assert not np.any(pack.conv_offset.kernel.numpy())
    assert not np.any(pack.conv_offset.bias.numpy())
    assert pack.conv_offset.kernel.shape == (3, 3, 8, 3 * 2 * 9)
    bias = rng.standard_normal(6).astype(np.float32)
    pack.bias.assign(bias)
    x = tf.constant(rng.standard_normal((1, 7, 9, 8)).astype(np.float32))
    feat = tf.constant(rng.standard_normal((1, 7, 9, 8)).astype(np.float32))
    out = pack(x, feat).numpy()
    plain = tf.nn.conv2d(x, pack.kernel, 1, [[0, 0], [1, 1], [1, 1], [0, 0]]).numpy()
    assert out.shape == (1, 7, 9, 6)
    assert max_abs(out, 0.5 * plain + bias) <= 1e-5
    assert max_abs(out, plain + bias) > 1e-2


def test_dcnv2pack_splits_offsets_and_sigmoid_mask():
    """With a non-zero offset predictor: first 2GK channels are offsets, last GK -> sigmoid mask."""
    rng = np.random.default_rng(2)
    g = 2
    pack = DCNv2Pack(4, 3, 3, padding=1, deformable_groups=g)
    pack.conv_offset.kernel.assign(rng.standard_normal(pack.conv_offset.kernel.shape).astype(np.float32))
    pack.conv_offset.bias.assign(rng.standard_normal(pack.conv_offset.bias.shape).astype(np.float32))
    pack.bias.assign(rng.standard_normal(3).astype(np.float32))
    x = tf.constant(rng.standard_normal((1, 6, 6, 4)).astype(np.float32))
    feat = tf.constant(rng.standard_normal((1, 6, 6, 4)).astype(np.float32))
    raw = pack.conv_offset(feat).numpy()
    n_off = 2 * g * 9
    offset, mask = raw[..., :n_off], 1.0 / (1.0 + np.exp(-raw[..., n_off:]))
    expected = deform_conv2d_ref(nhwc_to_nchw(x.numpy()), nhwc_to_nchw(offset), nhwc_to_nchw(mask),
                                 np.transpose(pack.kernel.numpy(), (3, 2, 0, 1)), pack.bias.numpy(),
                                 1, 1, 1, g)
    assert max_abs(pack(x, feat), nchw_to_nhwc(expected)) <= 2e-5


def test_dcnv2pack_torch_state_keys():
    pack = DCNv2Pack(8, 6, 3, padding=1, deformable_groups=2)
    keys = list(torch_state_variables(pack))
    assert keys == ['weight', 'bias', 'conv_offset.weight', 'conv_offset.bias']
    sd = torch_state_dict(pack)
    assert sd['weight'].shape == (6, 8, 3, 3)
    assert sd['conv_offset.weight'].shape == (3 * 2 * 9, 8, 3, 3)
    np.testing.assert_array_equal(sd['weight'], np.transpose(pack.kernel.numpy(), (3, 2, 0, 1)))


def test_no_bias_layer_has_only_weight_key():
    layer = ModulatedDeformConv2d(4, 2, 3, bias=False)
    assert layer.bias is None
    assert list(torch_state_variables(layer)) == ['weight']


@pytest.mark.parametrize('cls', [ModulatedDeformConv2d, DCNv2Pack])
def test_get_config_round_trip(cls):
    layer = cls(8, 6, 3, stride=2, padding=2, dilation=2, deformable_groups=4, name='dcn_x')
    cfg = layer.get_config()
    assert cfg['in_channels'] == 8 and cfg['out_channels'] == 6 and cfg['deformable_groups'] == 4
    assert cfg['stride'] == 2 and cfg['dilation'] == 2 and cfg['padding'] == 2
    clone = cls.from_config(cfg)
    assert type(clone) is cls
    assert clone.get_config() == cfg
    assert [tuple(v.shape) for v in clone.weights] == [tuple(v.shape) for v in layer.weights]


def test_get_config_round_trip_keeps_bias_and_jit_flags():
    layer = ModulatedDeformConv2d(4, 2, 1, padding=0, bias=False, jit_compile=True)
    clone = ModulatedDeformConv2d.from_config(layer.get_config())
    assert clone.bias is None and clone.jit_compile is True and clone.kernel_size == 1


# ---------------------------------------------------------------------------------------------
# 4. errors
# ---------------------------------------------------------------------------------------------

def test_npu_impl_without_npu_bridge_fails_at_build():
    if importlib.util.find_spec('npu_bridge') is not None:
        pytest.skip('npu_bridge is importable here')
    with pytest.raises(RuntimeError, match='npu_bridge'):
        ModulatedDeformConv2d(4, 4, impl='npu')
    with pytest.raises(RuntimeError, match='npu_bridge'):
        DCNv2Pack(4, 4, impl='npu')


def test_bad_impl_name():
    with pytest.raises(ValueError, match='cuda'):
        ModulatedDeformConv2d(4, 4, impl='cuda')


def test_in_channels_not_divisible_by_groups():
    with pytest.raises(ValueError) as info:
        ModulatedDeformConv2d(10, 4, deformable_groups=4)
    assert '10' in str(info.value) and '4' in str(info.value)
    with pytest.raises(ValueError, match='10'):
        DCNv2Pack(10, 4, deformable_groups=3)
