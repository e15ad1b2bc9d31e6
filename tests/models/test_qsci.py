"""Q-SCI (ascendvsr.models.qsci) against the official mcao92/QuantizedSCI code.

Fixtures (tests/fixtures/qsci_tiny_<tag>_*, subsets of ../shared/fixtures by
tools/fixtures/qsci_subset.py; README_sci.md there): quantized_sci(in_ch=16, units=2,
group_num=2) with the official LSQ initialisation (b8, b4) and a perturbed b4 (per-channel
alphas, non-integer zero points, moveq/movek shifts). Float32 rounding flips cascade through the
quantizers (up to 26 % rel-L2 end to end), so end-to-end parity is checked in float64 (the
official model.double() output) and float32 on teacher-forced layer pairs.
"""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from ascendcv.layers.fake_quant import (ActQ, QuantizerNotInitializedError, quant_range,
                                        quantizers_of)
from ascendcv.layers.torch_compat import torch_state_variables
from ascendcv.utils.torch_checkpoint import CheckpointError, load_state_dict
from ascendvsr.convert.qsci import (assign_qsci_state, init_qsci_from_float, load_qsci_weights)
from ascendvsr.models.efficientsci import EfficientSCI
from ascendvsr.models.qsci import PARALLEL, QSCI

FIX = os.path.join(os.path.dirname(os.path.dirname(__file__)), 'fixtures')
TAGS = {'b8': 8, 'b4': 4, 'b4_pert': 4}


def _ckpt(tag):
    return os.path.join(FIX, f'qsci_tiny_{tag}_ckpt.pth')


def _ref(tag):
    return np.load(os.path.join(FIX, f'qsci_tiny_{tag}_ref.npz'))


def _build(bits, dtype='float32', **kw):
    return QSCI(kw.pop('in_ch', 16), kw.pop('units', 2), kw.pop('group_num', 2),
                bit_depth=bits, name='QSCI', dtype=dtype, **kw)


def _inputs(ref, dtype, key='y'):
    y, phi, phi_s = (ref[k].astype(dtype) for k in (key, 'Phi', 'Phi_s'))
    return tf.constant(y / phi_s), tf.constant(np.transpose(phi[0], (1, 2, 0)))


def _frames_first(out):
    return np.transpose(np.asarray(out), (0, 3, 1, 2))


def _rel(a, b):
    return float(np.linalg.norm(np.asarray(a) - b) / np.linalg.norm(b))


def _ncdhw(x):
    return np.transpose(np.asarray(x), (0, 4, 1, 2, 3))


@pytest.fixture(scope='module')
def f64_models():
    out = {}
    for tag, bits in TAGS.items():
        model = _build(bits, 'float64')
        load_qsci_weights(model, _ckpt(tag))
        out[tag] = model
    return out


# ------------------------------------------------------------------ float64 end to end

@pytest.mark.parametrize('tag', list(TAGS))
def test_float64_output_and_intermediates(tag, f64_models):
    model, ref = f64_models[tag], _ref(tag)
    rec = model.forward_features(_inputs(ref, 'float64'))
    assert rec['output'].dtype == tf.float64
    assert _rel(_frames_first(rec['output']), ref['out_f64']) <= 1e-12
    for key in ('fem_out', 'unit0_out', 'unit1_out'):
        ours = _ncdhw(rec[key])[..., ::4, ::4]
        assert _rel(ours, ref[f'{key}_f64_s4']) <= 1e-8, key


@pytest.mark.parametrize('tag', ['b8', 'b4_pert'])
def test_quantization_off_output(tag, f64_models):
    """Every quantizer disabled (official alpha=None path), moveq/movek kept."""
    model, ref = f64_models[tag], _ref(tag)
    model.set_quantize(False)
    try:
        out = _frames_first(model(_inputs(ref, 'float64')))
    finally:
        model.set_quantize(True)
    assert _rel(out, ref['out_quant_off']) <= 2e-5  # reference computed in float32
    assert _rel(out, ref['out_f64']) > 0.1          # and far from the quantized output


# ------------------------------------------------------------------ float32

