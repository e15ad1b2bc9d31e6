"""RevSCI parity with the official RevSCI-net (fixtures made by the official code): outputs,
intermediate activations, gradients (plain and reversible), checkpoint formats, input checks,
freezing and ONNX export."""
import os

import numpy as np
import pytest
import tensorflow as tf

from ascendcv.layers.torch_compat import torch_state_dict, torch_state_variables
from ascendcv.utils.torch_checkpoint import CheckpointError, load_state_dict
from ascendvsr.config.defaults import get_cfg_defaults
from ascendvsr.convert.revsci import assign_revsci_state, infer_revsci_arch, load_revsci_weights
from ascendcv.utils.sci_physics import normalize_measurement, normalize_measurement_tf
from ascendvsr.models.revsci import RevSCI, build_revsci

FIX = os.path.join(os.path.dirname(os.path.dirname(__file__)), 'fixtures')
VARIANT = {'g2b2': 're_3dcnn', 'rev1b2': 're_3dcnn1'}


def fixture(name):
    return os.path.join(FIX, name)


def io(tag):
    return np.load(fixture(f'revsci_{tag}_io.npz'))


def tiny(tag='g2b2', **kw):
    kw = dict(dict(variant=VARIANT[tag], num_block=2, num_group=2, mask_size=(32, 32)), **kw)
    return RevSCI(name='RevSCI', **kw)


def loaded(tag, ckpt=None, **kw):
    model = tiny(tag, **kw)
    if ckpt is None or 'state_dict' in ckpt:  # plain state dicts carry no mask
        model.set_mask(io(tag)['mask'].transpose(1, 2, 0))
    load_revsci_weights(model, fixture(ckpt or f'revsci_{tag}_model.pth'))
    return model


def ncdhw(x):  # ours [N, D, H, W, C] -> official (N, C, D, H, W)
    return x.numpy().transpose(0, 4, 1, 2, 3)


