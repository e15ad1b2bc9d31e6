"""Tests for ascendcv.layers.norm, ascendcv.layers.linear and ConvTranspose2d (PyTorch semantics,
state-dict names, get_config round-trips) against numpy references."""
import numpy as np
import pytest
import tensorflow as tf

from ascendcv.layers.conv import ConvTranspose2d
from ascendcv.layers.linear import Linear
from ascendcv.layers.norm import BatchNorm2d, InstanceNorm2d, LayerNorm
from ascendcv.layers.torch_compat import torch_state_dict


def rand(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def layer_norm_ref(x, weight, bias, eps=1e-5):
    """numpy ``nn.LayerNorm`` over the last axis, float64, biased variance."""
    x = x.astype(np.float64)
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


def test_layer_norm_matches_numpy_reference():
    x = rand((2, 5, 7, 16)) * 3 + 1
    ln = LayerNorm(16)
    ln.weight.assign(rand((16,), 1))
    ln.bias.assign(rand((16,), 2))
    y = ln(tf.constant(x)).numpy()
    assert y.shape == x.shape
    np.testing.assert_allclose(y, layer_norm_ref(x, ln.weight.numpy(), ln.bias.numpy()),
                               rtol=0, atol=2e-5)


def test_layer_norm_defaults_names_and_no_affine():
    ln = LayerNorm(8)
    assert ln.eps == 1e-5
    assert sorted(torch_state_dict(ln)) == ['bias', 'weight']
    np.testing.assert_array_equal(torch_state_dict(ln)['weight'], np.ones(8, np.float32))
    plain = LayerNorm(8, elementwise_affine=False)
    assert not plain.weights and torch_state_dict(plain) == {}
    x = rand((3, 8))
    np.testing.assert_allclose(plain(x).numpy(), layer_norm_ref(x, 1.0, 0.0), atol=2e-5)


def test_linear_matches_torch_layout():
    lin = Linear(6, 4)
    weight = rand((4, 6), 3)  # PyTorch (out, in)
    lin.kernel.assign(weight.T)
    x = rand((2, 3, 6), 4)
    np.testing.assert_allclose(lin(x).numpy(), x @ weight.T + lin.bias.numpy(), atol=1e-5)
    np.testing.assert_array_equal(torch_state_dict(lin)['weight'], weight)


def test_conv_transpose2d_matches_definition():
    s, cin, cout = 2, 3, 5
    conv = ConvTranspose2d(cin, cout, s)
    x = rand((1, 4, 3, cin), 5)
    w = torch_state_dict(conv)['weight']  # (in, out, s, s)
    assert w.shape == (cin, cout, s, s)
    ref = np.einsum('nhwc,coij->nhiwjo', x.astype(np.float64), w.astype(np.float64))
    ref = ref.reshape(1, 4 * s, 3 * s, cout) + conv.bias.numpy()
    np.testing.assert_allclose(conv(x).numpy(), ref, atol=1e-5)


def test_instance_norm_per_image_and_channel():
    x = rand((2, 6, 5, 3)) * 2 + 3
    y = InstanceNorm2d(3)(x).numpy()
    mean = x.mean((1, 2), keepdims=True)
    var = x.var((1, 2), keepdims=True)
    np.testing.assert_allclose(y, (x - mean) / np.sqrt(var + 1e-5), atol=1e-4)


def test_batch_norm_running_statistics():
    bn = BatchNorm2d(3, momentum=0.5)
    x = rand((2, 4, 4, 3)) + 2
    bn(x, training=True)
    np.testing.assert_allclose(bn.running_mean.numpy(), 0.5 * x.mean((0, 1, 2)), atol=1e-5)
    np.testing.assert_allclose(bn.running_var.numpy(),
                               0.5 + 0.5 * x.reshape(-1, 3).var(0, ddof=1), atol=1e-5)
    assert sorted(torch_state_dict(bn)) == ['bias', 'running_mean', 'running_var', 'weight']


@pytest.mark.parametrize('layer', [
    LayerNorm(8, eps=1e-6, elementwise_affine=False), BatchNorm2d(4, eps=1e-3, momentum=0.2),
    InstanceNorm2d(4, eps=1e-3), Linear(3, 2, bias=False, keep_zeros=True),
    ConvTranspose2d(3, 2, 4, bias=False, keep_zeros=True)])
def test_get_config_round_trip(layer):
    cfg = layer.get_config()
    clone = type(layer).from_config(cfg)
    assert clone.get_config() == cfg
    assert [w.shape for w in clone.weights] == [w.shape for w in layer.weights]