def test_float32_teacher_forced_layer_pairs():
    """b4_pert unit 0, CFormer group 0: spatial branch, quantized q/k/v (after moveq/movek and
    their ActQ), quantized attention probabilities, attention output, block output."""
    model = _build(4)
    load_qsci_weights(model, _ckpt('b4_pert'))
    lay = np.load(os.path.join(FIX, 'qsci_tiny_b4_pert_layers.npz'))
    block = model.resdnet_list[0].cformer_list[0]
    x = tf.constant(np.transpose(lay['u0_cf0_in'], (0, 2, 3, 4, 1)))
    parts = block.branches(x)

    def close(ours, ref):
        ours = np.asarray(ours)
        # rare 1-LSB flips allowed (float32 rounding boundaries), at most 0.1 % of elements
        err = np.abs(ours - ref) > 1e-5 * np.abs(ref).max()
        assert err.mean() <= 1e-3, err.mean()
        assert _rel(ours, ref) <= 1e-3

    close(_ncdhw(parts['scb_out'])[..., ::2, ::2], lay['u0_cf0_scb_out_s2'])
    close(_ncdhw(parts['out'])[..., ::2, ::2], lay['u0_cf0_out_s2'])
    # attention on the recorded tokens (every 4th pixel: a 16 x 4 grid, tokens (b h w) d c)
    tsab = block.tsab
    tokens = lay['u0_cf0_tsab_in_t4']                       # (64, 8, 32)
    fmap = tf.constant(np.transpose(tokens.reshape(16, 4, 8, 32), (2, 0, 1, 3))[None])
    seen = {}
    qkv_hook, attn_hook = tsab.transform_qkv, tsab.transform_attn
    tsab.transform_qkv = lambda q, k, v: seen.setdefault('qkv', qkv_hook(q, k, v))
    tsab.transform_attn = lambda a: seen.setdefault('attn', attn_hook(a))
    try:
        out, _ = tsab.attend(fmap)
    finally:
        del tsab.transform_qkv, tsab.transform_attn
    for name, ours in zip('qkv', seen['qkv']):
        close(ours, lay[f'u0_cf0_{name}_quant_t4'])
    close(seen['attn'], lay['u0_cf0_attn_quant_t4'])
    close(np.transpose(out.numpy()[0], (1, 2, 0, 3)).reshape(64, 8, 32), lay['u0_cf0_tsab_out_t4'])


def test_float32_end_to_end_smoke():
    model = _build(4)
    load_qsci_weights(model, _ckpt('b4_pert'))
    ref = _ref('b4_pert')
    out = _frames_first(model(_inputs(ref, 'float32')))
    assert np.isfinite(out).all()
    assert _rel(out, ref['out']) <= 0.3  # float32 flips cascade (README_sci.md: to 26 %): smoke


@pytest.mark.parametrize('tag,rtol', [('b4', 2e-5), ('b8', 5e-3)])
def test_calibration_is_the_official_first_iteration(tag, rtol):
    """Reset every quantizer, calibrate on the fixture's calibration measurement (one eager
    training-mode forward): the step sizes, zero points and signs of the official checkpoint.
    (b8: float32 rounding flips in the ResDNet shift the statistics seen by the head's
    quantizers by up to 0.3 %; b4 agrees to 5e-6 everywhere.)"""
    sd = load_state_dict(_ckpt(tag), key='model_state_dict')
    model = _build(TAGS[tag])
    fresh = dict(sd)
    for key in sd:  # as constructed: init_state 0, zero points 0 (alphas are then overwritten)
        if key.endswith(('init_state', 'zero_point', 'signed')):
            fresh[key] = np.zeros_like(sd[key])
    assign_qsci_state(model, fresh)
    assert len(model.uninitialized_quantizers()) == len(model.quantizers())
    with pytest.raises(QuantizerNotInitializedError, match='never initialised'):
        model(_inputs(_ref(tag), 'float32'))
    n = model.calibrate(_inputs(_ref(tag), 'float32', key='calib_y'))
    assert n == len(model.quantizers()) and not model.uninitialized_quantizers()
    for key, (var, _) in torch_state_variables(model).items():
        if key.endswith(('alpha', 'zero_point', 'signed', 'init_state')):
            np.testing.assert_allclose(var.numpy(), sd[key], rtol=rtol, atol=1e-6, err_msg=key)
    assert model.calibrate(_inputs(_ref(tag), 'float32')) == 0  # idempotent


# ------------------------------------------------------------------ official rules, other configs

