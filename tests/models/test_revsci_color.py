"""Colour RevSCI (the official "color model": Bayer RGGB measurement -> RGB video) against a
fixture made by the official code (``tools/fixtures/make_revsci_color_fixture.py``): Bayer
forward model, network input, activations, output, gradients (plain and reversible), the
whole-module checkpoint with its mask, and export."""
import os

import numpy as np
import pytest
import tensorflow as tf

from ascendcv.utils.sci_physics import bayer_mosaic, measure_bayer, normalize_measurement
from ascendcv.layers.torch_compat import torch_state_dict, torch_state_variables
from ascendcv.utils.torch_checkpoint import CheckpointError, load_state_dict
from ascendvsr.config.defaults import get_cfg_defaults
from ascendvsr.convert.revsci import infer_revsci_arch, load_revsci_weights
from ascendvsr.models.revsci import RevSCI

FIX = os.path.join(os.path.dirname(os.path.dirname(__file__)), 'fixtures')
TAG = 'revsci_color_b2'


def fixture(name):
    return os.path.join(FIX, name)


@pytest.fixture(scope='module')
def ref():
    return dict(np.load(fixture(f'{TAG}_io.npz')))


def loaded(checkpoint=f'{TAG}_model.pth', mask=None, **kw):
    model = RevSCI(variant='color', num_block=2, mask_size=(32, 32), name='RevSCI', **kw)
    if mask is not None:
        model.set_mask(mask)
    load_revsci_weights(model, fixture(checkpoint))
    return model


def ncdhw(x):  # ours [N, D, H, W, C] -> official (N, C, D, H, W)
    return np.asarray(x).transpose(0, 4, 1, 2, 3)


def test_bayer_measurement_matches_official(ref):
    video = ref['video'][0].transpose(1, 2, 3, 0)               # (3, B, H, W) -> [B, H, W, 3]
    assert np.abs(bayer_mosaic(video) - ref['raw'][0]).max() == 0
    mask = ref['mask'].transpose(1, 2, 0)
    assert np.abs(measure_bayer(video, mask) - ref['meas'][0]).max() <= 1e-6
    meas_re = normalize_measurement(ref['meas'], mask)
    assert np.abs(meas_re - ref['meas_re'][:, 0]).max() <= 1e-7


@pytest.mark.parametrize('checkpoint', [f'{TAG}_model.pth', f'{TAG}_state_dict.pth'])
def test_parity_with_official(ref, checkpoint):
    mask = ref['mask'].transpose(1, 2, 0)
    model = loaded(checkpoint, mask=None if 'model' in checkpoint else mask)
    assert np.array_equal(model.mask.numpy(), mask)  # the whole module carries its mask
    out = model.forward_features(tf.constant(ref['meas_re'][:, 0]))
    assert np.array_equal(ncdhw(out['net_in']), ref['net_in'])  # [mask, meas_re] channels
    for name in ('conv1_out', 'block0_out', 'block1_out'):
        assert np.abs(ref[name]).max() > 0.1
        assert np.abs(ncdhw(out[name]) - ref[name]).max() <= 1e-6, name
    y = out['output'].numpy()
    assert y.shape == (1, 8, 32, 32, 3)
    assert np.abs(ref['output']).max() > 0.02
    assert np.abs(ncdhw(y) - ref['output']).max() <= 1e-6
    assert np.abs(ncdhw(y) - ref['output_f64']).max() <= 2e-6
    # reconstruct(): raw measurement in, frames last [N, H, W, 3, B] (a colour orig's layout)
    rec = model.reconstruct(ref['meas']).numpy()
    assert rec.shape == (1, 32, 32, 3, 8)
    assert np.abs(rec.transpose(0, 3, 4, 1, 2) - ref['output']).max() <= 1e-6


def test_checkpoint_keys_round_trip_and_detection(ref):
    model = loaded()
    sd = load_state_dict(fixture(f'{TAG}_state_dict.pth'))
    ours = torch_state_dict(model)
    assert set(ours) - {'mask'} == set(sd)  # fuse_r included, key for key
    for key, value in sd.items():
        assert np.array_equal(ours[key], value), key
    assert infer_revsci_arch(sd) == dict(variant='color', num_block=2, num_group=None)
    gray = RevSCI(variant='re_3dcnn1', num_block=2, mask_size=(32, 32))
    with pytest.raises(CheckpointError, match='variant: checkpoint color vs model re_3dcnn1'):
        load_revsci_weights(gray, fixture(f'{TAG}_model.pth'))


@pytest.mark.parametrize('reversible', [False, True])
def test_gradients_match_official(ref, reversible):
    model = loaded(reversible=reversible)
    named = {k: v for k, v in torch_state_variables(model).items() if k != 'mask'}
    variables = [var for var, _ in named.values()]
    gt = tf.constant(ref['video'].transpose(0, 2, 3, 4, 1))  # (N, 3, B, H, W) -> ours

    @tf.function
    def step(meas_re):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(model(meas_re, training=True) - gt))
        return loss, tape.gradient(loss, variables)

    loss, grads = step(tf.constant(ref['meas_re'][:, 0]))
    assert abs(float(loss) - float(ref['train_loss'])) <= 1e-6 * float(ref['train_loss'])
    grads = dict(zip(named, grads))
    assert grads['fuse_r.0.weight'] is None  # unused by the official forward, as there
    checked = 0
    for kind in ('grad_autograd.', 'grad_reverse.'):
        for key in (k[len(kind):] for k in ref if k.startswith(kind)):
            expected = named[key][1](ref[kind + key])
            scale = np.abs(expected).max()
            assert scale > 0
            assert np.abs(grads[key].numpy() - expected).max() <= 1e-5 * scale, (kind, key)
            checked += 1
    assert checked == 2 * (len(named) - 2)  # all but fuse_r's weight and bias


