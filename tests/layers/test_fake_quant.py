"""LSQ fake quantization (ascendcv.layers.fake_quant) against the official Q-SCI code: layer
pairs recorded by the official modules (float32, teacher-forced), the official straight-through
gradients (numpy reference of the autograd graph of ``Quant.py``), the first-iteration
initialisation rule and the refusal of uninitialised quantizers."""
import math
import os

import numpy as np
import pytest
import tensorflow as tf

from ascendcv.layers.conv3d import Conv3d
from ascendcv.layers.fake_quant import (ActQ, Conv2dQ, Conv3dQ, LinearQ,
                                        QuantizerNotInitializedError, calibrate_quantizers,
                                        fake_quant_activation, fake_quant_weight, quant_range,
                                        quantizers_of, uninitialized_quantizers)
from ascendcv.layers.torch_compat import torch_state_variables
from ascendcv.utils.torch_checkpoint import load_state_dict

FIX = os.path.join(os.path.dirname(os.path.dirname(__file__)), 'fixtures')


def _ncdhw_to_ndhwc(x):
    return np.transpose(x, (0, 2, 3, 4, 1))


def _load_module(layer, sd, prefix):
    for key, (var, to_tf) in torch_state_variables(layer).items():
        var.assign(to_tf(sd[prefix + key]))


@pytest.fixture(scope='module')
def pert():
    sd = load_state_dict(os.path.join(FIX, 'qsci_tiny_b4_pert_ckpt.pth'), key='model_state_dict')
    return sd, np.load(os.path.join(FIX, 'qsci_tiny_b4_pert_layers.npz'))


# ------------------------------------------------------------------ official layer pairs

def test_first_actq_and_conv3dq_match_official_pairs(pert):
    """x_in -> fem_conv1_1.0.act (4-bit unsigned, zero point -1) -> Conv3dQ (per-channel
    perturbed alphas): the float32 outputs of the official modules."""
    sd, lay = pert
    conv = Conv3dQ(1, 16, (3, 7, 7), 1, (1, 3, 3), nbits=4)
    _load_module(conv, sd, 'fem_conv1_1.0.')
    x = tf.constant(_ncdhw_to_ndhwc(lay['x_in']))
    xq = conv.act(x).numpy()
    np.testing.assert_array_equal(xq, _ncdhw_to_ndhwc(lay['x_in_q']))
    assert len(np.unique(xq)) <= 16  # 4-bit unsigned: at most 16 levels
    y = conv(x).numpy()[:, :, ::2, ::2]
    ref = _ncdhw_to_ndhwc(lay['first_conv_out_s2'])
    assert np.abs(y - ref).max() <= 1e-5 * np.abs(ref).max()


def test_quant_off_is_the_float_conv(pert):
    sd, lay = pert
    q = Conv3dQ(1, 16, (3, 7, 7), 1, (1, 3, 3), nbits=4, quantize=False)
    f = Conv3d(1, 16, (3, 7, 7), 1, (1, 3, 3))
    _load_module(q, sd, 'fem_conv1_1.0.')
    f.kernel.assign(q.kernel)
    f.bias.assign(q.bias)
    x = tf.constant(_ncdhw_to_ndhwc(lay['x_in']))
    np.testing.assert_array_equal(q(x).numpy(), f(x).numpy())


def test_torch_names():
    conv = Conv3dQ(4, 6, 3, 1, 1, nbits=4)
    assert list(torch_state_variables(conv)) == [
        'weight', 'bias', 'alpha', 'init_state', 'act.alpha', 'act.zero_point',
        'act.init_state', 'act.signed']
    lin = LinearQ(8, 12, bias=False, nbits=8)
    names = {k: tuple(v.shape) for k, (v, _) in torch_state_variables(lin).items()}
    assert names == {'weight': (8, 12), 'alpha': (12,), 'init_state': (1,), 'act.alpha': (8,),
                     'act.zero_point': (8,), 'act.init_state': (1,), 'act.signed': (1,)}
    trainable = {v.path.split('/')[-1] for v in lin.trainable_variables}
    assert trainable == {'kernel', 'alpha', 'zero_point'}  # buffers are not trained


# ------------------------------------------------------------------ gradients (official STE/LSQ)