@pytest.mark.parametrize('bits', [8, 3])
def test_module_tree_and_bit_widths_follow_the_official_rules(bits):
    """group_num 4 (no fixture): Q-SCI b8 = the EfficientSCI tree plus quantizer entries; the
    low-bit tree's *_2 branches are 8-bit, everything else (attention included) bit_depth."""
    model = _build(bits, in_ch=8, units=1, group_num=4)
    keys = set(torch_state_variables(model))
    qkeys = {k for k in keys if k.endswith(('alpha', 'zero_point', 'init_state', 'signed'))
             or '.moveq.' in k or '.movek.' in k}
    float_keys = set(torch_state_variables(EfficientSCI(8, 1, 4, name='EfficientSCI')))
    if bits == 8:
        assert keys - qkeys == float_keys
    else:
        assert {k for k in float_keys if not k.startswith(('fem.', 'vrm.'))} <= keys
        assert {k.split('.')[0] for k in keys - float_keys} >= set(PARALLEL)
    assert 'resdnet_list.0.cformer_list.3.tsab.attn_act.alpha' in keys
    assert 'resdnet_list.0.dense_conv.2.0.act.signed' in keys
    for name, q in {getattr(q, 'torch_name'): q for q in quantizers_of(model)}.items():
        eight = bits == 8 or name.split('.')[0].endswith('_2')
        assert q.nbits == (8 if eight else bits), name
    att = model.resdnet_list[0].cformer_list[0].tsab.attn_act
    assert isinstance(att, ActQ) and quant_range(att.nbits, False) == (0, 2 ** bits - 1)


def test_parameter_counts_of_the_s_size():
    """quantized_sci(32, 8, 2): the official parameter counts at 8 and 4 (= 3 = 2) bits."""
    with open(os.path.join(FIX, 'qsci_params_timing.json')) as f:
        official = json.load(f)['param_counts']
    for bits in (8, 2):
        model = _build(bits, in_ch=32, units=8, group_num=2)
        n = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
        assert n == official[f'b{bits}']['params_all'], bits


def test_odd_sizes_and_frame_counts_are_refused(f64_models):
    model = f64_models['b8']
    with pytest.raises(ValueError, match='even'):
        model((tf.zeros((1, 31, 32), tf.float64), tf.zeros((31, 32, 8), tf.float64)))
    with pytest.raises(ValueError, match='frames'):
        model((tf.zeros((1, 32, 32), tf.float64), tf.zeros((32, 32, 6), tf.float64)))


# ------------------------------------------------------------------ checkpoints

def test_checkpoint_of_another_bit_depth_or_size_is_refused():
    with pytest.raises(CheckpointError, match=r'low-bit .* qsci\.bit_depth=8'):
        load_qsci_weights(_build(8), _ckpt('b4'))
    with pytest.raises(CheckpointError, match=r'8-bit Q-SCI.*qsci\.bit_depth=4'):
        load_qsci_weights(_build(4), _ckpt('b8'))
    with pytest.raises(CheckpointError, match='in_ch: checkpoint 16 vs model 8'):
        load_qsci_weights(_build(4, in_ch=8), _ckpt('b4'))
    with pytest.raises(CheckpointError, match='full-precision EfficientSCI.*qsci.init_from'):
        load_qsci_weights(_build(8), os.path.join(FIX, 'esci_tiny_state_dict.pth'))


@pytest.mark.parametrize('bits', [8, 4])
def test_qat_starts_from_full_precision_efficientsci(bits):
    """The official non-strict load (tools/train.py load_checkpoints) of a full-precision
    EfficientSCI: b8 takes every weight; b < 8 the ResDNet and up_conv, not fem.*/vrm.*."""
    path = os.path.join(FIX, 'esci_tiny_state_dict.pth')
    sd = load_state_dict(path)
    model = _build(bits)
    before = {k: v.numpy().copy() for k, (v, _) in torch_state_variables(model).items()}
    report = init_qsci_from_float(model, path)
    targets = torch_state_variables(model)
    for key in report['loaded']:
        var, to_tf = targets[key]
        np.testing.assert_array_equal(var.numpy(), to_tf(sd[key]))
    for key in report['kept']:
        np.testing.assert_array_equal(targets[key][0].numpy(), before[key])
    kept_modules = {k.split('.')[0] for k in report['kept']
                    if not k.endswith(('alpha', 'zero_point', 'init_state', 'signed'))
                    and '.move' not in k}
    if bits == 8:
        assert not report['unused'] and not kept_modules
    else:
        assert {k.split('.')[0] for k in report['unused']} == {'fem', 'vrm'}
        assert kept_modules == set(PARALLEL)
    assert len(model.uninitialized_quantizers()) == len(model.quantizers())
    with pytest.raises(CheckpointError, match='in_ch'):
        init_qsci_from_float(_build(bits, in_ch=8), path)


