"""RVRT against the official PyTorch code (fixtures of ../shared/fixtures/README_rvrt.md):
variant ``a`` end to end (output, flows, every stage, the guided deformable attention call of
``backward_1``), the official checkpoint split (RVRT + SpyNet release), bad inputs, bad
checkpoints and the absence of state between calls."""
import importlib.util
import os

import numpy as np
import pytest
import tensorflow as tf

from ascendcv.layers.torch_compat import torch_state_dict, torch_state_variables
from ascendcv.utils.torch_checkpoint import CheckpointError
from ascendvsr.convert.common import assign_state_dict
from ascendvsr.convert.rvrt import load_rvrt_spynet, load_rvrt_weights
from ascendvsr.models.rvrt import RVRT

FIX = os.path.join(os.path.dirname(os.path.dirname(__file__)), 'fixtures')
CKPT = os.path.join(FIX, 'rvrt_tiny_a_ckpt.pth')
SPYNET = os.path.join(FIX, 'rvrt_spynet_random_params.pth')
TINY_A = dict(window_size=[2, 4, 4], num_blocks=[1, 1, 1], depths=[2, 2, 2], embed_dims=[24] * 3,
              num_heads=[2] * 3, deformable_groups=2, attention_heads=2, num_frame=4)


def cl(a):
    """PyTorch (n, t, c, h, w) -> ours (n, t, h, w, c)."""
    return np.moveaxis(np.asarray(a), 2, -1)


@pytest.fixture(scope='module')
def ref():
    return np.load(os.path.join(FIX, 'rvrt_tiny_a_ref.npz'))


@pytest.fixture(scope='module')
def model():
    m = RVRT(**TINY_A)
    load_rvrt_weights(m, CKPT, spynet=SPYNET)
    return m


@pytest.fixture(scope='module')
def run_a(model, ref):
    record = {}
    out = model.forward_features(tf.constant(cl(ref['input'])), record=record)
    return {k: (None if v is None else v.numpy()) for k, v in out.items()}, record


def _maxabs(a, b):
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))))


def test_variant_a_end_to_end(run_a, ref):
    out, _ = run_a
    assert out['output'].shape == (1, 4, 144, 160, 3)
    assert _maxabs(out['output'], cl(ref['output'])) <= 1e-5
    # flows: float32-vs-float64 noise of the official flows is 4.7e-6
    assert _maxabs(out['flows_backward'], cl(ref['flows_backward'])) <= 3e-5
    assert _maxabs(out['flows_forward'], cl(ref['flows_forward'])) <= 3e-5
    for stage in ('backward_1', 'forward_1', 'backward_2', 'forward_2'):
        # stored: the frame each module reaches last (0 backward, 3 forward)
        frame = 0 if stage.startswith('backward') else 3
        stored = cl(ref[f'{stage}_last_frame'])
        assert _maxabs(out[stage][:, frame:frame + 1], stored) <= 1e-4, stage


def test_variant_a_attention_call(run_a):
    """The inputs and outputs of backward_1's guided deformable attention (propagation order:
    the clip flipped in time), incl. shallow features, flow composition and warps."""
    _, record = run_a
    g = np.load(os.path.join(FIX, 'rvrt_tiny_a_gda.npz'))
    call = {k: v.numpy() for k, v in record['backward_1.1'].items()}
    for ours, theirs, tol in (('feat_q', 'in.feat_q', 1e-5), ('feat_k', 'in.feat_k', 1e-5),
                              ('feat_prop', 'in.feat_prop', 1e-4),
                              ('warped1', 'in.warped1', 1e-4), ('warped2', 'in.warped2', 1e-4),
                              ('flow_n1', 'in.flow_n1', 5e-5), ('flow_n2', 'in.flow_n2', 5e-5),
                              ('feat', 'out.feat', 1e-4)):
        assert _maxabs(call[ours], cl(g[f'backward_1.{theirs}'])) <= tol, ours


def test_official_parameter_count():
    """The official VSR configuration (001/002 of main_test_rvrt.py): 10,782,295 parameters."""
    m = RVRT()
    assert m.num_parameters() == 10_782_295
    assert sum(int(np.prod(v.shape)) for v in m.spynet.trainable_variables) == 1_440_300


def test_frame_count_must_be_clip_multiple(model):
    with pytest.raises(ValueError, match='multiple of clip_size=2.*T=3'):
        model(tf.zeros([1, 3, 36, 40, 3]))


def test_frames_too_small_for_spynet(model):
    with pytest.raises(ValueError, match='larger than 32x32'):
        model(tf.zeros([1, 2, 32, 40, 3]))