def _np_weight_grads(w, alpha, nbits, up):
    """Official Conv3dQ/LinearQ backward: round_pass + clamp + grad_scale(alpha, g)."""
    qn, qp = quant_range(nbits, True)
    g = 1.0 / math.sqrt(w.size * qp)
    v = w / alpha
    inside = (v >= qn) & (v <= qp)
    dw = up * inside
    da = np.where(inside, np.round(v) - v, np.where(v < qn, qn, qp)) * up * g
    return dw, da.reshape(-1, w.shape[-1]).sum(0)


def _np_act_grads(x, alpha, zp, signed, nbits, axis, up):
    """Official ActQ backward (zero point through round_pass, both scaled by g)."""
    qn, qp = quant_range(nbits, signed)
    g = 1.0 / math.sqrt(x.size * qp)
    shape = [1] * x.ndim
    shape[axis] = -1
    a, z = alpha.reshape(shape), np.round(zp).reshape(shape)
    u = x / a + z
    inside = (u >= qn) & (u <= qp)
    dx = up * inside
    da = np.where(inside, np.round(u) - z - x / a, np.where(u < qn, qn, qp) - z) * up * g
    dz = np.where(inside, 0.0, -a) * up * g
    others = tuple(i for i in range(x.ndim) if i != axis % x.ndim)
    return dx, da.sum(others), dz.sum(others)


@pytest.mark.parametrize('nbits', [8, 4, 2])
def test_weight_gradients_are_the_official_ste_lsq(nbits):
    rng = np.random.default_rng(nbits)
    w = rng.normal(0, 0.2, (3, 3, 5, 6))
    alpha = rng.uniform(0.005, 0.04, 6) * (8 / nbits)
    up = rng.normal(size=w.shape)
    wv, av = tf.Variable(w), tf.Variable(alpha)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(fake_quant_weight(wv, av, nbits, training=True) * up)
    dw, da = tape.gradient(loss, [wv, av])
    ref_dw, ref_da = _np_weight_grads(w, alpha, nbits, up)
    assert 0 < (ref_dw == 0).mean() < 1 or nbits == 8  # some weights are clipped at low bits
    np.testing.assert_allclose(dw.numpy(), ref_dw, atol=1e-12)
    np.testing.assert_allclose(da.numpy(), ref_da, rtol=1e-10, atol=1e-12)
    # the value: round(clamp(w / alpha)) * alpha
    qn, qp = quant_range(nbits, True)
    np.testing.assert_allclose(fake_quant_weight(wv, av, nbits).numpy(),
                               np.round(np.clip(w / alpha, qn, qp)) * alpha, rtol=1e-12)


@pytest.mark.parametrize('nbits,signed,axis,shape', [(4, True, -1, (2, 3, 4, 4, 5)),
                                                    (4, False, 1, (6, 4, 8, 3)),
                                                    (8, True, 1, (6, 4, 8, 3)),
                                                    (3, False, -1, (16, 8, 1))])
