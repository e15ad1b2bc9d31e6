"""EfficientSCI parity with the official ucaswangls/EfficientSCI code (fixtures made by it, see
``../shared/fixtures/README_sci.md``; ``tests/fixtures/esci_<tag>_ref.npz`` keep every 4th channel
of each stored intermediate, ``tools/fixtures/make_esci_test_subset.py``): output and every
intermediate, both checkpoint formats, refused checkpoints, bad inputs, the layer-factory hook,
parameter counts of the paper's sizes."""
import os

import numpy as np
import pytest
import tensorflow as tf

from ascendcv.dataloader.sci import SciDataError
from ascendcv.layers.conv3d import Conv3d
from ascendcv.layers.linear import Linear
from ascendcv.layers.torch_compat import torch_state_dict, torch_state_variables
from ascendcv.utils.torch_checkpoint import CheckpointError
from ascendvsr.config import load_config
from ascendvsr.convert.efficientsci import (assign_efficientsci_state, infer_efficientsci_arch,
                                            load_efficientsci_weights,
                                            read_efficientsci_state_dict)
from ascendvsr.layers.efficientsci_blocks import LayerFactory, TimesAttention3D
from ascendvsr.models.efficientsci import SIZES, EfficientSCI
from ascendvsr.tasks.efficientsci import EfficientSciTask

FIX = os.path.join(os.path.dirname(os.path.dirname(__file__)), 'fixtures')
ROOT = os.path.dirname(os.path.dirname(FIX))
CKPT = {'tiny': 'esci_tiny_state_dict.pth',  # raw state dict
        'tiny_sharp': 'esci_tiny_sharp_ckpt.pth'}  # train.py {'epoch', 'model_state_dict', ...}
TOL = 1e-5


def fixture(name):
    return os.path.join(FIX, name)


def rel(ours, ref):
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    return float(np.linalg.norm(ours - ref) / np.linalg.norm(ref))


def ncdhw(x):  # ours [N, D, H, W, C] -> official (N, C, D, H, W)
    return np.asarray(x).transpose(0, 4, 1, 2, 3)


def tiny(**kw):
    return EfficientSCI(**dict(dict(in_ch=16, units=2, group_num=2), **kw), name='EfficientSCI')


def inputs(ref):
    """The official network inputs as the SCI task gives them: ``meas_re = y / Phi_s``
    ``[N, H, W]`` and the mask ``[H, W, B]``."""
    return ref['y'][:, 0] / ref['Phi_s'][:, 0], ref['mask'].transpose(1, 2, 0)


@pytest.fixture(scope='module', params=['tiny', 'tiny_sharp'])
def case(request):
    tag = request.param
    ref = dict(np.load(fixture(f'esci_{tag}_ref.npz')))
    model = load_efficientsci_weights(tiny(), fixture(CKPT[tag]))
    return tag, ref, model, model.forward_features(inputs(ref))


# ----------------------------------------------------------------------- parity
def test_output_and_every_intermediate(case):
    tag, ref, model, rec = case
    s = int(ref['channel_stride'])
    assert rel(rec['x_in'][..., 0].numpy(), ref['x_in'][:, 0]) == 0
    assert rel(rec['output'].numpy().transpose(0, 3, 1, 2), ref['out']) <= TOL
    errors = {}
    for key in ('fem_out', 'unit0_out', 'unit1_out', 'up_conv_out', 'vrm_in', 'u0_last_conv_out',
                *[f'u0_cf{g}_{p}' for g in range(2) for p in ('in', 'out', 'scb_out')]):
        errors[key] = rel(ncdhw(rec[key])[:, ::s], ref[key])
    for g in range(2):  # tokens (b h w) d c and softmax probabilities (B_, heads, N, N)
        tokens = rec[f'u0_cf{g}_tsab_out'].numpy().transpose(0, 2, 3, 1, 4)
        errors[f'u0_cf{g}_tsab_out'] = rel(tokens.reshape(-1, 8, tokens.shape[-1])[..., ::s],
                                           ref[f'u0_cf{g}_tsab_out'])
        errors[f'u0_cf{g}_attn'] = rel(rec[f'u0_cf{g}_attn'][::s], ref[f'u0_cf{g}_attn'])
    assert max(errors.values()) <= TOL, (tag, errors)
    # the plain call (what training, evaluation and the frozen graph run) is the same graph
    out = model(inputs(ref)).numpy()
    np.testing.assert_allclose(out, rec['output'].numpy(), rtol=0, atol=1e-6)


