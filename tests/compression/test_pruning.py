"""Global magnitude pruning with the official NeRV prune_ratio / prune_steps semantics."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from ascendcv.layers.torch_compat import torch_state_dict
from ascendvsr.compression.pruning import (global_magnitude_prune, mask_optimizer_state,
                                           prunable_variables, prune_model, prune_schedule,
                                           sparsity)
from ascendvsr.models.nerv import NeRV

TINY = dict(embed='1.25_40', stem_dim_num='64_1', fc_hw_dim='3_4_8', strides=[2, 2],
            lower_width=6, reduction=2, expansion=1.0, act='swish', num_frames=8)


def test_global_ranking_across_tensors_and_rounding():
    big = np.full((4,), 10.0)
    small = np.array([0.1, -0.2, 0.3, -0.4, 0.5, 0.6])
    masks = global_magnitude_prune([big, small], 0.5)  # round(0.5 * 10) = 5 smallest
    assert masks[0].all()  # a whole tensor of large weights survives (global, not per layer)
    np.testing.assert_array_equal(masks[1], [False] * 5 + [True])
    m = global_magnitude_prune([np.arange(1, 8, dtype=float)], 0.25)[0]  # round(1.75) = 2
    assert m.sum() == 5 and not m[:2].any()


def test_amount_applies_to_the_remaining_weights_like_pruning_container():
    w = np.arange(1, 11, dtype=float)
    w[:4] = 0  # 4 already pruned, 6 remaining
    mask = global_magnitude_prune([w], 0.5)[0]  # 3 of the 6 remaining
    assert mask.sum() == 3 and not mask[:4].any()
    with pytest.raises(ValueError):
        global_magnitude_prune([w], 1.5)


def test_official_prune_schedule():
    # --prune_ratio 0.4 (default steps [0.]): prune 60 % once at epoch 0 -> keeps 40 %
    (epoch, amount, kept), = prune_schedule(0.4, [0.0], 100)
    assert epoch == 0 and amount == pytest.approx(0.6) and kept == pytest.approx(0.4)
    # two steps compound: base = 0.4**0.5, amounts 1-base and 1-base**2 of what remains
    steps = prune_schedule(0.4, [0.0, 0.5], 100)
    assert [s[0] for s in steps] == [0, 50]
    assert steps[-1][2] == pytest.approx(0.4 ** 1.5)
    with pytest.raises(ValueError, match='prune_ratio'):
        prune_schedule(0.0, [0.0], 10)


def test_prune_model_only_touches_stem_and_block_convolutions():
    keras.utils.set_random_seed(0)
    model = NeRV(**TINY, pruning=True)
    before = torch_state_dict(model)
    stats = prune_model(model, 0.6)
    after = torch_state_dict(model)
    names = list(prunable_variables(model))
    assert names == ['stem.0.weight', 'stem.2.weight', 'layers.0.conv.conv.weight',
                     'layers.1.conv.conv.weight']
    n = sum(before[k].size for k in names)
    assert stats['prunable_zeros'] == round(0.6 * n)
    for k in before:
        if k not in names:  # heads and biases untouched
            np.testing.assert_array_equal(before[k], after[k])
    kept = np.concatenate([np.abs(after[k][after[k] != 0]) for k in names])
    dropped = np.concatenate([np.abs(before[k][after[k] == 0]) for k in names])
    assert dropped.max() <= kept.min()  # magnitude order, globally
    assert stats['sparsity'] < stats['prunable_sparsity']


def _train_steps(model, steps=5):
    opt = keras.optimizers.Adam(1e-2, beta_1=0.5, beta_2=0.999)
    x = tf.constant([0.0, 3.0, 7.0])
    target = tf.random.stateless_uniform([3, 12, 16, 3], seed=[1, 2])
    for _ in range(steps):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.abs(model(x, training=True) - target))
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables))
    return opt


@pytest.mark.parametrize('pruning', [True, False])
def test_pruned_weights_stay_zero_while_fine_tuning(pruning):
    keras.utils.set_random_seed(1)
    model = NeRV(**TINY, pruning=pruning)
    prune_model(model, 0.5)
    zeros = {k: v.numpy() == 0 for k, v in prunable_variables(model).items()}
    before = {k: v.numpy().copy() for k, v in prunable_variables(model).items()}
    _train_steps(model)
    for k, v in prunable_variables(model).items():
        w = v.numpy()
        if pruning:
            assert (w[zeros[k]] == 0).all(), k
        assert not np.allclose(w[~zeros[k]], before[k][~zeros[k]])  # the rest trains
    if not pruning:  # without pruning=True the zeros come back: the test can fail
        assert any((v.numpy()[zeros[k]] != 0).any() for k, v in prunable_variables(model).items())


def test_mask_optimizer_state_stops_revival_of_weights_pruned_mid_run():
    keras.utils.set_random_seed(2)
    model = NeRV(**TINY, pruning=True)
    opt = _train_steps(model, 3)  # Adam moments are non-zero everywhere
    prune_model(model, 0.5)
    assert mask_optimizer_state(opt, model.trainable_variables) > 0
    zeros = {k: v.numpy() == 0 for k, v in prunable_variables(model).items()}
    x = tf.constant([1.0])
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(model(x, training=True))
    opt.apply_gradients(zip(tape.gradient(loss, model.trainable_variables),
                            model.trainable_variables))
    for k, v in prunable_variables(model).items():
        assert (v.numpy()[zeros[k]] == 0).all(), k
    assert sparsity(model)['prunable_sparsity'] == pytest.approx(0.5, abs=1e-3)