def test_activation_gradients_are_the_official_ste_lsq(nbits, signed, axis, shape):
    rng = np.random.default_rng(7)
    x = rng.normal(0.5, 1.0, shape)
    c = shape[axis]
    alpha = rng.uniform(0.1, 0.4, c) * 2 ** (4 - nbits)  # some elements clip at every width
    zp = rng.uniform(-2.5, 2.5, c)
    up = rng.normal(size=shape)
    xv, av, zv = tf.Variable(x), tf.Variable(alpha), tf.Variable(zp)
    with tf.GradientTape() as tape:
        y = fake_quant_activation(xv, av, zv, signed, nbits, axis, training=True)
        loss = tf.reduce_sum(y * up)
    dx, da, dz = tape.gradient(loss, [xv, av, zv])
    ref = _np_act_grads(x, alpha, zp, signed, nbits, axis, up)
    assert 0 < (ref[0] == 0).mean() < 1  # both clipped and unclipped elements
    np.testing.assert_allclose(dx.numpy(), ref[0], atol=1e-12)
    np.testing.assert_allclose(da.numpy(), ref[1], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(dz.numpy(), ref[2], rtol=1e-9, atol=1e-12)
    # value: (round(clamp(x / a + round(zp))) - round(zp)) * a, training and eval alike
    qn, qp = quant_range(nbits, signed)
    s = [1] * len(shape)
    s[axis] = -1
    a, z = alpha.reshape(s), np.round(zp).reshape(s)
    value = (np.round(np.clip(x / a + z, qn, qp)) - z) * a
    np.testing.assert_allclose(y.numpy(), value, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(fake_quant_activation(xv, av, zv, signed, nbits, axis).numpy(),
                               value, rtol=1e-12, atol=1e-14)


def test_layer_gradients_reach_every_quantizer_parameter():
    lin = LinearQ(8, 6, nbits=4, dtype='float64')
    x = tf.constant(np.random.default_rng(0).normal(size=(5, 3, 8)))
    calibrate_quantizers(lin, x)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(lin(x, training=True) ** 2)
    grads = tape.gradient(loss, lin.trainable_variables)
    assert all(g is not None for g in grads)
    named = {v.path.split('/')[-1] + ('_act' if 'act' in v.path else ''): g
             for v, g in zip(lin.trainable_variables, grads)}
    assert np.abs(named['alpha'].numpy()).sum() > 0
    assert np.abs(named['alpha_act'].numpy()).sum() > 0


# ------------------------------------------------------------------ initialisation

def test_official_initialisation_rule():
    rng = np.random.default_rng(3)
    conv = Conv3dQ(3, 4, 3, 1, 1, nbits=4, dtype='float64')
    x = rng.normal(0.2, 1.0, (1, 4, 6, 6, 3))
    calibrate_quantizers(conv, tf.constant(x))
    w = conv.kernel.numpy()
    np.testing.assert_allclose(conv.alpha.numpy(), 2 * np.abs(w).mean() / math.sqrt(7) * np.ones(4))
    act = conv.act
    assert act.signed.numpy()[0] == 1.0  # min(x) < -1e-5
    alpha = 2 * np.abs(x).mean() / math.sqrt(7)
    np.testing.assert_allclose(act.alpha.numpy(), alpha * np.ones(3))
    np.testing.assert_allclose(act.zero_point.numpy(), 0.1 * (x.min() + 8 * alpha) * np.ones(3))
    assert conv.init_state.numpy()[0] == act.init_state.numpy()[0] == 1.0
    # unsigned: non-negative input, range 0..2^b - 1
    act = ActQ(1, nbits=8, dtype='float64')
    xp = np.abs(x)
    calibrate_quantizers(act, tf.constant(xp))
    assert act.signed.numpy()[0] == 0.0
    np.testing.assert_allclose(act.alpha.numpy(), [2 * xp.mean() / math.sqrt(255)])
    np.testing.assert_allclose(act.zero_point.numpy(), [0.1 * xp.min()])
    # idempotent: initialised quantizers keep their values
    before = act.alpha.numpy().copy()
    assert calibrate_quantizers(act, tf.constant(xp * 10)) == 0
    act(tf.constant(xp * 10), training=True)
    np.testing.assert_array_equal(act.alpha.numpy(), before)


def test_uninitialised_quantizer_is_refused():
    conv = Conv3dQ(2, 3, 1, nbits=8)
    x = tf.zeros((1, 2, 4, 4, 2))
    with pytest.raises(QuantizerNotInitializedError, match='never initialised'):
        conv(x)                                # evaluation
    with pytest.raises(Exception, match='never initialised'):  # autograph wraps it
        tf.function(lambda t: conv(t, training=True))(x)  # a traced training graph
    assert len(uninitialized_quantizers(conv)) == 2   # the weight and the input quantizer
    assert quantizers_of(conv) == [conv, conv.act]
    conv2d = Conv2dQ(2, 3, 3, 1, 1, nbits=4)
    with pytest.raises(QuantizerNotInitializedError):
        conv2d(tf.zeros((1, 5, 5, 2)))
    calibrate_quantizers(conv2d, tf.random.normal((1, 5, 5, 2)))
    assert conv2d(tf.zeros((1, 5, 5, 2))).shape == (1, 5, 5, 3)


def test_bad_channel_count_is_named():
    act = ActQ(4, nbits=4, axis=1)
    calibrate_quantizers(act, tf.random.normal((2, 4, 3)))
    with pytest.raises(ValueError, match='axis 1 has 5 channels'):
        act(tf.zeros((2, 5, 3)))
