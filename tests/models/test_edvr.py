"""EDVR parity with BasicSR (fixtures made by the official code) and its input checks."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from ascendcv.utils.torch_checkpoint import CheckpointError, load_state_dict
from ascendvsr.convert.edvr import (infer_edvr_arch, is_original_edvr, load_edvr_weights,
                                    original_to_basicsr)
from ascendvsr.models.edvr import EDVR

FIX = os.path.join(os.path.dirname(os.path.dirname(__file__)), 'fixtures')
SHARED = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                      '..', 'shared', 'fixtures')


def fixture(name):
    return os.path.join(FIX, name)


def tiny_model(tag, **kw):
    with open(fixture(f'edvr_tiny_{tag}_meta.json')) as f:
        return EDVR(**json.load(f)['config'], **kw)


def nhwc(x):  # (b, t, c, h, w) -> (b, t, h, w, c)
    return tf.constant(x.transpose(0, 1, 3, 4, 2))


def to_nchw(y):
    y = y.numpy()
    return y.transpose(0, 3, 1, 2) if y.ndim == 4 else y.transpose(0, 1, 4, 2, 3)


@pytest.mark.parametrize('tag,ckpt,jit', [
    ('a', 'edvr_tiny_a_ckpt.pth', False),
    ('a', 'edvr_tiny_a_ckpt.pth', True),
    ('a', 'edvr_tiny_a_params_legacy_cuda.pth', False),
    ('b', 'edvr_tiny_b_ckpt.pth', False),
    ('c', 'edvr_tiny_c_ckpt.pth', False),
    ('c', 'edvr_tiny_c_ckpt.pth', True),
])
def test_tiny_parity_with_basicsr(tag, ckpt, jit):
    model = tiny_model(tag, jit_compile=jit)
    load_edvr_weights(model, fixture(ckpt))
    io = np.load(fixture(f'edvr_tiny_{tag}_io.npz'))
    out = model.forward_features(nhwc(io['input']))
    assert np.abs(to_nchw(out['aligned']) - io['aligned']).max() <= 1e-6
    assert np.abs(to_nchw(out['output']) - io['output']).max() <= 2e-6
    assert np.abs(to_nchw(out['base']) - io['base']).max() <= 1e-6
    assert np.abs(to_nchw(out['fusion']) - io['fusion']).max() <= 1e-5


def test_tiny_c_params_vs_params_ema():
    """params_ema holds the inference weights; params (another init) gives output_params."""
    io = np.load(fixture('edvr_tiny_c_io.npz'))
    x = nhwc(io['input'])
    ema = tiny_model('c')
    load_edvr_weights(ema, fixture('edvr_tiny_c_ckpt.pth'))
    plain = tiny_model('c')
    load_edvr_weights(plain, fixture('edvr_tiny_c_ckpt.pth'), key='params')
    assert np.abs(to_nchw(ema(x)) - io['output']).max() <= 2e-6
    assert np.abs(to_nchw(plain(x)) - io['output_params']).max() <= 2e-6
    assert np.abs(io['output'] - io['output_params']).max() > 1e-3


def test_dcn_offsets_matter():
    """Guard against a parity test that passes with broken alignment: zeroing the offset
    predictors must move `aligned` far outside the tolerance."""
    model = tiny_model('a')
    load_edvr_weights(model, fixture('edvr_tiny_a_ckpt.pth'))
    io = np.load(fixture('edvr_tiny_a_io.npz'))
    for dcn in [model.pcd_align.cas_dcnpack] + list(model.pcd_align.dcn_pack.values()):
        dcn.conv_offset.kernel.assign(tf.zeros_like(dcn.conv_offset.kernel))
    aligned = to_nchw(model.forward_features(nhwc(io['input']))['aligned'])
    assert np.abs(aligned - io['aligned']).max() > 1e-2


# --- original EDVR (xinntao/EDVR) naming -------------------------------------------------------
def basicsr_to_original(sd, hr_in):
    """Independent inverse of the rename rules, written out by hand for the test."""
    import re
    out = {}
    for k, v in sd.items():
        o = k
        o = re.sub(r'^predeblur\.conv_first\.', 'pre_deblur.conv_first_1.' if hr_in else 'pre_deblur.conv_first.', o)
        o = o.replace('predeblur.stride_conv_hr1.', 'pre_deblur.conv_first_2.')
        o = o.replace('predeblur.stride_conv_hr2.', 'pre_deblur.conv_first_3.')
        o = o.replace('predeblur.stride_conv_l2.', 'pre_deblur.deblur_L2_conv.')
        o = o.replace('predeblur.stride_conv_l3.', 'pre_deblur.deblur_L3_conv.')
        o = o.replace('predeblur.resblock_l3.', 'pre_deblur.RB_L3_1.')
        o = re.sub(r'^predeblur\.resblock_l2_(\d)\.', r'pre_deblur.RB_L2_\1.', o)
        o = re.sub(r'^predeblur\.resblock_l1\.(\d)\.', lambda m: f'pre_deblur.RB_L1_{int(m.group(1)) + 1}.', o)
        o = re.sub(r'^conv_l([23])_(\d)\.', r'fea_L\1_conv\2.', o)
        o = re.sub(r'^pcd_align\.dcn_pack\.l(\d)\.conv_offset\.', r'pcd_align.L\1_dcnpack.conv_offset_mask.', o)
        o = re.sub(r'^pcd_align\.dcn_pack\.l(\d)\.', r'pcd_align.L\1_dcnpack.', o)
        o = re.sub(r'^pcd_align\.offset_conv(\d)\.l(\d)\.', r'pcd_align.L\2_offset_conv\1.', o)
        o = re.sub(r'^pcd_align\.feat_conv\.l(\d)\.', r'pcd_align.L\1_fea_conv.', o)
        o = o.replace('pcd_align.cas_dcnpack.conv_offset.', 'pcd_align.cas_dcnpack.conv_offset_mask.')
        o = o.replace('fusion.temporal_attn1.', 'tsa_fusion.tAtt_2.')
        o = o.replace('fusion.temporal_attn2.', 'tsa_fusion.tAtt_1.')
        o = o.replace('fusion.feat_fusion.', 'tsa_fusion.fea_fusion.')
        o = re.sub(r'^fusion\.spatial_attn_add(\d)\.', r'tsa_fusion.sAtt_add_\1.', o)
        o = re.sub(r'^fusion\.spatial_attn_l(\d)\.', r'tsa_fusion.sAtt_L\1.', o)
        o = re.sub(r'^fusion\.spatial_attn(\d)\.', r'tsa_fusion.sAtt_\1.', o)
        o = re.sub(r'^fusion\.', 'tsa_fusion.', o)
        o = o.replace('reconstruction.', 'recon_trunk.').replace('conv_hr.', 'HRconv.')
        out[o] = v
    return out


@pytest.mark.parametrize('tag', ['a', 'b', 'c'])
def test_original_edvr_names_round_trip(tag):
    sd = load_state_dict(fixture(f'edvr_tiny_{tag}_ckpt.pth'))
    hr_in = tag == 'c'
    orig = basicsr_to_original(sd, hr_in)
    assert is_original_edvr(orig) and not is_original_edvr(sd)
    assert any(k.startswith('pcd_align.L3_dcnpack.conv_offset_mask') for k in orig)
    back = original_to_basicsr(orig)
    assert set(back) == set(sd)
    for k in sd:
        np.testing.assert_array_equal(back[k], sd[k])


def test_infer_arch_from_checkpoint():
    arch = infer_edvr_arch(load_state_dict(fixture('edvr_tiny_c_ckpt.pth')))
    assert arch == dict(num_out_ch=3, num_feat=16, num_in_ch=3, num_extract_block=1,
                        num_reconstruct_block=2, with_predeblur=True, hr_in=True, with_tsa=True,
                        deformable_groups=2, num_frame=5)


# --- bad input ----------------------------------------------------------------------------------
def test_wrong_rank_and_frame_count_and_size():
    model = tiny_model('a')
    with pytest.raises(ValueError, match='rank 5'):
        model(tf.zeros([1, 16, 20, 3]))
    with pytest.raises(ValueError, match='num_frame=5.*has 3'):
        model(tf.zeros([1, 3, 16, 20, 3]))
    with pytest.raises(ValueError, match='height must be a multiple of 4'):
        model(tf.zeros([1, 5, 18, 20, 3]))
    with pytest.raises(ValueError, match='3 channels'):
        model(tf.zeros([1, 5, 16, 20, 1]))


def test_checkpoint_of_another_model_is_rejected():
    with pytest.raises(CheckpointError, match='not an EDVR checkpoint'):
        load_edvr_weights(tiny_model('a'), fixture('revsci_g2b2_model.pth'))
    with pytest.raises(CheckpointError, match='nerv_tiny_state_dict.pth is not an EDVR'):
        load_edvr_weights(tiny_model('a'), fixture('nerv_tiny_state_dict.pth'))


def test_checkpoint_with_other_hyperparameters_is_rejected():
    with pytest.raises(CheckpointError, match='with_predeblur: checkpoint True vs model False'):
        load_edvr_weights(tiny_model('a'), fixture('edvr_tiny_c_ckpt.pth'))
    with pytest.raises(CheckpointError, match='with_tsa: checkpoint False vs model True'):
        load_edvr_weights(tiny_model('a'), fixture('edvr_tiny_b_ckpt.pth'))


def test_truncated_and_non_pth_files(tmp_path):
    data = open(fixture('edvr_tiny_a_ckpt.pth'), 'rb').read()
    cut = tmp_path / 'cut.pth'
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match='cut.pth'):
        load_edvr_weights(tiny_model('a'), str(cut))
    npz = tmp_path / 'weights.npz'
    np.savez(npz, a=np.zeros(3))
    with pytest.raises(CheckpointError, match='not a PyTorch checkpoint'):
        load_edvr_weights(tiny_model('a'), str(npz))


def test_missing_and_unexpected_keys_are_listed(tmp_path):
    from ascendvsr.convert.common import assign_state_dict
    sd = dict(load_state_dict(fixture('edvr_tiny_a_ckpt.pth')))
    sd.pop('conv_last.bias')
    sd['extra.weight'] = np.zeros(1)
    with pytest.raises(CheckpointError, match=r'missing keys \(1\): conv_last.bias.*unexpected keys \(1\): extra.weight'):
        assign_state_dict(tiny_model('a'), sd)


def test_npu_impl_without_npu_stack():
    try:
        import npu_bridge  # noqa: F401
        pytest.skip('npu_bridge is importable here')
    except ImportError:
        pass
    with pytest.raises(RuntimeError, match='npu_bridge'):
        tiny_model('a', impl='npu')


def test_hr_in_without_predeblur_is_rejected():
    with pytest.raises(ValueError, match='hr_in=True needs with_predeblur'):
        EDVR(num_feat=16, hr_in=True, with_predeblur=False)


def test_round_trip_to_torch_names():
    from ascendcv.layers.torch_compat import torch_state_dict
    model = tiny_model('a')
    load_edvr_weights(model, fixture('edvr_tiny_a_ckpt.pth'))
    ours = torch_state_dict(model)
    ref = load_state_dict(fixture('edvr_tiny_a_ckpt.pth'))
    assert list(ours) == list(ref)  # same keys, same order as BasicSR's state_dict()
    for k in ref:
        np.testing.assert_array_equal(ours[k], ref[k])


@pytest.mark.skipif(not os.path.isdir(SHARED), reason='../shared/fixtures not present')
def test_edvr_m_full_parity():
    model = EDVR()  # EDVR-M defaults
    load_edvr_weights(model, os.path.join(SHARED, 'edvr_m_state_dict.pth'))
    io = np.load(os.path.join(SHARED, 'edvr_m_io.npz'))
    out = model.forward_features(nhwc(io['input']))
    assert np.abs(to_nchw(out['output']) - io['output']).max() <= 1e-5
    aligned, ref = to_nchw(out['aligned']), io['aligned']
    assert np.linalg.norm(aligned - ref) / np.linalg.norm(ref) <= 1e-4
    assert sum(int(np.prod(v.shape)) for v in model.weights) == 3300131
