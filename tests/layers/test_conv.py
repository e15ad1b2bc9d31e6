"""Tests for ascendcv.layers.conv (PyTorch-padded Conv2d, ResidualBlockNoBN) and
ascendcv.layers.torch_compat (PyTorch state-dict names and layouts)."""
import numpy as np
import pytest
import tensorflow as tf

from ascendcv.layers.conv import Conv2d, ResidualBlockNoBN
from ascendcv.layers.torch_compat import (oihw_to_hwio, torch_state_dict,
                                          torch_state_variables)


def max_abs(a, b):
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def rand(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def conv_ref(x, kernel, bias, stride, pad, dil):
    """numpy nn.Conv2d on NHWC / HWIO with zeros on all four sides."""
    n, h, w, c = x.shape
    kh, kw, _, o = kernel.shape
    xp = np.pad(x.astype(np.float64), ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    ho = (h + 2 * pad - dil * (kh - 1) - 1) // stride + 1
    wo = (w + 2 * pad - dil * (kw - 1) - 1) // stride + 1
    out = np.zeros((n, ho, wo, o))
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, i * dil:i * dil + stride * (ho - 1) + 1:stride,
                       j * dil:j * dil + stride * (wo - 1) + 1:stride]
            out += np.einsum('nyxc,co->nyxo', patch, kernel[i, j].astype(np.float64))
    return out + (0 if bias is None else bias)


def make_conv(cin, cout, k, s, p, d, seed=0, bias=True):
    conv = Conv2d(cin, cout, k, s, p, d, bias=bias)
    if bias:
        conv.bias.assign(rand((cout,), seed + 100))
    return conv


# ---------------------------------------------------------------------------------------------
# Conv2d
# ---------------------------------------------------------------------------------------------

def test_stride2_symmetric_padding_matches_reference_and_not_same():
    x = rand((2, 8, 10, 3), seed=1)  # even sizes: 'SAME' pads 0 top/left, 1 bottom/right
    conv = make_conv(3, 4, 3, 2, 1, 1, seed=1)
    out = conv(tf.constant(x)).numpy()
    kernel, bias = conv.kernel.numpy(), conv.bias.numpy()
    assert out.shape == (2, 4, 5, 4)
    assert max_abs(out, conv_ref(x, kernel, bias, 2, 1, 1)) <= 1e-5
    explicit = tf.nn.conv2d(x, kernel, 2, [[0, 0], [1, 1], [1, 1], [0, 0]]) + bias
    assert max_abs(out, explicit) <= 1e-5
    same = tf.nn.conv2d(x, kernel, 2, 'SAME') + bias
    assert same.shape == out.shape  # same shape, different numbers: why Conv2d exists
    assert max_abs(out, same) > 1e-2


@pytest.mark.parametrize('k,s,p,d', [(3, 1, 1, 1), (3, 2, 1, 1), (1, 1, 0, 1), (5, 2, 2, 1),
                                     (3, 1, 2, 2), (3, 2, 2, 2), (4, 3, 0, 1), (3, 1, 0, 3),
                                     (2, 2, 1, 1)])
@pytest.mark.parametrize('size', [(9, 11), (8, 8)])
def test_output_size_and_values(k, s, p, d, size):
    h, w = size
    x = rand((1, h, w, 2), seed=k + s)
    conv = make_conv(2, 3, k, s, p, d, seed=k * s)
    out = conv(tf.constant(x)).numpy()
    ho = (h + 2 * p - d * (k - 1) - 1) // s + 1
    wo = (w + 2 * p - d * (k - 1) - 1) // s + 1
    assert out.shape == (1, ho, wo, 3)
    assert max_abs(out, conv_ref(x, conv.kernel.numpy(), conv.bias.numpy(), s, p, d)) <= 1e-5


def test_conv2d_weight_shapes_and_no_bias():
    conv = Conv2d(5, 7, 3, bias=False)
    assert conv.kernel.shape == (3, 3, 5, 7)
    assert conv.bias is None
    assert list(torch_state_variables(conv)) == ['weight']
    x = rand((1, 6, 6, 5))
    assert max_abs(conv(tf.constant(x)), conv_ref(x, conv.kernel.numpy(), None, 1, 0, 1)) <= 1e-5


def test_conv2d_default_init_bound():
    conv = Conv2d(16, 32, 3)
    bound = 1.0 / np.sqrt(16 * 9)
    k, b = conv.kernel.numpy(), conv.bias.numpy()
    assert np.abs(k).max() <= bound and np.abs(b).max() <= bound
    assert np.abs(k).max() > 0.5 * bound  # really uniform over the range, not tiny


def test_conv2d_get_config_round_trip():
    conv = Conv2d(4, 6, 5, stride=2, padding=2, dilation=1, bias=False, name='c')
    cfg = conv.get_config()
    clone = Conv2d.from_config(cfg)
    assert clone.get_config() == cfg
    assert clone.kernel.shape == (5, 5, 4, 6) and clone.bias is None


# ---------------------------------------------------------------------------------------------
# ResidualBlockNoBN and torch_compat
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize('res_scale', [1.0, 0.2])
def test_residual_block_forward(res_scale):
    block = ResidualBlockNoBN(num_feat=4, res_scale=res_scale)
    x = rand((1, 5, 6, 4), seed=3)
    c1 = block.conv1
    c2 = block.conv2
    mid = np.maximum(conv_ref(x, c1.kernel.numpy(), c1.bias.numpy(), 1, 1, 1), 0)
    expected = x + res_scale * conv_ref(mid, c2.kernel.numpy(), c2.bias.numpy(), 1, 1, 1)
    out = block(tf.constant(x)).numpy()
    assert out.shape == x.shape
    assert max_abs(out, expected) <= 1e-5


def test_residual_block_torch_state_dict():
    block = ResidualBlockNoBN(num_feat=6)
    sd = torch_state_dict(block)
    assert list(sd) == ['conv1.weight', 'conv1.bias', 'conv2.weight', 'conv2.bias']
    for name in ('conv1', 'conv2'):
        conv = getattr(block, name)
        kernel = conv.kernel.numpy()
        assert sd[f'{name}.weight'].shape == (6, 6, 3, 3)  # OIHW
        np.testing.assert_array_equal(sd[f'{name}.weight'], np.transpose(kernel, (3, 2, 0, 1)))
        np.testing.assert_array_equal(sd[f'{name}.bias'], conv.bias.numpy())
    # distinct layers, distinct values (not the same variable reported twice)
    assert max_abs(sd['conv1.weight'], sd['conv2.weight']) > 0


def test_torch_state_dict_is_inverse_of_layout_functions():
    """OIHW -> HWIO -> OIHW is the identity on a non-square conv (all four axes distinct)."""
    conv = Conv2d(3, 5, 1)
    oihw = rand((5, 3, 1, 1), seed=4)
    variables = torch_state_variables(conv)
    var, to_tf = variables['weight']
    var.assign(to_tf(oihw))
    np.testing.assert_array_equal(conv.kernel.numpy()[0, 0], oihw[:, :, 0, 0].T)
    np.testing.assert_array_equal(torch_state_dict(conv)['weight'], oihw)

    conv3 = Conv2d(2, 4, 3)
    w = rand((4, 2, 3, 3), seed=5)
    torch_state_variables(conv3)['weight'][0].assign(oihw_to_hwio(w))
    np.testing.assert_array_equal(torch_state_dict(conv3)['weight'], w)


def test_torch_state_variables_nested_names():
    """Lists and dicts of sub-layers get PyTorch's dotted names (``body.0.conv1.weight``)."""
    import keras

    class Net(keras.layers.Layer):
        def __init__(self):
            super().__init__()
            self.conv_first = Conv2d(3, 4, 3, 1, 1)
            self.body = [ResidualBlockNoBN(4), ResidualBlockNoBN(4)]
            self.heads = {'up': Conv2d(4, 8, 1, bias=False)}

    keys = list(torch_state_variables(Net()))
    assert keys == ['conv_first.weight', 'conv_first.bias',
                    'body.0.conv1.weight', 'body.0.conv1.bias',
                    'body.0.conv2.weight', 'body.0.conv2.bias',
                    'body.1.conv1.weight', 'body.1.conv1.bias',
                    'body.1.conv2.weight', 'body.1.conv2.bias',
                    'heads.up.weight']


def test_residual_block_get_config_round_trip():
    block = ResidualBlockNoBN(num_feat=8, res_scale=0.5, name='rb')
    cfg = block.get_config()
    clone = ResidualBlockNoBN.from_config(cfg)
    assert clone.get_config() == cfg
    assert clone.conv1.kernel.shape == (3, 3, 8, 8) and clone.res_scale == 0.5
