"""RVRT Light against mindediting's MindSpore RVRT_LIGHT (fixtures of
../shared/fixtures/README_rvrt_light.md: ``rvrt_light_tiny_a.ckpt`` written by
``mindspore.save_checkpoint``, ``rvrt_light_tiny_a_io.npz`` its PyNative forward), read through our
MindSpore checkpoint reader; and the MindSpore -> PyTorch name rules on the full RVRT."""
import os
import re
from collections import OrderedDict

import numpy as np
import pytest

from ascendcv.layers.torch_compat import torch_state_dict
from ascendcv.utils.mindspore_checkpoint import load_mindspore_checkpoint, save_mindspore_checkpoint
from ascendcv.utils.torch_checkpoint import CheckpointError, load_state_dict
from ascendvsr.config import load_config
from ascendvsr.convert.rvrt_light import (checkpoint_kind, load_rvrt_light_weights,
                                          load_rvrt_mindspore_weights, mindspore_to_torch_names)
from ascendvsr.zoo import get_entry

FIX = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'fixtures')
CKPT = os.path.join(FIX, 'rvrt_light_tiny_a.ckpt')
IO = os.path.join(FIX, 'rvrt_light_tiny_a_io.npz')
RVRT_PTH = os.path.join(FIX, 'rvrt_tiny_a_ckpt.pth')          # official PyTorch RVRT (no SpyNet)
SPYNET_PTH = os.path.join(FIX, 'rvrt_spynet_random_params.pth')
EDVR_PTH = os.path.join(FIX, 'edvr_tiny_a_ckpt.pth')

# variant a of the fixture README
TINY_A = ['rvrt_light.num_frame=4', 'rvrt_light.window_size=[2,4,4]',
          'rvrt_light.num_blocks=[1,1,1]', 'rvrt_light.depths=[2,2,2]',
          'rvrt_light.embed_dims=[24,24,24]', 'rvrt_light.num_heads=[2,2,2]',
          'rvrt_light.attention_heads=2']
STAGES = ('backward_1', 'forward_1', 'backward_2', 'forward_2')


def _build(*opts):
    entry = get_entry('RVRT-Light')
    return entry, entry.build(load_config(None, ['model.name=RVRT-Light', *TINY_A, *opts]))


@pytest.fixture(scope='module')
def model():
    entry, m = _build()
    entry.load_official(m, CKPT)  # the registered converter
    return m


@pytest.fixture(scope='module')
def ref():
    return dict(np.load(IO))


@pytest.fixture(scope='module')
def run_a(model, ref):
    out = model.forward_features(ref['input'].transpose(0, 1, 3, 4, 2))  # (n,t,c,h,w) -> NTHWC
    return {k: np.asarray(v).transpose(0, 1, 4, 2, 3) for k, v in out.items() if v is not None}


def test_variant_a_matches_mindediting(run_a, ref):
    assert run_a['output'].shape == ref['output'].shape == (1, 4, 3, 144, 160)
    diffs = {'output': np.abs(run_a['output'] - ref['output']).max(),
             'feat_extract': np.abs(run_a['shallow'] - ref['feat_extract']).max()}
    for s in STAGES:
        diffs[s] = np.abs(run_a[s] - ref['stage_' + s]).max()
    assert all(d <= 1e-5 for d in diffs.values()), diffs


def test_light_model_structure(model):
    assert model.attention == 'local' and not hasattr(model, 'spynet')
    assert model.spynet_variables() == []
    # every trainable weight of the MindSpore net, nothing more (the README: 526 219)
    sizes = [v.size for v in load_mindspore_checkpoint(CKPT).values()]
    assert model.num_parameters() == sum(sizes) == 526219
    with pytest.raises(ValueError, match="attention='local'"):
        get_entry('RVRT-Light').build(load_config(None, ['model.name=RVRT-Light', *TINY_A]),
                                      attention='guided')