# ----------------------------------------------------------------------- 3-D conv layers
def _np_conv3d(x, w, stride, pad, dil):
    """Direct cross-correlation, NDHWC, kernel (kd, kh, kw, in, out), zero padding."""
    x = np.pad(x, [(0, 0)] + [(p, p) for p in pad] + [(0, 0)])
    k = w.shape[:3]
    out = [(x.shape[i + 1] - dil[i] * (k[i] - 1) - 1) // stride[i] + 1 for i in range(3)]
    y = np.zeros((x.shape[0], *out, w.shape[-1]))
    for a in range(k[0]):
        for b in range(k[1]):
            for c in range(k[2]):
                patch = x[:, a * dil[0]::stride[0], b * dil[1]::stride[1], c * dil[2]::stride[2]]
                y += patch[:, :out[0], :out[1], :out[2]] @ w[a, b, c]
    return y


def _np_conv_transpose3d(x, w, stride, pad, out_pad):
    """``y[i * s + t - p] += x[i] w[t]`` (PyTorch ConvTranspose3d), kernel (k..., out, in)."""
    k = w.shape[:3]
    full = [(x.shape[i + 1] - 1) * stride[i] + k[i] for i in range(3)]
    y = np.zeros((x.shape[0], *[f + o for f, o in zip(full, out_pad)], w.shape[3]))
    for a in range(k[0]):
        for b in range(k[1]):
            for c in range(k[2]):
                y[:, a:a + full[0] - k[0] + 1:stride[0], b:b + full[1] - k[1] + 1:stride[1],
                  c:c + full[2] - k[2] + 1:stride[2]] += x @ w[a, b, c].T
    size = [(x.shape[i + 1] - 1) * stride[i] - 2 * pad[i] + k[i] + out_pad[i] for i in range(3)]
    return y[:, pad[0]:pad[0] + size[0], pad[1]:pad[1] + size[1], pad[2]:pad[2] + size[2]]


# depth-1 kernels with depth stride 1 and no depth padding run as one 2-D convolution over the
# frames (Conv3d._conv_frames): (1,3,3) same / strided, dilated, 1x1x1; the rest as conv3d
@pytest.mark.parametrize('k,s,p,d', [(3, (1, 2, 2), 1, 1), (5, 1, 2, 1), (3, 1, 2, 2), (1, 1, 0, 1),
                                     ((1, 3, 2), (2, 1, 3), (0, 1, 2), 1),
                                     ((1, 3, 3), 1, (0, 1, 1), 1),
                                     ((1, 3, 3), (1, 2, 2), (0, 1, 1), 1),
                                     ((1, 3, 2), 1, (0, 2, 0), (1, 2, 1)),
                                     ((1, 3, 3), 1, (1, 1, 1), 1)])
def test_conv3d_matches_direct_computation(k, s, p, d):
    from ascendcv.layers.conv3d import Conv3d
    conv = Conv3d(3, 4, k, s, p, d)
    x = np.random.default_rng(0).standard_normal((2, 5, 7, 6, 3)).astype(np.float32)
    ref = _np_conv3d(x, conv.kernel.numpy(), conv.stride, conv.padding, conv.dilation)
    ref = ref + conv.bias.numpy()
    y = conv(x).numpy()
    assert y.shape == ref.shape
    assert np.abs(y - ref).max() <= 1e-5
    # unknown sizes in the graph (frozen graphs of any size): same values, known sizes kept
    spec = tf.TensorSpec([None, None, None, None, 3], tf.float32)
    graph = tf.function(conv, input_signature=[spec])
    assert np.abs(graph(x).numpy() - ref).max() <= 1e-5
    assert graph.get_concrete_function().structured_outputs.shape.as_list()[-1] == 4


@pytest.mark.parametrize('k,s,p,op', [((1, 3, 3), (1, 2, 2), (0, 1, 1), (0, 1, 1)), (3, 2, 0, 1),
                                      (3, (2, 1, 3), (1, 0, 2), (1, 0, 2)), (2, 1, 0, 0)])
def test_conv_transpose3d_matches_pytorch_definition(k, s, p, op):
    from ascendcv.layers.conv3d import ConvTranspose3d
    conv = ConvTranspose3d(3, 4, k, s, p, op)
    x = np.random.default_rng(1).standard_normal((2, 4, 5, 3, 3)).astype(np.float32)
    ref = _np_conv_transpose3d(x, conv.kernel.numpy(), conv.stride, conv.padding,
                               conv.output_padding) + conv.bias.numpy()
    y = conv(x).numpy()
    sizes = [conv.output_size(n, i) for i, n in enumerate((4, 5, 3))]
    assert y.shape == ref.shape == (2, *sizes, 4)
    assert np.abs(y - ref).max() <= 1e-5
    dyn = tf.function(conv, input_signature=[tf.TensorSpec([None, None, None, None, 3])])
    assert np.abs(dyn(x).numpy() - y).max() <= 1e-6  # dynamic shapes take the same path
    with pytest.raises(ValueError, match='output_padding'):
        ConvTranspose3d(3, 4, 3, 2, 1, 2)


# ---------------------------------------------------------------------------------- forward
@pytest.mark.parametrize('tag,ckpt', [
    ('g2b2', 'revsci_g2b2_model.pth'),
    ('g2b2', 'revsci_g2b2_state_dict.pth'),
    ('g2b2', 'revsci_g2b2_state_dict_legacy_cuda.pth'),
    ('rev1b2', 'revsci_rev1b2_model.pth'),
])
def test_parity_with_official(tag, ckpt):
    ref = io(tag)
    model = loaded(tag, ckpt)
    assert np.array_equal(model.mask.numpy(), ref['mask'].transpose(1, 2, 0))
    out = model.forward_features(tf.constant(ref['meas_re'][:, 0]))
    assert np.array_equal(ncdhw(out['net_in']), ref['net_in'])
    for name in ('conv1_out', 'block0_out', 'block1_out'):
        assert np.abs(ref[name]).max() > 0.1
        assert np.abs(ncdhw(out[name]) - ref[name]).max() <= 1e-6, name
    y = out['output'].numpy()
    assert y.shape == (1, 8, 32, 32)
    assert np.abs(ref['output']).max() > 0.02  # slope 0.1 instead of 0.01 moves it by 6e-3
    assert np.abs(y - ref['output'][:, 0]).max() <= 1e-6
    assert np.abs(model(ref['meas_re'][:, 0]).numpy() - y).max() == 0  # call == forward_features
    assert np.abs(model(ref['meas_re'][:, 0, ..., None]).numpy() - y).max() == 0  # [N, H, W, 1]


def test_preprocessing_matches_official():
    ref = io('g2b2')
    mask = ref['mask'].transpose(1, 2, 0)
    meas = np.sum(ref['video'] * ref['mask'][None], axis=1)
    assert np.abs(meas - ref['meas']).max() <= 1e-6
    assert np.abs(normalize_measurement(ref['meas'], mask) - ref['meas_re'][:, 0]).max() <= 1e-7
    tf_version = normalize_measurement_tf(tf.constant(ref['meas']), tf.constant(mask)).numpy()
    assert np.abs(tf_version - ref['meas_re'][:, 0]).max() <= 1e-7


# -------------------------------------------------------------------------------- gradients
def _official_grads(tag, reversible, graph):
    ref = io(tag)
    model = loaded(tag, reversible=reversible)
    named = {k: v for k, v in torch_state_variables(model).items() if k != 'mask'}
    variables = [var for var, _ in named.values()]
    assert len(variables) == len(model.trainable_variables) == 32

    def step(meas_re):  # MSELoss(squeeze(model(meas_re)), video[0]), mean reduction
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(model(meas_re, training=True) - ref['video']))
        return loss, tape.gradient(loss, variables)

    loss, grads = (tf.function(step) if graph else step)(tf.constant(ref['meas_re'][:, 0]))
    return ref, named, float(loss), dict(zip(named, [g.numpy() for g in grads]))