def test_sharp_fixture_sees_the_attention_scale():
    """The official scale (dim // heads) ** -0.5 is not the head width's: with peaked attention
    (tiny_sharp; tiny's attention is uniform) the latter is far off, so parity would catch it."""
    ref = dict(np.load(fixture('esci_tiny_sharp_ref.npz')))
    model = load_efficientsci_weights(tiny(), fixture(CKPT['tiny_sharp']))
    attn = [b.tsab for u in model.resdnet_list for b in u.cformer_list]
    assert {a.scale for a in attn} == {8 ** -0.5}  # gd = 32, 4 heads: 32 // 4
    try:
        for a in attn:
            a.scale = a.head_dim ** -0.5
        wrong = model(inputs(ref)).numpy().transpose(0, 3, 1, 2)
    finally:
        for a in attn:
            a.scale = 8 ** -0.5
    assert rel(wrong, ref['out']) > 1e-2


def test_float64_factory_runs_in_double():
    """``LayerFactory(dtype='float64')`` builds the same network in double precision (what a
    float64 parity run of a quantized variant needs)."""
    ref = dict(np.load(fixture('esci_tiny_sharp_ref.npz')))
    model = EfficientSCI(16, 2, 2, factory=LayerFactory('float64'), dtype='float64')
    load_efficientsci_weights(model, fixture(CKPT['tiny_sharp']))
    assert {v.dtype for v in model.weights} == {'float64'}
    assert {l.compute_dtype for l in _walk(model)} == {'float64'}  # activations too
    out = model(inputs(ref))
    assert out.dtype == tf.float64
    assert rel(out.numpy().transpose(0, 3, 1, 2), ref['out']) <= TOL
    single = load_efficientsci_weights(tiny(), fixture(CKPT['tiny_sharp']))(inputs(ref))
    assert 0 < rel(single, out) < 1e-5  # another rounding: really computed in double


# ----------------------------------------------------------------------- sizes
def test_published_parameter_counts():
    published = {'T': 0.95, 'S': 3.78, 'B': 8.82, 'L': 12.39}
    exact = {'T': 947457, 'S': 3777025, 'B': 8824321, 'L': 12386561}  # official code's counts
    for size, yaml in zip('TSBL', 'tsbl'):
        cfg = load_config(os.path.join(ROOT, 'configs', f'efficientsci_{yaml}.yaml'), [])
        assert (cfg.efficientsci.in_ch, cfg.efficientsci.units,
                cfg.efficientsci.group_num) == SIZES[size]
        count = EfficientSCI(*SIZES[size]).count_params()
        assert count == exact[size] and round(count / 1e6, 2) == published[size], size


def test_state_dict_names_are_the_official_keys():
    sd = read_efficientsci_state_dict(fixture(CKPT['tiny']))
    model = tiny()
    assert list(torch_state_variables(model)) == list(sd)  # same names, same order
    load_efficientsci_weights(model, fixture(CKPT['tiny']))
    back = torch_state_dict(model)
    assert all(np.array_equal(back[k], sd[k]) for k in sd)


# ----------------------------------------------------------------------- checkpoints
def test_both_checkpoint_formats_and_arch_inference():
    for tag in CKPT:
        sd = read_efficientsci_state_dict(fixture(CKPT[tag]))
        assert len(sd) == 66
        assert infer_efficientsci_arch(sd) == dict(in_ch=16, units=2, group_num=2, color_ch=1)


def test_checkpoint_of_another_size_is_refused():
    path = fixture(CKPT['tiny_sharp'])
    for kw, what in ((dict(in_ch=32), 'in_ch: checkpoint 16 vs model 32'),
                     (dict(units=3), 'units: checkpoint 2 vs model 3'),
                     (dict(group_num=1), 'group_num: checkpoint 2 vs model 1')):
        model = tiny(**kw)
        before = [v.numpy().copy() for v in model.weights]
        with pytest.raises(CheckpointError, match=what):
            load_efficientsci_weights(model, path)
        assert all(np.array_equal(a, v.numpy()) for a, v in zip(before, model.weights))
    sd = dict(read_efficientsci_state_dict(path))
    sd.pop('resdnet_list.1.last_conv.bias')
    sd['resdnet_list.0.extra.weight'] = np.zeros(3, np.float32)
    with pytest.raises(CheckpointError, match=r'missing keys \(1\): resdnet_list\.1\.last_conv'
                                              r'\.bias; unexpected keys \(1\): resdnet_list\.0'
                                              r'\.extra\.weight'):
        assign_efficientsci_state(tiny(), sd)
    with pytest.raises(CheckpointError, match='not an EfficientSCI'):
        assign_efficientsci_state(tiny(), {'conv1.0.weight': np.zeros((16, 1, 5, 5, 5))})