def test_convert_mode_writes_a_tf_checkpoint(model, tmp_path):
    """``--mode convert convert.source=<.ckpt>``: the MindSpore weights become a TF checkpoint
    that ``model.checkpoint`` restores."""
    from ascendcv.runner.checkpoint import build_and_restore
    from ascendvsr.convert import convert_checkpoint
    entry = get_entry('RVRT-Light')
    cfg = load_config(None, ['model.name=RVRT-Light', *TINY_A, f'output_dir={tmp_path}',
                             f'convert.source={CKPT}'])
    prefix = convert_checkpoint(cfg, entry, logger=lambda msg: None)
    restored, _ = build_and_restore(entry.build, cfg, prefix)
    a, b = torch_state_dict(model), torch_state_dict(restored)
    assert list(a) == list(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_config_file_holds_the_seed_settings():
    cfg = load_config(os.path.join(os.path.dirname(FIX), '..', 'configs', 'rvrt_light.yaml'), [])
    r = cfg.rvrt_light
    assert cfg.model.name == 'RVRT-Light'
    assert (list(r.window_size), list(r.num_blocks), list(r.depths)) == \
        ([2, 8, 8], [1, 2, 1], [2, 2, 2])
    assert (list(r.embed_dims), list(r.num_heads), r.attention_heads, r.clip_size) == \
        ([144] * 3, [6] * 3, 12, 2)
    assert (r.relative_position_bias, r.approximate_gelu, r.norm_eps) == (False, True, 1e-7)
    assert (cfg.solver.lr, cfg.solver.beta2, cfg.solver.eta_min, cfg.solver.loss) == \
        (2e-4, 0.99, 1e-7, 'charbonnier')
    assert cfg.data.dataset_type == 'vimeo90k' and cfg.eval.test_y_channel and r.mirror_sequence


# ------------------------------------------------------------------------------ strict names

def _rewrite(tmp_path, edit, name='edited.ckpt'):
    sd = load_mindspore_checkpoint(CKPT)
    edit(sd)
    return save_mindspore_checkpoint(tmp_path / name, sd)


def test_missing_and_unexpected_names_are_listed(model, tmp_path):
    path = _rewrite(tmp_path, lambda sd: sd.pop('backbone.forward_2.main.3.gamma'))
    with pytest.raises(CheckpointError, match=r'missing keys \(1\): '
                                              r'backbone\.forward_2\.main\.3\.weight'):
        load_rvrt_light_weights(model, path)

    def extra(sd):
        sd['deform_align.backward_1.extra.weight'] = np.zeros(3, np.float32)
    with pytest.raises(CheckpointError, match=r'unexpected keys \(1\): '
                                              r'deform_align\.backward_1\.extra\.weight'):
        load_rvrt_light_weights(model, _rewrite(tmp_path, extra))


def test_other_hyper_parameters_are_shape_errors(tmp_path):
    _, small = _build('rvrt_light.embed_dims=[12,12,12]')
    with pytest.raises(CheckpointError, match=r'tensor shapes differ.*feat_extract\.main\.1\.'
                                              r'weight: checkpoint \(1, 3, 3, 3, 24\)'):
        load_rvrt_light_weights(small, CKPT)


def test_pytorch_rvrt_checkpoint_is_refused(model):
    with pytest.raises(CheckpointError, match=r'rvrt_tiny_a_ckpt\.pth is a PyTorch RVRT '
                                              r'checkpoint.*model is RVRT Light.*model\.name=RVRT'):
        get_entry('RVRT-Light').load_official(model, RVRT_PTH)
    with pytest.raises(CheckpointError, match='holds only a SpyNet'):
        load_rvrt_light_weights(model, SPYNET_PTH)


def test_mindspore_checkpoint_of_another_model_is_refused(model, tmp_path):
    path = save_mindspore_checkpoint(tmp_path / 'edvr.ckpt', load_state_dict(EDVR_PTH))
    with pytest.raises(CheckpointError, match=r'edvr\.ckpt is a MindSpore checkpoint of another '
                                              r'model, not RVRT Light.*first names: conv_first'):
        load_rvrt_light_weights(model, path)
    cut = tmp_path / 'cut.ckpt'
    cut.write_bytes(open(CKPT, 'rb').read()[:100000])
    with pytest.raises(CheckpointError, match=r'cut\.ckpt: not a valid MindSpore checkpoint at '
                                              r'byte offset \d+.*truncated'):
        load_rvrt_light_weights(model, str(cut))


# ------------------------------------------------------------------------------ full RVRT

_LAYER_NORM = re.compile(r'(\.main\.[37]|\.norm[12])\.(weight|bias)$')


def _as_mindediting_rvrt(sd):
    """An official PyTorch RVRT state dict under mindediting's RVRT parameter names: LayerNorm
    gamma / beta, an Int64 relative_position_index and the derived relative_position_bias."""
    out = OrderedDict()
    for k, v in sd.items():
        m = _LAYER_NORM.search(k)
        if m:
            k = k[:m.start(2)] + ('gamma' if m.group(2) == 'weight' else 'beta')
        out[k] = v
        if k.endswith('.relative_position_index'):
            table = sd[k.replace('_index', '_bias_table')]
            n = v.shape[0]
            out[k] = v.astype(np.int64)
            out[k.replace('_index', '_bias')] = table[v.reshape(-1)].reshape(n, n, -1)
    return out


@pytest.fixture(scope='module')
def rvrt_pair():
    from ascendvsr.models.rvrt import RVRT
    kw = dict(window_size=[2, 4, 4], num_blocks=[1, 1, 1], depths=[2, 2, 2],
              embed_dims=[24] * 3, num_heads=[2] * 3, deformable_groups=2, attention_heads=2,
              approximate_gelu=True, norm_eps=1e-7)
    return RVRT(name='ref', **kw), RVRT(name='ms', **kw)


def test_mindediting_rvrt_names_load_like_the_pytorch_release(rvrt_pair, tmp_path):
    from ascendvsr.convert.rvrt import load_rvrt_weights
    ref_model, ms_model = rvrt_pair
    load_rvrt_weights(ref_model, RVRT_PTH, spynet=SPYNET_PTH)
    full = OrderedDict(load_state_dict(RVRT_PTH))
    full.update(('spynet.' + k, v) for k, v in load_state_dict(SPYNET_PTH).items())
    ms = _as_mindediting_rvrt(full)
    assert sum(k.endswith('.gamma') for k in ms) == 6 * (2 + 2 * 2)  # 6 RSTBWithInputConv
    path = save_mindspore_checkpoint(tmp_path / 'rvrt_ms.ckpt', ms)
    assert checkpoint_kind(mindspore_to_torch_names(load_mindspore_checkpoint(path))) == 'rvrt'
    load_rvrt_mindspore_weights(ms_model, path)
    a, b = torch_state_dict(ref_model), torch_state_dict(ms_model)
    assert list(a) == list(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    # the reverse mistakes: each loader names what it was given
    with pytest.raises(CheckpointError, match=r'MindSpore RVRT checkpoint.*model is RVRT Light.*'
                                              r'load_rvrt_mindspore_weights'):
        load_rvrt_light_weights(ms_model, path)
    with pytest.raises(CheckpointError, match=r'MindSpore RVRT Light checkpoint.*model is RVRT;.*'
                                              r'model\.name=RVRT-Light'):
        load_rvrt_mindspore_weights(ms_model, CKPT)
    with pytest.raises(CheckpointError, match='is a PyTorch checkpoint'):
        load_rvrt_mindspore_weights(ms_model, RVRT_PTH)


def test_model_variant_and_numerics_are_checked(rvrt_pair):
    with pytest.raises(CheckpointError, match=r"attention='guided'\) is not RVRT Light"):
        load_rvrt_light_weights(rvrt_pair[0], CKPT)
    _, exact = _build('rvrt_light.approximate_gelu=false', 'rvrt_light.norm_eps=1e-5')
    with pytest.warns(UserWarning, match='tanh GELU and LayerNorm eps 1e-7'):
        load_rvrt_light_weights(exact, CKPT)