@pytest.mark.parametrize('tag', ['g2b2', 'rev1b2'])
@pytest.mark.parametrize('reversible,graph', [(False, False), (True, False), (True, True)])
def test_gradients_match_official(tag, reversible, graph):
    ref, named, loss, grads = _official_grads(tag, reversible, graph)
    assert abs(loss - float(ref['train_loss'])) <= 1e-6 * float(ref['train_loss'])
    checked = 0
    for kind in ('grad_autograd.', 'grad_reverse.'):
        for key in (k[len(kind):] for k in ref.files if k.startswith(kind)):
            expected = named[key][1](ref[kind + key])  # official layout -> ours
            scale = np.abs(expected).max()
            assert scale > 0
            assert np.abs(grads[key] - expected).max() <= 1e-5 * scale, (kind, key)
            checked += 1
    assert checked >= 36
    # the block weights and the encoder/decoder, too: compare against plain backprop
    if reversible:
        _, _, _, plain = _official_grads(tag, False, graph)
        for key, g in grads.items():
            assert np.abs(g - plain[key]).max() <= 1e-5 * np.abs(plain[key]).max(), key


@pytest.mark.parametrize('variant', ['re_3dcnn', 're_3dcnn1'])
def test_reversible_equals_plain_backprop_deeper(variant):
    """3 blocks, 4 groups, batch 2, per-sample masks: reversible gradients == plain ones."""
    rng = np.random.default_rng(7)
    model = RevSCI(variant=variant, num_block=3, num_group=4, mask_size=(16, 16))
    masks = (rng.random((2, 16, 16, 8)) > 0.5).astype(np.float32)
    meas_re = rng.random((2, 16, 16), dtype=np.float32)
    gt = rng.random((2, 8, 16, 16), dtype=np.float32)
    grads = {}
    for reversible in (False, True):
        model.reversible = reversible
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(model((meas_re, masks), training=True) - gt))
        grads[reversible] = tape.gradient(loss, model.trainable_variables)
    for a, b in zip(grads[True], grads[False]):
        assert np.abs(a.numpy() - b.numpy()).max() <= 1e-5 * np.abs(b.numpy()).max()


# ---------------------------------------------------------------------------------- masks
def test_call_mask_overrides_model_mask():
    ref = io('g2b2')
    model = loaded('g2b2')
    mask = ref['mask'].transpose(1, 2, 0)
    x = np.concatenate([ref['meas_re'][:, 0]] * 2)
    y = model(x).numpy()
    assert np.abs(model((x, mask)).numpy() - y).max() == 0
    other = 1 - mask
    per_sample = np.stack([mask, other])
    y2 = model({'meas_re': x, 'mask': per_sample}).numpy()
    assert np.abs(y2[0] - y[0]).max() == 0
    assert np.abs(y2[1] - y[1]).max() > 1e-3