# ----------------------------------------------------------------------- bad input
def test_bad_inputs_are_refused():
    model = EfficientSCI(4, 1, 2)
    mask = np.ones((6, 8, 8), np.float32)
    with pytest.raises(ValueError, match='height must be even.*got 5'):
        model((np.ones((1, 5, 8), np.float32), mask[:5]))
    with pytest.raises(ValueError, match='width must be even.*got 7'):
        model((np.ones((1, 6, 7), np.float32), mask[:, :7]))
    with pytest.raises(ValueError, match='mask has 4 frames.*configured for 8 frames'):
        model((np.ones((1, 6, 8), np.float32), np.ones((6, 8, 4), np.float32)))
    with pytest.raises(ValueError, match='height 6 does not match the mask height 8'):
        model((np.ones((1, 6, 8), np.float32), np.ones((8, 8, 8), np.float32)))
    with pytest.raises(ValueError, match=r'takes \(meas_re'):
        model(np.ones((1, 6, 8), np.float32))
    # the task's reconstruction function (dynamic-shape graph) checks before running
    cfg = load_config(None, ['model.name=EfficientSCI'])
    predict = EfficientSciTask(cfg).predict_fn(model)
    with pytest.raises(SciDataError, match='even measurement height and width.*6x7'):
        predict(np.ones((1, 6, 7), np.float32), np.ones((6, 7, 8), np.float32))
    with pytest.raises(SciDataError, match='mask has 10 frames.*reconstructs 8'):
        predict(np.ones((1, 6, 8), np.float32), np.ones((6, 8, 10), np.float32))
    assert predict(np.ones((2, 6, 8), np.float32), np.ones((6, 8, 8), np.float32)).shape == \
        (2, 6, 8, 8)
    with pytest.raises(ValueError, match='group_num dividing'):
        EfficientSCI(16, 2, 3)


def test_colour_model_returns_rgb_frames_last():
    """color_ch=3 (official bayer_init: the same element-wise input rule on the Bayer
    measurement) returns RGB frames ``[N, H, W, 3, B]``; its checkpoints are told apart."""
    model = EfficientSCI(4, 1, 2, color_ch=3)
    assert model((np.ones((2, 8, 6), np.float32), np.ones((8, 6, 8), np.float32))).shape == \
        (2, 8, 6, 3, 8)
    sd = torch_state_dict(model)
    assert infer_efficientsci_arch(sd)['color_ch'] == 3
    with pytest.raises(CheckpointError, match='color_ch: checkpoint 3 vs model 1'):
        assign_efficientsci_state(EfficientSCI(4, 1, 2), sd)


def test_task_loss_is_the_official_rmse():
    cfg = load_config(None, ['model.name=EfficientSCI'])
    pred, target = np.zeros((2, 4, 4, 8), np.float32), np.full((2, 4, 4, 8), 0.5, np.float32)
    target[0] = 0.0
    expect = np.sqrt(np.mean((pred - target) ** 2))
    assert np.isclose(float(EfficientSciTask(cfg).loss()(pred, target)), expect)
    cfg = load_config(None, ['model.name=EfficientSCI', 'efficientsci.rmse_loss=False',
                             'solver.loss=l2', 'solver.loss_reduction=mean'])
    assert np.isclose(float(EfficientSciTask(cfg).loss()(pred, target)), expect ** 2)


