"""RVRT guided deformable attention as TF ops (ascendcv.layers.deform_attn).

Fixture ``tests/fixtures/rvrt_gda_op.npz``: five op cases made with the official code
(README_rvrt.md "Guided deformable attention"), layouts (n*clip, 1, P, H, W), (n, clip, 2P, H, W),
(n*clip, clip*G*K*2, H, W). Cases the fixture does not cover (groups straddling heads, clip 3,
dilation, non-square windows) are checked against a numpy transcription of the same rules.
"""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from ascendcv.layers.deform_attn import deform_attn, local_attn

FIXTURES = os.path.join(os.path.dirname(__file__), '..', 'fixtures')
with open(os.path.join(FIXTURES, 'rvrt_gda_op_meta.json')) as _f:
    META = json.load(_f)['cases']
# (kernel_h, kernel_w, padding, attention_heads, deformable_groups, clip_size) of each case
CASES = {name: (c['kernel_h'], c['kernel_w'], c['padding'][0], c['attention_heads'],
                c['deformable_groups'], c['clip_size']) for name, c in META.items()}


@pytest.fixture(scope='module')
def op_cases():
    return np.load(os.path.join(FIXTURES, 'rvrt_gda_op.npz'))


def _case(data, name):
    q = np.moveaxis(data[name + '.q'], 2, -1)
    kv = np.moveaxis(data[name + '.kv'], 2, -1)
    offset = np.moveaxis(data[name + '.offset'], 1, -1)
    return q, kv, offset


def _to_official(out):
    return np.moveaxis(np.asarray(out), -1, 2)


@pytest.mark.parametrize('name', sorted(META))
def test_op_matches_official_cases(op_cases, name):
    kh, kw, pad, heads, groups, clip = CASES[name]
    q, kv, offset = _case(op_cases, name)
    out = _to_official(deform_attn(q, kv, offset, kh, kw, 1, pad, 1, heads, groups, clip))
    assert np.abs(out - op_cases[name + '.output']).max() < 2e-6
    assert np.abs(out - op_cases[name + '.output_f64']).max() < 2e-6
    # zero offsets: the general op and the slice fast path both give the official window attention
    zero = op_cases[name + '.output_zero_offset']
    out0 = deform_attn(q, kv, np.zeros_like(offset), kh, kw, 1, pad, 1, heads, groups, clip)
    assert np.abs(_to_official(out0) - zero).max() < 2e-6
    assert np.abs(_to_official(local_attn(q, kv, kh, kw, heads, clip)) - zero).max() < 2e-6
    # the check separates: offsets matter in every case
    assert np.abs(out - zero).max() > 1e-2


def test_xla_path_matches_values_and_gradients(op_cases):
    name = 'g3_h2_kv_straddle'
    kh, kw, pad, heads, groups, clip = CASES[name]
    tensors = [tf.constant(t) for t in _case(op_cases, name)]
    grads = []
    for jit in (True, False):
        with tf.GradientTape() as tape:
            tape.watch(tensors)
            out = deform_attn(*tensors, kh, kw, 1, pad, 1, heads, groups, clip, jit_compile=jit)
            loss = tf.reduce_sum(out ** 2)
        grads.append(tape.gradient(loss, tensors))
        assert np.abs(_to_official(out) - op_cases[name + '.output_f64']).max() < 2e-6
    for g, r in zip(*grads):
        assert np.isfinite(g.numpy()).all()
        np.testing.assert_allclose(g.numpy(), r.numpy(), atol=1e-4)
    # local_attn's XLA path: tests/layers/test_rvrt_attention.py (LocalAttnPack, jit_compile)


# --- a numpy transcription of the official rules (README_rvrt.md), for other configurations ---

