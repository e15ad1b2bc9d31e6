"""Video Swin blocks: the official rules (window partition order, -100 shift mask from the
region slices, stored relative position index and its ``[:N, :N]`` use, padding to window
multiples) against a loop-by-loop numpy transcription of ``network_rvrt.py``'s STL."""
import os

import numpy as np
import pytest
import tensorflow as tf
from scipy.special import erf

from ascendcv.layers.torch_compat import torch_state_variables
from ascendcv.layers.video_swin import (STG, STL, relative_position_index, shift_mask,
                                        window_partition, window_reverse)
from ascendcv.utils.torch_checkpoint import load_state_dict

FIX = os.path.join(os.path.dirname(os.path.dirname(__file__)), 'fixtures')


def official_mask(dp, hp, wp, window, shift):
    """compute_mask transcribed with the official Python slices (incl. ``-0``)."""
    img = np.zeros((dp, hp, wp))
    cnt = 0
    for d in (slice(-window[0]), slice(-window[0], -shift[0]), slice(-shift[0], None)):
        for h in (slice(-window[1]), slice(-window[1], -shift[1]), slice(-shift[1], None)):
            for w in (slice(-window[2]), slice(-window[2], -shift[2]), slice(-shift[2], None)):
                img[d, h, w] = cnt
                cnt += 1
    wins = []
    for i in range(dp // window[0]):
        for j in range(hp // window[1]):
            for k in range(wp // window[2]):
                wins.append(img[i * window[0]:(i + 1) * window[0],
                                j * window[1]:(j + 1) * window[1],
                                k * window[2]:(k + 1) * window[2]].reshape(-1))
    wins = np.stack(wins)
    diff = wins[:, None, :] - wins[:, :, None]
    return np.where(diff != 0, -100.0, 0.0)


@pytest.mark.parametrize('sizes,window,shift', [((4, 8, 12), (2, 4, 4), (1, 2, 2)),
                                                ((2, 8, 8), (2, 4, 4), (0, 2, 2)),
                                                ((1, 12, 8), (1, 4, 4), (0, 2, 2))])
def test_shift_mask_matches_official_slices(sizes, window, shift):
    np.testing.assert_array_equal(shift_mask(sizes, window, shift).numpy(),
                                  official_mask(*sizes, window, shift))


def test_partition_round_trip_and_order():
    x = np.arange(2 * 4 * 4 * 6 * 1, dtype=np.float32).reshape(2, 4, 4, 6, 1)
    win = window_partition(tf.constant(x), (2, 2, 3)).numpy()
    assert win.shape == (2 * 2 * 2 * 2, 12, 1)
    # window 1 of batch 0 = (d 0, h 0, w 1): tokens (d, h, w) row-major
    np.testing.assert_array_equal(win[1, :, 0], x[0, 0:2, 0:2, 3:6].reshape(-1))
    back = window_reverse(tf.constant(win), (2, 2, 3), 2, 4, 4, 6).numpy()
    np.testing.assert_array_equal(back, x)


def test_relative_position_index_is_the_stored_buffer():
    sd = load_state_dict(os.path.join(FIX, 'rvrt_tiny_a_ckpt.pth'))
    for key, window in (('feat_extract.main.5.0.residual_group.blocks.0.attn.', (1, 4, 4)),
                        ('backbone.backward_1.main.5.0.residual_group.blocks.1.attn.', (2, 4, 4))):
        np.testing.assert_array_equal(relative_position_index(window),
                                      sd[key + 'relative_position_index'])


def _ln(x, w, b, eps):
    m = x.mean(-1, keepdims=True)
    v = ((x - m) ** 2).mean(-1, keepdims=True)
    return (x - m) / np.sqrt(v + eps) * w + b


def reference_stl(x, p, window_cfg, shift_cfg, heads, eps=1e-5):
    """The official STL.forward, written with explicit loops over windows (float64)."""
    b_, d, h, w, c = x.shape
    window = [s if s <= ws else ws for s, ws in zip((d, h, w), window_cfg)]
    shift = [0 if s <= ws else sh for s, ws, sh in zip((d, h, w), window_cfg, shift_cfg)]
    y = _ln(x, p['norm1.weight'], p['norm1.bias'], eps)
    pad = [(-s) % ws for s, ws in zip((d, h, w), window)]
    y = np.pad(y, [(0, 0), (0, pad[0]), (0, pad[1]), (0, pad[2]), (0, 0)])
    dp, hp, wp = y.shape[1:4]
    if any(shift):
        y = np.roll(y, [-s for s in shift], axis=(1, 2, 3))
        mask = official_mask(dp, hp, wp, window, shift)
    n = int(np.prod(window))
    full_index = relative_position_index(window_cfg)[:n, :n]
    bias = p['attn.relative_position_bias_table'][full_index]  # [n, n, heads]
    out = np.zeros_like(y)
    hd = c // heads
    for bi in range(b_):
        widx = 0
        for i in range(dp // window[0]):
            for j in range(hp // window[1]):
                for k in range(wp // window[2]):
                    sl = (bi, slice(i * window[0], (i + 1) * window[0]),
                          slice(j * window[1], (j + 1) * window[1]),
                          slice(k * window[2], (k + 1) * window[2]))
                    tok = y[sl].reshape(n, c)
                    qkv = (tok @ p['attn.qkv_self.weight'].T + p['attn.qkv_self.bias'])
                    qkv = qkv.reshape(n, 3, heads, hd)
                    res = np.zeros((n, c))
                    for hh in range(heads):
                        q, kk, v = qkv[:, 0, hh], qkv[:, 1, hh], qkv[:, 2, hh]
                        logits = (q * hd ** -0.5) @ kk.T + bias[:, :, hh]
                        if any(shift):
                            logits = logits + mask[widx]
                        a = np.exp(logits - logits.max(-1, keepdims=True))
                        a /= a.sum(-1, keepdims=True)
                        res[:, hh * hd:(hh + 1) * hd] = a @ v
                    res = res @ p['attn.proj.weight'].T + p['attn.proj.bias']
                    out[sl] = res.reshape(window + [c])
                    widx += 1
    if any(shift):
        out = np.roll(out, shift, axis=(1, 2, 3))
    x = x + out[:, :d, :h, :w]
    z = _ln(x, p['norm2.weight'], p['norm2.bias'], eps)
    z = z @ p['mlp.fc1.weight'].T + p['mlp.fc1.bias']
    z = 0.5 * z * (1 + erf(z / np.sqrt(2)))
    return x + z @ p['mlp.fc2.weight'].T + p['mlp.fc2.bias']


def _randomise(layer, seed):
    rng = np.random.default_rng(seed)
    params = {}
    for key, (var, _) in torch_state_variables(layer).items():
        if key.endswith('relative_position_index'):
            continue
        value = rng.normal(0, 0.3, var.shape).astype(np.float32)
        if key.endswith('norm1.weight') or key.endswith('norm2.weight'):
            value = 1 + value
        var.assign(value)
        params[key] = np.asarray(value, np.float64)
    for k in list(params):  # Linear kernels are stored (in, out): the reference uses (out, in)
        if k.endswith('.weight') and params[k].ndim == 2:
            params[k] = params[k].T
    return params


@pytest.mark.parametrize('sizes,shift', [((3, 7, 10), (1, 2, 2)),   # padding + shift
                                         ((2, 3, 9), (1, 2, 2)),    # dims <= window: N < 32
                                         ((3, 7, 10), (0, 0, 0))])  # padding, no shift
def test_stl_matches_reference(sizes, shift):
    layer = STL(8, 2, window_size=(2, 4, 4), shift_size=shift)
    params = _randomise(layer, 0)
    x = np.random.default_rng(1).normal(size=(2, *sizes, 8)).astype(np.float32)
    stg_like_mask = None
    if any(shift):
        window = [s if s <= ws else ws for s, ws in zip(sizes, (2, 4, 4))]
        eff = [0 if s <= ws else sh for s, ws, sh in zip(sizes, (2, 4, 4), shift)]
        padded = [-(-s // ws) * ws for s, ws in zip(sizes, window)]
        stg_like_mask = shift_mask(padded, window, eff)
    got = layer(tf.constant(x), stg_like_mask).numpy()
    want = reference_stl(x.astype(np.float64), params, (2, 4, 4), shift, 2)
    np.testing.assert_allclose(got, want, atol=2e-5)


def test_stg_dynamic_sizes_and_options():
    stg = STG(8, 2, 2, window_size=(2, 4, 4))
    _randomise(stg, 3)
    x = np.random.default_rng(4).normal(size=(1, 3, 9, 6, 8)).astype(np.float32)
    static = stg(tf.constant(x)).numpy()
    dyn = tf.function(stg, input_signature=[tf.TensorSpec([None, None, None, None, 8])])
    np.testing.assert_allclose(dyn(tf.constant(x)).numpy(), static, atol=1e-5)
    light = STG(8, 2, 2, window_size=(2, 4, 4), relative_position_bias=False,
                approximate_gelu=True, norm_eps=1e-7)
    keys = list(torch_state_variables(light))
    assert not [k for k in keys if 'relative_position' in k]
    assert light.blocks[0].norm1.eps == 1e-7 and light.blocks[1].mlp.approximate_gelu
    assert light(tf.constant(x)).shape == x.shape