def test_qat_start_from_our_efficientsci_checkpoint(tmp_path):
    """qsci.init_from may be a TF checkpoint of our EfficientSCI (e.g. the small CPU run)."""
    from ascendcv.runner.checkpoint import save_checkpoint
    from ascendvsr.convert.efficientsci import load_efficientsci_weights
    path = os.path.join(FIX, 'esci_tiny_state_dict.pth')
    float_model = EfficientSCI(16, 2, 2, name='EfficientSCI')
    load_efficientsci_weights(float_model, path)
    prefix = save_checkpoint(float_model, str(tmp_path / 'esci' / 'ckpt-1'))
    a, b = _build(4), _build(4)
    init_qsci_from_float(a, path)
    report = init_qsci_from_float(b, prefix)
    assert report['loaded'] and {k.split('.')[0] for k in report['unused']} == {'fem', 'vrm'}
    for key in report['loaded']:
        np.testing.assert_array_equal(torch_state_variables(a)[key][0].numpy(),
                                      torch_state_variables(b)[key][0].numpy())
    with pytest.raises(CheckpointError, match='not a TF checkpoint of an EfficientSCI'):
        init_qsci_from_float(_build(4, in_ch=8), prefix)


# ------------------------------------------------------------------ compute report

def test_compute_report_reproduces_the_paper_speedup():
    """tools/sci_compute.py: 4-bit EfficientSCI-S -> 7.8x (32 x MACs(EfficientSCI-S) over the
    bit-weighted MACs). Every count scales with H x W, so a 32 x 32 trace gives the 256 x 256
    ratios and 1/64 of its MACs (EfficientSCI-S: 563.41 GMACs at 256 x 256 x 8)."""
    import importlib.util
    from ascendvsr.config import load_config
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    spec = importlib.util.spec_from_file_location('_sci_compute',
                                                  os.path.join(root, 'tools', 'sci_compute.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    rep = tool.compute_report(load_config(os.path.join(root, 'configs', 'qsci_b4.yaml'), []),
                              size=(32, 32))
    assert rep['fp_macs'] * 64 == 563412467712
    assert round(rep['speedup'], 1) == 7.8
    assert rep['params'] == 3845128 and rep['params_weights_biases'] == 3818370
    assert set(rep['macs_by_bits']) == {'4', '8'}


def test_task_refuses_an_uncalibrated_model_and_calibrates_when_training_starts():
    from ascendvsr.config import load_config
    from ascendvsr.zoo import get_entry
    entry = get_entry('Q-SCI')
    cfg = load_config(None, ['model.name=Q-SCI', *entry.tiny])
    task, model = entry.make_task(cfg), entry.build(cfg)
    with pytest.raises(QuantizerNotInitializedError, match='never initialised'):
        task.predict_fn(model)
    (phase,) = task.training_phases(model)
    assert phase.until == cfg.solver.total_steps and phase.on_start == task.start_qat
    model.set_quantize(False)  # the quantization-off network needs no calibration
    assert task.predict_fn(model) is not None


def test_pixel_unshuffle_is_pytorch_order():
    """nn.PixelUnshuffle(2) (the low-bit FEM's fem_down): out[h, w, c*4 + i*2 + j] =
    in[2h + i, 2w + j, c] -- not TF's space_to_depth order -- and pixel_shuffle inverts it."""
    from ascendcv.layers.sampling import pixel_shuffle, pixel_unshuffle
    x = np.arange(2 * 4 * 6 * 3, dtype=np.float32).reshape(2, 4, 6, 3)
    out = pixel_unshuffle(tf.constant(x), 2).numpy()
    ref = x.reshape(2, 2, 2, 3, 2, 3).transpose(0, 1, 3, 5, 2, 4).reshape(2, 2, 3, 12)
    np.testing.assert_array_equal(out, ref)
    assert out[1, 1, 2, 2 * 4 + 1 * 2 + 0] == x[1, 3, 4, 2]
    np.testing.assert_array_equal(pixel_shuffle(tf.constant(out), 2).numpy(), x)