def test_reconstruct_takes_raw_measurements_frames_last():
    ref = io('g2b2')
    model = loaded('g2b2')
    video = model.reconstruct(ref['meas']).numpy()
    assert video.shape == (1, 32, 32, 8)
    assert np.abs(video.transpose(0, 3, 1, 2) - ref['output'][:, 0]).max() <= 1e-6
    again = model.reconstruct(ref['meas'], ref['mask'].transpose(1, 2, 0)).numpy()
    assert np.abs(again - video).max() == 0


def test_builder_takes_a_mask_array_and_reads_no_file(tmp_path):
    """The builder reads cfg.revsci and sci.compression_ratio; the stored mask is an array (read
    by the dataloader's load_mask in glue code) or comes from the checkpoint -- the model module
    imports no dataloader and reads no file."""
    import scipy.io

    import ascendvsr.models.revsci as revsci_module
    from ascendcv.dataloader.sci import load_mask
    source = open(revsci_module.__file__).read()
    assert 'import ascendcv.dataloader' not in source and 'from ascendcv.dataloader' not in source
    mask = (np.random.default_rng(0).random((32, 32, 8)) > 0.5).astype(np.uint8)
    scipy.io.savemat(tmp_path / 'mask.mat', {'other': np.ones((32, 32, 4)), 'Phi': mask})
    cfg = get_cfg_defaults()
    cfg.model.name = 'RevSCI'
    cfg.revsci.num_block, cfg.revsci.mask_size = 2, [32, 32]
    cfg.sci.mask_file, cfg.sci.mask_key = str(tmp_path / 'mask.mat'), 'Phi'
    model = build_revsci(cfg, jit_compile=False)
    assert not model.has_mask() and model.compress_ratio == 8  # sci.compression_ratio
    x = np.zeros((1, 32, 32), np.float32)
    with pytest.raises(ValueError, match=r'no stored sensing mask.*with \(meas_re, mask\)'):
        model(x)
    assert model((x, mask.astype(np.float32))).shape == (1, 8, 32, 32)  # the mask passed along
    stored = load_mask(cfg.sci.mask_file, cfg.sci.mask_key, setting='sci.mask_file')
    model = build_revsci(cfg, mask=stored)
    assert model.has_mask() and np.array_equal(model.mask.numpy(), mask)
    cfg.revsci.mask_size = [64, 64]
    with pytest.raises(ValueError, match=r'mask of shape \(32, 32, 8\).*\[64, 64, 8\].*'
                                         r'sci.compression_ratio'):
        build_revsci(cfg, mask=stored)
    cfg.sci.compression_ratio = 4
    assert build_revsci(cfg).compress_ratio == 4


# ------------------------------------------------------------------------- checkpoints
def test_checkpoint_keys_and_round_trip():
    ref_sd = load_state_dict(fixture('revsci_g2b2_state_dict.pth'))
    model = loaded('g2b2')
    ours = torch_state_dict(model)
    assert set(ours) == set(ref_sd) | {'mask'}
    for key, value in ref_sd.items():
        assert np.array_equal(ours[key], value), key
    assert np.array_equal(ours['mask'], io('g2b2')['mask'])
    arch = infer_revsci_arch(ref_sd)
    assert arch == dict(variant='re_3dcnn', num_block=2, num_group=2)
    arch1 = infer_revsci_arch(load_state_dict(fixture('revsci_rev1b2_model.pth')))
    assert arch1 == dict(variant='re_3dcnn1', num_block=2, num_group=None)


def test_convert_checkpoint_then_restore(tmp_path):
    from ascendcv.runner.checkpoint import restore_checkpoint
    from ascendvsr.convert import convert_checkpoint
    from ascendvsr.zoo import get_entry
    cfg = get_cfg_defaults()
    cfg.model.name = 'RevSCI'
    cfg.revsci.num_block, cfg.revsci.mask_size = 2, [32, 32]
    cfg.convert.source = fixture('revsci_g2b2_model.pth')
    cfg.convert.output = str(tmp_path / 'revsci')
    prefix = convert_checkpoint(cfg, get_entry('RevSCI'), logger=lambda *a: None)
    fresh = tiny()
    restore_checkpoint(fresh, prefix)  # the mask travels with the weights
    ref = io('g2b2')
    assert np.abs(fresh(ref['meas_re'][:, 0]).numpy() - ref['output'][:, 0]).max() <= 1e-6


