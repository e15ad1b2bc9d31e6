"""Post-training quantisation as the official quantize_per_tensor (quant_bit, quant_axis)."""
import keras
import numpy as np
import pytest

from ascendcv.layers.torch_compat import torch_state_dict
from ascendvsr.compression.pruning import prune_model
from ascendvsr.compression.quantization import (quantize_model, quantize_per_tensor,
                                                quantize_state_dict)
from ascendvsr.models.nerv import NeRV

TINY = dict(embed='1.25_40', stem_dim_num='64_1', fc_hw_dim='3_4_8', strides=[2, 2],
            lower_width=6, reduction=2, expansion=1.0, act='swish', num_frames=8)


def test_per_tensor_levels_and_zero_handling():
    t = np.array([0.0, -1.0, 0.5, 1.0, 0.25], np.float32)
    q, deq = quantize_per_tensor(t, bit=2, axis=-1)
    # range from the non-zero entries [-1, 1]; scale = 2 / 2**2 = 0.5; codes 0..4 (2**b + 1)
    np.testing.assert_array_equal(q, [2, 0, 3, 4, 2])  # 0.25 / 0.5 rounds half to even: 2.5 -> 2
    np.testing.assert_allclose(deq, [0.0, -1.0, 0.5, 1.0, 0.0])


def test_per_axis_ranges_follow_pytorch_layout():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(4, 3, 3, 3)).astype(np.float32)  # OIHW
    w[2] *= 100.0  # one output channel with a huge range
    w[1] = 0.0  # an all-zero channel gets min = max = 0
    q0, d0 = quantize_per_tensor(w, 4, axis=0)
    qt, dt = quantize_per_tensor(w, 4, axis=-1)
    err0, errt = np.abs(d0 - w), np.abs(dt - w)
    assert err0[0].max() < errt[0].max() / 10  # per-channel ranges keep small channels accurate
    assert (d0[1] == 0).all()
    for c in (0, 2, 3):  # |error| <= scale / 2 per channel
        scale = (w[c].max() - w[c].min()) / 16
        assert err0[c].max() <= scale / 2 + 1e-6
        assert q0[c].min() == 0 and q0[c].max() == 16
    q1, _ = quantize_per_tensor(w, 4, axis=1)
    assert q1.shape == w.shape and not np.array_equal(q1, q0)


def test_state_dict_rule_biases_per_tensor_and_keep_zeros():
    rng = np.random.default_rng(1)
    sd = {'layers.0.conv.conv.weight': rng.normal(size=(6, 2, 3, 3)).astype(np.float32),
          'layers.0.conv.conv.bias': rng.normal(size=(6,)).astype(np.float32)}
    sd['layers.0.conv.conv.weight'][0, 0] = 0.0
    new, codes = quantize_state_dict(sd, 8, axis=0, keep_zeros=True)
    assert (new['layers.0.conv.conv.weight'][0, 0] == 0).all()
    assert codes['layers.0.conv.conv.weight'].size == np.count_nonzero(sd['layers.0.conv.conv.weight'])
    official, _ = quantize_state_dict(sd, 8, axis=0, keep_zeros=False)
    assert (official['layers.0.conv.conv.weight'][0, 0] != 0).any()  # official re-quantises zeros
    with pytest.raises(ValueError):
        quantize_state_dict(sd, 0)


def test_quantize_model_per_output_channel_in_torch_layout():
    keras.utils.set_random_seed(3)
    model = NeRV(**TINY, pruning=True)
    prune_model(model, 0.3)
    before = torch_state_dict(model)
    codes = quantize_model(model, 4, axis=0)
    after = torch_state_dict(model)
    w0, w1 = before['stem.2.weight'], after['stem.2.weight']  # Linear (out, in)
    for row0, row1 in zip(w0[:10], w1[:10]):
        nz = row0 != 0
        assert len(np.unique(row1[nz])) <= 17
        assert np.isclose(row1[nz].min(), row0[nz].min()) and np.isclose(row1[nz].max(), row0[nz].max())
    assert ((w1 == 0) == (w0 == 0)).all()  # pruned zeros stay zeros
    conv0 = before['layers.0.conv.conv.weight']
    conv1 = after['layers.0.conv.conv.weight']
    assert np.abs(conv1 - conv0).max() <= (conv0.max() - conv0.min()) / 32 + 1e-6
    assert sum(c.size for c in codes.values()) == sum(np.count_nonzero(v) for v in before.values())
