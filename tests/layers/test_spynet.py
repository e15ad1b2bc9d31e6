"""SpyNet against the official RVRT flows (fixture: the official SpyNet release format,
``rvrt_spynet_random_params.pth``, and the flows of ``rvrt_tiny_a``)."""
import os

import numpy as np
import pytest
import tensorflow as tf

from ascendcv.layers.spynet import SpyNet, load_spynet_weights, warp_border
from ascendcv.utils.torch_checkpoint import CheckpointError

FIX = os.path.join(os.path.dirname(os.path.dirname(__file__)), 'fixtures')
SPYNET = os.path.join(FIX, 'rvrt_spynet_random_params.pth')


@pytest.fixture(scope='module')
def spynet():
    s = SpyNet()
    assert load_spynet_weights(s, SPYNET) == 60  # 6 levels x 5 convs x (weight, bias)
    return s


@pytest.fixture(scope='module')
def frames():
    ref = np.load(os.path.join(FIX, 'rvrt_tiny_a_ref.npz'))
    return (np.moveaxis(ref['input'][0], 1, -1), np.moveaxis(ref['flows_backward'][0], 1, -1),
            np.moveaxis(ref['flows_forward'][0], 1, -1))


def test_flows_match_official(spynet, frames):
    x, backward, forward = frames  # [4, 36, 40, 3]; flows [3, 36, 40, 2] (dx, dy)
    fb = spynet(tf.constant(x[:-1]), tf.constant(x[1:])).numpy()
    ff = spynet(tf.constant(x[1:]), tf.constant(x[:-1])).numpy()
    assert np.abs(backward).mean() > 0.5  # non-trivial flows
    np.testing.assert_allclose(fb, backward, atol=3e-5)
    np.testing.assert_allclose(ff, forward, atol=3e-5)
    # the buffers keep ImageNet's statistics (the release has none)
    np.testing.assert_allclose(spynet.mean.numpy(), [0.485, 0.456, 0.406])
    np.testing.assert_allclose(spynet.std.numpy(), [0.229, 0.224, 0.225])


def test_return_levels(spynet, frames):
    x = frames[0][:2]
    multi = SpyNet(return_levels=[3, 5])
    for a, b in zip(multi.weights, spynet.weights):
        a.assign(b)
    fine, coarse = multi(tf.constant(x[:1]), tf.constant(x[1:]))  # finest first
    assert fine.shape == (1, 36, 40, 2) and coarse.shape == (1, 9, 10, 2)
    np.testing.assert_allclose(fine.numpy(), spynet(tf.constant(x[:1]), tf.constant(x[1:])),
                               atol=1e-6)


def test_small_and_odd_frames(spynet):
    with pytest.raises(ValueError, match='larger than 32x32.*32x40'):
        spynet(tf.zeros([1, 32, 40, 3]), tf.zeros([1, 32, 40, 3]))
    x = np.random.default_rng(0).random((1, 33, 45, 3), dtype=np.float32)  # odd pyramid sizes
    assert spynet(tf.constant(x), tf.constant(x[:, ::-1])).shape == (1, 33, 45, 2)
    with pytest.raises(ValueError, match='return_levels'):
        SpyNet(return_levels=[6])


def test_warp_border_clamps():
    x = np.arange(12, dtype=np.float32).reshape(1, 3, 4, 1)
    flow = np.zeros((1, 3, 4, 2), np.float32)
    flow[..., 0] = 10.0  # far right: the last column
    np.testing.assert_array_equal(warp_border(tf.constant(x), tf.constant(flow)).numpy(),
                                  np.repeat(x[:, :, -1:], 4, axis=2))


def test_whole_model_checkpoint_is_not_a_spynet_release():
    with pytest.raises(CheckpointError, match='not an official SpyNet checkpoint.*missing keys'):
        load_spynet_weights(SpyNet(), os.path.join(FIX, 'rvrt_tiny_a_ckpt.pth'))