# ----------------------------------------------------------------------- factory hook
def test_every_weight_layer_comes_from_the_factory():
    """A quantized variant substitutes layers through the factory: every conv, linear and
    attention of the network is made by it (none is created directly)."""
    made = []

    class Recording(LayerFactory):
        def conv3d(self, *args, role, name):
            made.append(('conv', role))
            return super().conv3d(*args, role=role, name=name)

        def linear(self, *args, role, name, **kw):
            made.append(('linear', role))
            return super().linear(*args, role=role, name=name, **kw)

        def attention(self, dim, num_heads, *, name):
            made.append(('attention', 'tsab'))
            return Uniform(dim, num_heads, factory=self, name=name)

    class Uniform(TimesAttention3D):
        def transform_attn(self, attn):  # the quantization point of the probabilities
            return tf.ones_like(attn) / tf.cast(tf.shape(attn)[-1], attn.dtype)

    model = EfficientSCI(16, 2, 2, factory=Recording())
    weight_layers = [l for l in _walk(model) if isinstance(l, (Conv3d, Linear))]
    assert len([m for m in made if m[0] != 'attention']) == len(weight_layers) == 35
    assert sorted({r for _, r in made}) == ['dense', 'fem', 'ffn', 'last', 'proj', 'qkv', 'scb',
                                            'tsab', 'up', 'vrm']
    load_efficientsci_weights(model, fixture(CKPT['tiny_sharp']))
    rec = model.forward_features(inputs(dict(np.load(fixture('esci_tiny_sharp_ref.npz')))))
    np.testing.assert_allclose(rec['u0_cf0_attn'].numpy(), 1 / 8, rtol=1e-6)


def _walk(layer):
    from ascendcv.layers.torch_compat import _children
    for _, child in _children(layer):
        yield child
        yield from _walk(child)
    for step in getattr(layer, 'steps', ()):
        yield step
        yield from _walk(step)


# ----------------------------------------------------------------------- convert, freeze, ONNX
def test_official_checkpoint_converts_freezes_and_exports(tmp_path):
    """Official train.py checkpoint -> ``--mode convert`` -> ``--mode freeze`` (.pb + ONNX): the
    frozen graph and onnxruntime reproduce the official output on the fixture measurement. Any
    measurement size (dynamic H, W: the ONNX export once broke on chained dynamic reshapes)."""
    from ascendcv.runner.freezer import FrozenGraphModel, export_and_check
    from ascendcv.runner.logging_utils import get_logger
    from ascendvsr.convert import convert_checkpoint
    from ascendvsr.zoo import get_entry
    entry = get_entry('EfficientSCI')
    opts = ['model.name=EfficientSCI', 'efficientsci.in_ch=16', 'efficientsci.units=2',
            'efficientsci.group_num=2', f'output_dir={tmp_path}', 'data.eval_in_size=[-1,-1]',
            f'convert.source={fixture(CKPT["tiny_sharp"])}', 'export.onnx=True',
            'export.pb_xla_dcn=False']
    prefix = convert_checkpoint(load_config(None, opts), entry, logger=lambda *_: None)
    cfg = load_config(None, opts + [f'model.checkpoint={prefix}'])
    result = export_and_check(cfg, entry.make_task(cfg), entry.build, get_logger(None))
    assert result['pb_max_abs_diff'] <= 1e-5 and result['onnx_max_abs_diff'] <= 1e-4
    ref = dict(np.load(fixture('esci_tiny_sharp_ref.npz')))
    meas = (ref['y'][:, 0]).astype(np.float32)  # the raw measurement: the graph normalises it
    mask = ref['mask'].transpose(1, 2, 0)
    frozen = FrozenGraphModel(result['pb'])
    assert frozen.meta['sci']['model'] == dict(in_ch=16, units=2, group_num=2, color_ch=1)
    assert rel(frozen(meas, mask).numpy().transpose(0, 3, 1, 2), ref['out']) <= TOL
    import onnxruntime as ort
    sess = ort.InferenceSession(result['onnx'], providers=['CPUExecutionProvider'])
    names = [i.name for i in sess.get_inputs()]
    y = sess.run(None, dict(zip(names, [meas, mask])))[0]
    assert rel(y.transpose(0, 3, 1, 2), ref['out']) <= TOL


def test_never_sampled_pixels_follow_the_official_rule():
    """Pixels no mask frame samples: the official ``mask_s[mask_s == 0] = 1`` gives
    ``meas_re = 0`` there (finite output), through the task's serve path."""
    ref = dict(np.load(fixture('esci_tiny_sharp_ref.npz')))
    mask = ref['mask'].transpose(1, 2, 0)
    assert (mask.sum(-1) == 0).sum() == 6  # the fixture's crop has 6 such pixels
    cfg = load_config(None, ['model.name=EfficientSCI'])
    model = load_efficientsci_weights(tiny(), fixture(CKPT['tiny_sharp']))
    out = EfficientSciTask(cfg).serve(model, tf.constant(ref['y'][:, 0]), tf.constant(mask))
    assert np.isfinite(out.numpy()).all()
    assert rel(out.numpy().transpose(0, 3, 1, 2), ref['out']) <= TOL