@pytest.mark.parametrize('kw,match', [
    (dict(variant='re_3dcnn1'), r'variant: checkpoint re_3dcnn vs model re_3dcnn1'),
    (dict(num_block=3), r'num_block: checkpoint 2 vs model 3'),
    (dict(num_group=4), r'num_group: checkpoint 2 vs model 4'),
    (dict(mask_size=(64, 64)), r'mask is \(cr, H, W\) = \(8, 32, 32\).*\(8, 64, 64\)'),
    (dict(compress_ratio=10), r'mask is \(cr, H, W\) = \(8, 32, 32\).*\(10, 32, 32\)'),
])
def test_refuses_checkpoint_of_another_configuration(kw, match):
    model = tiny(**kw)
    before = [v.numpy().copy() for v in model.weights]
    with pytest.raises(CheckpointError, match=match):
        load_revsci_weights(model, fixture('revsci_g2b2_model.pth'))
    assert all(np.array_equal(a, v.numpy()) for a, v in zip(before, model.weights))


def test_refuses_other_variant_both_ways():
    with pytest.raises(CheckpointError, match='variant: checkpoint re_3dcnn1 vs model re_3dcnn'):
        load_revsci_weights(tiny('g2b2'), fixture('revsci_rev1b2_model.pth'))


def test_state_dict_keeps_the_models_mask_and_other_models_are_refused():
    """A state dict carries no mask: the model keeps its own (none: it must be given the mask
    with each call, as the SCI task always does)."""
    ref = io('g2b2')
    mask = ref['mask'].transpose(1, 2, 0)
    model = load_revsci_weights(tiny(), fixture('revsci_g2b2_state_dict.pth'))
    assert not model.has_mask()
    with pytest.raises(ValueError, match='no stored sensing mask'):
        model.reconstruct(ref['meas'])
    out = model((ref['meas_re'][:, 0], mask)).numpy()
    assert np.abs(out - ref['output'][:, 0]).max() <= 1e-6
    kept = tiny()
    kept.set_mask(mask)
    load_revsci_weights(kept, fixture('revsci_g2b2_state_dict.pth'))
    assert np.array_equal(kept.mask.numpy(), mask)
    with pytest.raises(CheckpointError, match='not a RevSCI checkpoint'):
        load_revsci_weights(tiny(), fixture('edvr_tiny_b_ckpt.pth'))


def test_missing_and_unexpected_keys_are_named():
    sd = dict(load_state_dict(fixture('revsci_g2b2_state_dict.pth')))
    mask = io('g2b2')['mask']
    broken = dict(sd)
    del broken['conv2.4.bias']
    broken['conv3.0.weight'] = sd['conv2.4.weight']
    with pytest.raises(CheckpointError, match=r'missing keys \(1\): conv2.4.bias; '
                                              r'unexpected keys \(1\): conv3.0.weight'):
        assign_revsci_state(tiny(), broken, mask, source='broken.pth')
    bad_shape = dict(sd, **{'conv1.0.weight': np.zeros((16, 1, 3, 3, 3), np.float32)})
    with pytest.raises(CheckpointError, match='conv1.0.weight: checkpoint'):
        assign_revsci_state(tiny(), bad_shape, mask, source='bad.pth')


# ---------------------------------------------------------------------------- input checks
@pytest.mark.parametrize('shape,match', [
    ((32, 32), r'meas_re \[N, H, W\].*got shape \(32, 32\)'),
    ((1, 32, 32, 3), r'meas_re \[N, H, W\].*got shape \(1, 32, 32, 3\)'),
    ((1, 1, 32, 32, 1), r'got shape \(1, 1, 32, 32, 1\)'),
    ((1, 32, 48), r'width 48 does not match the mask.*32x32 \(revsci.mask_size\)'),
])
def test_input_shape_errors(shape, match):
    with pytest.raises(ValueError, match=match):
        tiny()(np.zeros(shape, np.float32))