def test_no_state_between_calls(model, ref, run_a):
    """The official model sets a never-reset mirror flag on a mirror-extended input (its
    later outputs change by 5e-3); ours keeps nothing from one call to the next."""
    x = cl(ref['input'])
    mirrored = np.concatenate([x[:, :2], x[:, :2][:, ::-1]], 1)
    assert not any('mirror' in name for name in vars(model))
    model(tf.constant(mirrored))
    after = model(tf.constant(x)).numpy()
    np.testing.assert_array_equal(after, run_a[0]['output'])


def _extra_fixture_generator():
    path = os.path.join(os.path.dirname(FIX), '..', 'tools', 'fixtures',
                        'make_rvrt_extra_fixture.py')
    spec = importlib.util.spec_from_file_location('make_rvrt_extra_fixture', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # numpy only at import (torch is imported in main())
    return module


def test_three_clips_non_window_sizes_straddling_groups():
    """Variant b, made with the official code (tools/fixtures/make_rvrt_extra_fixture.py):
    3 clips (flows composed at 2 recurrent steps, the _2 modules reusing the updated flows of
    steps 1 and 2), 37x45 frames (Swin padding, SpyNet resizing), 3 deformable groups over the
    2P = 48 kv channels (group 1 spans keys and values). Weights are drawn from their keys."""
    gen = _extra_fixture_generator()
    c = gen.CONFIG
    m = RVRT(window_size=c['window_size'], num_blocks=c['num_blocks'], depths=c['depths'],
             embed_dims=c['embed_dims'], num_heads=c['num_heads'],
             deformable_groups=c['deformable_groups'], attention_heads=c['attention_heads'],
             num_frame=gen.INPUT_SHAPE[1])
    load_rvrt_spynet(m, SPYNET)
    sd = torch_state_dict(m)
    for key, value in sd.items():
        drawn = gen.seeded_weights(key, value.shape)
        if drawn is not None:
            sd[key] = drawn
    assign_state_dict(m, sd)
    ref = np.load(os.path.join(FIX, 'rvrt_tiny_b_ref.npz'))
    record = {}
    out = m.forward_features(tf.constant(cl(ref['input'])), record=record)
    assert sorted(record) == sorted(f'{mod}.{i}' for mod in ('backward_1', 'forward_1',
                                                             'backward_2', 'forward_2')
                                    for i in (1, 2))
    assert out['output'].shape == (1, 6, 148, 180, 3)
    assert _maxabs(out['output'].numpy()[:, [0, 5]], cl(ref['output_frames_0_5'])) <= 1e-5
    assert _maxabs(out['flows_backward'], cl(ref['flows_backward'])) <= 3e-5
    assert _maxabs(out['flows_forward'], cl(ref['flows_forward'])) <= 3e-5


def test_checkpoint_errors(tmp_path):
    m = RVRT(**TINY_A)
    with pytest.raises(CheckpointError, match='missing keys.*spynet.basic_module'):
        load_rvrt_weights(m, CKPT)  # the fixture holds RVRT without SpyNet
    with pytest.raises(CheckpointError, match='only a SpyNet'):
        load_rvrt_weights(m, SPYNET)
    with pytest.raises(CheckpointError, match='MindSpore RVRT Light.*RVRT-Light'):
        load_rvrt_weights(m, os.path.join(FIX, 'rvrt_light_tiny_a.ckpt'))
    light = RVRT(**dict(TINY_A, attention='local', relative_position_bias=False))
    with pytest.raises(CheckpointError, match='attention=local'):
        load_rvrt_weights(light, CKPT, spynet=SPYNET)
    with pytest.raises(CheckpointError, match='has no SpyNet'):
        load_rvrt_spynet(light, SPYNET)
    from ascendvsr.convert.rvrt import read_rvrt_state_dict
    sd = read_rvrt_state_dict(CKPT, spynet=SPYNET)
    sd['extra.weight'] = np.zeros(1, np.float32)
    with pytest.raises(CheckpointError, match=r'unexpected keys \(1\): extra.weight'):
        assign_state_dict(m, sd)
    wrong = RVRT(**dict(TINY_A, embed_dims=[12] * 3))
    with pytest.raises(CheckpointError, match='shapes differ'):
        load_rvrt_weights(wrong, CKPT, spynet=SPYNET)


def test_spynet_release_loads_into_model(model):
    m = RVRT(**TINY_A)
    assert load_rvrt_spynet(m, SPYNET) == 60
    for a, b in zip(m.spynet.weights, model.spynet.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_light_options_build_without_spynet():
    light = RVRT(**dict(TINY_A, attention='local', relative_position_bias=False,
                        approximate_gelu=True, norm_eps=1e-7))
    assert not hasattr(light, 'spynet') and light.spynet_variables() == []
    keys = list(torch_state_variables(light))
    assert not [k for k in keys if 'relative_position' in k or 'conv_offset' in k
                or k.startswith('spynet.')]
    assert 'deform_align.forward_2.mlp.1.fc2.weight' in keys
    assert light.feat_extract._norm_in.eps == 1e-7
    x = np.random.default_rng(2).random((1, 4, 12, 16, 3), dtype=np.float32)  # no SpyNet limit
    assert light(tf.constant(x)).shape == (1, 4, 48, 64, 3)
    with pytest.raises(ValueError, match='clip_size=3'):
        RVRT(**dict(TINY_A, clip_size=3, num_frame=6))
    three = RVRT(**dict(TINY_A, attention='local', clip_size=3, num_frame=6))
    assert three(tf.constant(np.concatenate([x, x[:, :2]], 1))).shape == (1, 6, 48, 64, 3)


# ---------------------------------------------------------------------- the task
def _cfg(*opts):
    from ascendvsr.config import load_config
    return load_config(None, ['model.name=RVRT', *opts])


def test_training_phases_freeze_then_slow_spynet():
    from ascendvsr.tasks.rvrt import RVRTTask
    m = RVRT(**dict(TINY_A, embed_dims=[8] * 3))
    task = RVRTTask(_cfg('solver.total_steps=10', 'rvrt.fix_iter=5', 'rvrt.fix_lr_mul=0.25'))
    frozen, slow = task.training_phases(m)
    spy = {id(v) for v in m.spynet.trainable_variables}
    assert frozen.until == 4 and slow.until == 10  # KAIR: frozen while step < fix_iter
    first = frozen.trainable(m)
    assert not spy & {id(v) for v in first} and len(first) == len(m.trainable_variables) - 60
    assert slow.trainable is None
    (name, select, mul), = slow.lr_multipliers
    assert name == 'spynet' and mul == 0.25 and {id(v) for v in select(m)} == spy
    # one clip per sample: neither SpyNet nor the alignment is reached
    one = RVRT(**dict(TINY_A, embed_dims=[8] * 3, num_frame=2))
    (only,) = task.training_phases(one)
    align = {id(v) for p in one.deform_align.values() for v in p.trainable_variables}
    used = {id(v) for v in only.trainable(one)}
    assert not used & align and not used & {id(v) for v in one.spynet.trainable_variables}


def test_clip_samples_and_mirrored_sequences(tmp_path):
    from ascendcv.dataloader.reds import RedsDataset, write_toy_reds
    from ascendvsr.tasks.rvrt import load_clip_sample
    write_toy_reds(str(tmp_path), num_clips=1, num_frames=8, lr_size=(12, 16))
    ds = RedsDataset(str(tmp_path), 'train', scale=4)
    lr, gt = load_clip_sample(ds, 3, 0, 4, 8, use_flip=False, use_rot=False)
    assert lr.shape == (4, 8, 8, 3) and gt.shape == (4, 32, 32, 3)  # every GT frame
    again = load_clip_sample(ds, 3, 0, 4, 8, use_flip=False, use_rot=False)
    np.testing.assert_array_equal(again[0], lr)  # a pure function of (seed, index)
    lr_m, gt_m = load_clip_sample(ds, 3, 0, 4, 8, use_flip=False, use_rot=False, mirror=True)
    np.testing.assert_array_equal(lr_m[2:], lr_m[:2][::-1])
    np.testing.assert_array_equal(gt_m[2:], gt_m[:2][::-1])


def test_mirror_extended_test_protocol():
    """Vimeo-90K: 7 frames -> 14 (the clip and its reverse); frame i = mean(out[i],
    out[13 - i]), the official (out[3] + out[10]) / 2 for the centre frame."""
    from ascendvsr.tasks.rvrt import MirrorExtended
    frames = np.random.default_rng(0).random((7, 4, 4, 3), dtype=np.float32)
    seen = []

    def predict(x):  # stands for a model: output frame k = input frame k + k
        seen.append(x.shape)
        return x + np.arange(x.shape[1], dtype=np.float32)[None, :, None, None, None]
    restored, _ = MirrorExtended(14, 0, 2).restore(predict, frames, [3])
    assert seen == [(1, 14, 4, 4, 3)]
    np.testing.assert_allclose(restored[0], frames[3] + (3 + 10) / 2, atol=1e-6)