def test_colour_shape_checks_and_export(tmp_path, ref):
    """The colour RevSCI frozen through RevSciTask's serving signature (dynamic H, W here:
    data.eval_in_size [-1, -1]): Bayer measurement + mask in, RGB frames [N, H, W, 3, B] out;
    frozen graph and ONNX equal to the live model."""
    from ascendcv.runner.freezer import FrozenGraphModel, check_onnx, export_onnx, freeze
    from ascendvsr.tasks.sci import RevSciTask
    model = loaded()
    with pytest.raises(ValueError, match='mask'):
        model((ref['meas_re'][:, 0], np.ones((32, 32, 4), np.float32)))
    cfg = get_cfg_defaults()
    cfg.model.name = 'RevSCI'
    cfg.revsci.variant, cfg.revsci.num_block, cfg.revsci.mask_size = 'color', 2, [32, 32]
    cfg.data.eval_in_size = [-1, -1]
    task = RevSciTask(cfg)
    assert [s.shape.as_list() for s in task.serving_signature(model)] == [[None, None, None],
                                                                          [None, None, 8]]
    assert task.export_meta(model)['sci']['color'] is True
    meas, mask = task.example_inputs(model)  # dynamic size: the model's mask size
    assert meas.shape == (2, 32, 32) and mask.shape == (32, 32, 8)
    path, _ = freeze(task, model, str(tmp_path / 'RevSCI.pb'))
    frozen = FrozenGraphModel(path)
    live = task.serve(model, meas, mask).numpy()
    assert live.shape == (2, 32, 32, 3, 8)
    assert np.abs(frozen(meas, mask).numpy() - live).max() <= 1e-5
    official = ref['mask'].transpose(1, 2, 0)
    np.testing.assert_allclose(frozen(ref['meas'], official).numpy().transpose(0, 3, 4, 1, 2),
                               ref['output'], atol=1e-5)
    small = (meas[:, :16, :24], mask[:16, :24])  # another even size through the same graph
    assert np.abs(frozen(*small).numpy() - task.serve(model, *small).numpy()).max() <= 1e-5
    onnx_path = export_onnx(path, str(tmp_path / 'RevSCI.onnx'))
    assert check_onnx(onnx_path, frozen, [meas, mask]) <= 1e-4


def test_colour_training_pipeline_and_step(tmp_path):
    """RevSciTask feeds a colour model Bayer measurements of RGB crops with targets
    ``[N, B, H, W, 3]`` (the network's layout); the loss goes down over a few steps."""
    from ascendcv.dataloader.sci import random_mask
    from ascendcv.utils.sci_physics import mask_sum
    from ascendcv.runner.distributed import SingleDevice
    from ascendcv.utils.video_io import write_png
    from ascendvsr.tasks.sci import RevSciTask
    rng = np.random.default_rng(0)
    for i in range(10):
        write_png(str(tmp_path / 'clip' / f'{i:03d}.png'),
                  rng.integers(0, 256, (20, 20, 3), dtype=np.uint8))
    np.save(str(tmp_path / 'mask.npy'), random_mask(24, 24, 8, seed=0))
    cfg = get_cfg_defaults()
    cfg.sci.train_sources = [str(tmp_path / 'clip')]
    cfg.sci.mask_file, cfg.sci.crop_size = str(tmp_path / 'mask.npy'), 16
    cfg.data.batch_size, cfg.data.num_threads = 2, 1
    model = RevSCI(variant='color', num_block=1, mask_size=(16, 16))
    pipe = RevSciTask(cfg).train_pipeline(model, SingleDevice())(0)
    (meas_re, mask), target = next(iter(pipe))
    assert meas_re.shape == (2, 16, 16) and mask.shape == (2, 16, 16, 8)
    assert target.shape == (2, 8, 16, 16, 3)
    # meas_re is the Bayer measurement of the target frames (RGGB)
    rggb = np.zeros((16, 16, 3), np.float32)
    rggb[0::2, 0::2, 0] = rggb[0::2, 1::2, 1] = rggb[1::2, 0::2, 1] = rggb[1::2, 1::2, 2] = 1
    raw = (target.numpy() * rggb).sum(-1)                                   # [N, B, H, W]
    meas = (raw * np.moveaxis(mask.numpy(), -1, 1)).sum(1)
    np.testing.assert_allclose(meas_re.numpy() * mask_sum(mask.numpy()), meas, rtol=1e-5,
                               atol=1e-5)
    opt = tf.keras.optimizers.Adam(1e-3)
    losses = []
    for _ in range(4):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(model((meas_re, mask), training=True) - target))
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables))
        losses.append(float(loss))
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