def _bilinear_zero(img, y, x):
    """DCNv2 bilinear sampling of img [H, W, C] at y, x [H', W']: 0 when y <= -1, y >= H,
    x <= -1 or x >= W; otherwise only the corners inside count."""
    h, w = img.shape[:2]
    out = np.zeros(y.shape + img.shape[2:])
    inside = (y > -1) & (y < h) & (x > -1) & (x < w)
    y0, x0 = np.floor(y).astype(int), np.floor(x).astype(int)
    for dy in (0, 1):
        for dx in (0, 1):
            yy, xx = y0 + dy, x0 + dx
            wgt = (1 - np.abs(y - yy)) * (1 - np.abs(x - xx))
            ok = inside & (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
            out += np.where(ok[..., None], img[np.clip(yy, 0, h - 1), np.clip(xx, 0, w - 1)], 0) \
                * wgt[..., None]
    return out


def reference_deform_attn(q, kv, offset, kh, kw, pad, dil, heads, groups, clip):
    """float64 loops over frames, groups, taps and heads (channels-last arrays)."""
    b_all, _, h, w, p = q.shape
    k, cg, d = kh * kw, 2 * p // groups, p // heads
    out = np.zeros(q.shape)
    gy, gx = np.meshgrid(np.arange(h), np.arange(w), indexing='ij')
    for b in range(b_all):
        cols = np.zeros((clip * k, h, w, 2 * p))
        for m in range(clip):
            img = kv[b // clip, (m + b) % clip]
            for g in range(groups):
                for i in range(kh):
                    for j in range(kw):
                        tap, ch = i * kw + j, slice(g * cg, (g + 1) * cg)
                        base = ((m * groups + g) * k + tap) * 2
                        y = gy - pad + i * dil + offset[b, :, :, base]
                        x = gx - pad + j * dil + offset[b, :, :, base + 1]
                        cols[m * k + tap, :, :, ch] = _bilinear_zero(img[..., ch], y, x)
        for a in range(heads):
            qa = q[b, 0, :, :, a * d:(a + 1) * d] * d ** -0.5
            logits = (qa[None] * cols[..., a * d:(a + 1) * d]).sum(-1)
            attn = np.exp(logits - logits.max(0))
            attn /= attn.sum(0)
            out[b, 0, :, :, a * d:(a + 1) * d] = (attn[..., None]
                                                  * cols[..., p + a * d:p + (a + 1) * d]).sum(0)
    return out


def _random_inputs(seed, n, clip, h, w, p, groups, k, scale=2.5, dtype=np.float64):
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((n * clip, 1, h, w, p))
    kv = rng.standard_normal((n, clip, h, w, 2 * p))
    whole = rng.integers(-3, 4, (n * clip, h, w, clip * groups * k * 2))
    frac = rng.uniform(0.15, 0.85, whole.shape)  # away from the bilinear kinks
    offset = (whole + frac) * (scale / 3)
    return q.astype(dtype), kv.astype(dtype), offset.astype(dtype)


@pytest.mark.parametrize('kh, kw, dil, heads, groups, clip, n', [
    (3, 3, 1, 3, 4, 2, 2),    # P=12: D=4, group width 6 -> groups straddle heads
    (3, 3, 1, 4, 3, 3, 1),    # odd G straddles the k/v boundary, clip 3 (frame rotation)
    (3, 5, 2, 2, 6, 2, 1),    # non-square window (pad kh//2 on both axes), dilation 2
])
def test_op_matches_reference_other_configs(kh, kw, dil, heads, groups, clip, n):
    p = 12
    q, kv, offset = _random_inputs(1, n, clip, 5, 6, p, groups, kh * kw)
    pad = kh // 2
    ref = reference_deform_attn(q, kv, offset, kh, kw, pad, dil, heads, groups, clip)
    out = deform_attn(q, kv, offset, kh, kw, 1, pad, dil, heads, groups, clip).numpy()
    assert np.abs(out - ref).max() < 1e-10
    out32 = deform_attn(q.astype(np.float32), kv.astype(np.float32), offset.astype(np.float32),
                        kh, kw, 1, pad, dil, heads, groups, clip).numpy()
    assert np.abs(out32 - ref).max() < 1e-5
    if dil == 1 and kw <= 2 * pad + 1:
        zero = reference_deform_attn(q, kv, 0 * offset, kh, kw, pad, 1, heads, groups, clip)
        assert np.abs(local_attn(q, kv, kh, kw, heads, clip).numpy() - zero).max() < 1e-10


def test_gradients_match_finite_differences():
    """Directional derivatives: <dL/dx, u> against central differences of L = <w, op(x)> along
    random directions u, for q, kv and offset in float64 (offsets away from bilinear kinks)."""
    q, kv, offset = _random_inputs(2, 1, 2, 3, 4, 4, 2, 9)
    rng = np.random.default_rng(5)
    w = rng.standard_normal(q.shape)

    def loss(q_, kv_, off_):
        return float(np.sum(w * deform_attn(q_, kv_, off_, 3, 3, 1, 1, 1, 2, 2, 2).numpy()))

    inputs = [tf.constant(t) for t in (q, kv, offset)]
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        value = tf.reduce_sum(w * deform_attn(*inputs, 3, 3, 1, 1, 1, 2, 2, 2))
    grads = [g.numpy() for g in tape.gradient(value, inputs)]
    eps = 1e-6
    for i, g in enumerate(grads):
        assert np.isfinite(g).all() and np.abs(g).max() > 1e-3  # every input receives gradient
        for _ in range(2):
            u = rng.standard_normal(g.shape)
            plus = [t + eps * u if j == i else t for j, t in enumerate((q, kv, offset))]
            minus = [t - eps * u if j == i else t for j, t in enumerate((q, kv, offset))]
            numeric = (loss(*plus) - loss(*minus)) / (2 * eps)
            assert abs(numeric - np.sum(g * u)) < 1e-6 * max(1.0, abs(numeric))


def test_official_key_gradient_option():
    """official_key_grad: same forward; the gradient through the keys (kv key channels) is
    D**-0.5 times the exact one, the q and value-channel gradients are unchanged."""
    q, kv, offset = _random_inputs(6, 1, 2, 4, 5, 8, 4, 9, dtype=np.float32)  # D = 4, groups 4
    tensors = [tf.constant(t) for t in (q, kv, offset)]
    w = tf.constant(np.random.default_rng(1).standard_normal(q.shape).astype(np.float32))
    results = []
    for official in (False, True):
        with tf.GradientTape() as tape:
            tape.watch(tensors)
            out = deform_attn(*tensors, 3, 3, 1, 1, 1, 2, 4, 2, official_key_grad=official)
            loss = tf.reduce_sum(w * out)
        results.append((out.numpy(), [g.numpy() for g in tape.gradient(loss, tensors)]))
    (out, (gq, gkv, _)), (out_o, (gq_o, gkv_o, _)) = results
    assert np.array_equal(out, out_o)
    np.testing.assert_allclose(gq_o, gq, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(gkv_o[..., 8:], gkv[..., 8:], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(gkv_o[..., :8], gkv[..., :8] * 0.5, rtol=1e-5, atol=1e-7)
    assert np.abs(gkv[..., :8]).max() > 1e-2


def test_recompute_grad_gives_the_same_gradients():
    q, kv, offset = _random_inputs(7, 1, 2, 4, 5, 8, 4, 9, dtype=np.float32)
    tensors = [tf.constant(t) for t in (q, kv, offset)]
    results = []
    for recompute in (False, True):
        with tf.GradientTape() as tape:
            tape.watch(tensors)
            out = deform_attn(*tensors, 3, 3, 1, 1, 1, 2, 4, 2, recompute_grad=recompute)
            loss = tf.reduce_sum(out ** 2)
        results.append([out] + tape.gradient(loss, tensors))
    for a, b in zip(*results):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-6)


def test_bad_arguments_raise():
    q, kv, offset = _random_inputs(0, 1, 2, 4, 4, 8, 2, 9, dtype=np.float32)
    with pytest.raises(ValueError, match='clip \\* G \\* K \\* 2 = 72'):
        deform_attn(q, kv, offset[..., :70], 3, 3, 1, 1, 1, 2, 2, 2)
    with pytest.raises(ValueError, match='attention_heads=3'):
        deform_attn(q, kv, offset, 3, 3, 1, 1, 1, 3, 2, 2)
    with pytest.raises(ValueError, match='deformable_groups=3'):
        deform_attn(q, kv, np.zeros((2, 4, 4, 108), np.float32), 3, 3, 1, 1, 1, 2, 3, 2)
    with pytest.raises(ValueError, match='stride 1 only'):
        deform_attn(q, kv, offset, 3, 3, 2, 1, 1, 2, 2, 2)
    with pytest.raises(ValueError, match='2 \\* 8 = 16 channels'):
        deform_attn(q, kv[..., :12], offset, 3, 3, 1, 1, 1, 2, 2, 2)
    with pytest.raises(ValueError, match='clip_size is 3'):
        local_attn(q, kv, 3, 3, 2, 3)


def test_freeze_to_core_ops(tmp_path):
    """The op freezes to a plain graph of core ops with dynamic H, W and runs from the .pb
    (ONNX export of the op inside GuidedDeformAttnPack: tests/layers/test_rvrt_attention.py)."""
    from tensorflow.python.framework.convert_to_constants import \
        convert_variables_to_constants_v2
    q, kv, offset = _random_inputs(4, 1, 2, 5, 6, 8, 4, 9, dtype=np.float32)
    ref = deform_attn(q, kv, offset, 3, 3, 1, 1, 1, 2, 4, 2).numpy()

    @tf.function(input_signature=[tf.TensorSpec([2, 1, None, None, 8], tf.float32, name='q'),
                                  tf.TensorSpec([1, 2, None, None, 16], tf.float32, name='kv'),
                                  tf.TensorSpec([2, None, None, 144], tf.float32, name='offset')])
    def serve(q_, kv_, off_):
        return tf.identity(deform_attn(q_, kv_, off_, 3, 3, 1, 1, 1, 2, 4, 2), name='out')

    graph_def = convert_variables_to_constants_v2(serve.get_concrete_function()).graph.as_graph_def()
    assert not {n.op for n in graph_def.node} & {'PartitionedCall', 'StatefulPartitionedCall'}
    pb = tmp_path / 'gda.pb'
    pb.write_bytes(graph_def.SerializeToString())
    loaded = tf.compat.v1.GraphDef()
    loaded.ParseFromString(pb.read_bytes())
    run = tf.compat.v1.wrap_function(lambda: tf.graph_util.import_graph_def(loaded, name=''), [])
    fn = run.prune(['q:0', 'kv:0', 'offset:0'], ['out:0'])
    assert np.abs(fn(tf.constant(q), tf.constant(kv), tf.constant(offset))[0].numpy()
                  - ref).max() < 1e-6