def test_mask_argument_errors_and_constructor_checks():
    model = tiny()
    x = np.zeros((1, 32, 32), np.float32)
    with pytest.raises(ValueError, match=r'mask must be \[H, W, 8\].*got shape \(32, 32, 4\)'):
        model((x, np.zeros((32, 32, 4), np.float32)))
    with pytest.raises(ValueError, match='height 32 does not match the mask: the given mask is 16'):
        model((x, np.zeros((16, 16, 8), np.float32)))
    with pytest.raises(ValueError, match='must be positive and even'):
        RevSCI(mask_size=(31, 32))
    with pytest.raises(ValueError, match='num_group >= 2 dividing 64'):
        RevSCI(num_group=3, mask_size=(8, 8))
    with pytest.raises(ValueError, match="unknown RevSCI variant 'rev'"):
        RevSCI(variant='rev')


# ------------------------------------------------------------------------------ export
def test_serving_signature_freeze_onnx_and_frozen_evaluation(tmp_path):
    """RevSciTask's serving signature: meas [None, H, W] and mask [H, W, B] (H, W from
    data.eval_in_size); the frozen graph and ONNX match the live reconstruction, the frozen
    graph evaluates a benchmark like the live model."""
    import logging

    import scipy.io

    from ascendcv.runner.freezer import FrozenGraphModel, check_onnx, export_onnx, freeze
    from ascendvsr.tasks.sci import RevSciTask
    ref = io('g2b2')
    cfg = get_cfg_defaults()
    cfg.model.name = 'RevSCI'
    cfg.revsci.num_block, cfg.revsci.mask_size = 2, [32, 32]
    cfg.data.eval_in_size = [32, 32]
    model = loaded('g2b2')
    task = RevSciTask(cfg)
    specs = task.serving_signature(model)
    assert [(s.name, s.shape.as_list(), s.dtype) for s in specs] == [
        ('meas', [None, 32, 32], tf.float32), ('mask', [32, 32, 8], tf.float32)]
    meas, mask = task.example_inputs(model)
    assert meas.shape == (2, 32, 32) and mask.shape == (32, 32, 8) and meas.dtype == np.float32
    assert task.export_meta(model)['sci'] == dict(task.export_meta(model)['sci'],
                                                  input_size=[32, 32], compression_ratio=8,
                                                  color=False)
    path, meta = freeze(task, model, str(tmp_path / 'RevSCI.pb'))
    assert [i['shape'] for i in meta['inputs']] == [[None, 32, 32], [32, 32, 8]]
    frozen = FrozenGraphModel(path)
    official_mask = ref['mask'].transpose(1, 2, 0)
    x3 = np.random.default_rng(1).random((3, 32, 32), dtype=np.float32)  # any batch
    for m, k in ((meas, mask), (x3, official_mask), (ref['meas'], official_mask)):
        live = task.serve(model, m, k).numpy()
        assert live.shape == (len(m), 32, 32, 8)
        assert np.abs(frozen(m, k).numpy() - live).max() <= 1e-5
    # the frozen graph reproduces the official output (frames moved last)
    np.testing.assert_allclose(frozen(ref['meas'], official_mask).numpy().transpose(0, 3, 1, 2),
                               ref['output'][:, 0], atol=1e-5)
    onnx_path = export_onnx(path, str(tmp_path / 'RevSCI.onnx'))
    assert check_onnx(onnx_path, frozen, [x3, official_mask]) <= 1e-4
    # evaluation through the frozen graph = through the live model
    data_dir = tmp_path / 'bench'
    data_dir.mkdir()
    video = np.rint(ref['video'][0].transpose(1, 2, 0) * 255).astype(np.uint8)  # [H, W, 8]
    scipy.io.savemat(str(data_dir / 'toy.mat'), {'orig': video,
                                                 'mask': official_mask.astype(np.uint8)})
    cfg.sci.data_dir, cfg.output_dir, cfg.sci.save_grid = str(data_dir), str(tmp_path), False
    log = logging.getLogger('test_revsci')
    live = task.evaluate(model, log)['datasets']['toy']
    cold = task.evaluate(frozen, log)['datasets']['toy']
    assert cold['psnr'] == pytest.approx(live['psnr'], abs=1e-3)
