"""NeRV task on real video (8 frames of carphone, 144x176 area-resized to 36x44): data pipeline,
official loss/LR schedule, training + resume + pruning, evaluation reports, freeze/ONNX, infer."""
import json
import math
import os

import numpy as np
import pytest
import tensorflow as tf

from ascendcv.dataloader.video_frames import (VideoFrames, batch_frame_indices, resize_frames,
                                              steps_per_epoch)
from ascendcv.runner.logging_utils import get_logger
from ascendcv.utils.metrics import calculate_ssim
from ascendcv.utils.metrics_tf import ms_ssim_per_image, ssim
from ascendcv.utils.video_io import read_video, sample_video_path, write_png
from ascendvsr.config import load_config
from ascendvsr.tasks.nerv import NervLR, NervTask, load_video, nerv_loss
from ascendvsr.zoo import get_entry

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = ['model.name', 'NeRV', 'nerv.source', 'carphone', 'nerv.max_frames', '8',
        'nerv.num_frames', '8', 'nerv.resize', 'True', 'nerv.fc_hw_dim', '9_11_8',
        'nerv.strides', '[2, 2]', 'nerv.stem_dim_num', '32_1', 'nerv.lower_width', '6',
        'data.batch_size', '2', 'data.eval_batch_size', '4', 'solver.total_steps', '60',
        'solver.print_interval', '20', 'solver.checkpoint_interval', '20', 'solver.lr', '0.01',
        'solver.beta1', '0.5', 'solver.beta2', '0.999', 'seed', '0']


def make_cfg(out, *extra):
    return load_config(None, TINY + ['output_dir', str(out), *extra])


def build(cfg):
    return get_entry('NeRV').build(cfg)


def train_nerv(cfg, log):
    """The runner's training entry (what --mode train runs): ``(trainer, final step)``."""
    from ascendcv.runner.trainer import train
    entry = get_entry('NeRV')
    return train(cfg, entry.make_task(cfg), entry.build, log)


@pytest.fixture(scope='module')
def log():
    return get_logger(None)


@pytest.fixture(scope='module')
def fitted(tmp_path_factory, log):
    """A tiny NeRV trained for 15 epochs (60 steps) on the 8 frames, and its PSNR before."""
    out = tmp_path_factory.mktemp('nerv_fit')
    cfg = make_cfg(out)
    import keras
    keras.utils.set_random_seed(0)
    init = build(cfg)
    before = NervTask(cfg).evaluate(init, log, step=0)['psnr']
    trainer, step = train_nerv(cfg, log)
    return dict(cfg=cfg, out=out, trainer=trainer, step=step, psnr_before=before)


# ----------------------------------------------------------------------------- data

def test_video_frames_resize_and_normalised_indices(tmp_path):
    video = VideoFrames('carphone', max_frames=8, size=(36, 44))
    assert video.frames.shape == (8, 36, 44, 3) and video.frames.dtype == np.uint8
    assert video.original_size == (144, 176)
    np.testing.assert_array_equal(video.norm_idx, (np.arange(8) / 8).astype(np.float32))
    raw = read_video(sample_video_path('carphone'), max_frames=1)[0].astype(np.float64)
    block_mean = raw.reshape(36, 4, 44, 4, 3).mean(axis=(1, 3))
    assert np.abs(video.frames[0] - block_mean).max() <= 0.5 + 1e-9  # area average, rounded
    pairs = list(video.pairs())
    assert len(pairs) == 8 and pairs[3][0] == np.float32(3 / 8)
    assert pairs[3][1].dtype == np.float32 and pairs[3][1].max() <= 1.0
    # the same frames from a frame folder
    for i, f in enumerate(video.frames):
        write_png(str(tmp_path / f'f{i + 1:05d}.png'), f)
    folder = VideoFrames(str(tmp_path))
    np.testing.assert_array_equal(folder.frames, video.frames)
    assert resize_frames(video.frames, 36, 44) is video.frames


def test_train_pipeline_epochs_are_deterministic_shuffles(tmp_path, log):
    cfg = make_cfg(tmp_path)
    from ascendcv.runner.distributed import SingleDevice
    pipe = NervTask(cfg).train_pipeline(build(cfg), SingleDevice())
    assert NervTask(cfg).epochs() == (4, 15)
    full = [(x.numpy(), y.numpy()) for x, y in pipe(0).take(12)]
    for e in range(3):  # every epoch visits every frame once
        idx = np.concatenate([full[4 * e + i][0] for i in range(4)])
        assert sorted(idx.tolist()) == list(range(8))
    assert not np.array_equal(np.concatenate([b[0] for b in full[:4]]),
                              np.concatenate([b[0] for b in full[4:8]]))
    resumed = [(x.numpy(), y.numpy()) for x, y in pipe(5).take(3)]
    for (xa, ya), (xb, yb) in zip(resumed, full[5:8]):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    video = load_video(cfg)
    i = int(full[0][0][0])
    np.testing.assert_allclose(full[0][1][0], video.frames[i] / 255.0, atol=1e-7)
    # two ranks draw disjoint halves of the same global batches
    a = batch_frame_indices(0, 8, 2, seed=0, rank=0, world_size=2)
    b = batch_frame_indices(0, 8, 2, seed=0, rank=1, world_size=2)
    assert not set(a) & set(b)
    with pytest.raises(ValueError, match='larger than'):
        steps_per_epoch(8, 16)


def test_size_and_frame_count_errors(tmp_path):
    cfg = make_cfg(tmp_path, 'nerv.resize', 'False')
    with pytest.raises(ValueError, match=r'produces 36x44 frames.*144x176'):
        load_video(cfg, build(cfg))
    cfg = make_cfg(tmp_path, 'nerv.num_frames', '9')
    with pytest.raises(ValueError, match=r'num_frames=9 .* has 8 frames'):
        load_video(cfg, build(cfg))
    cfg = make_cfg(tmp_path, 'nerv.source', str(tmp_path / 'missing.mp4'))
    with pytest.raises(ValueError, match='missing.mp4'):
        load_video(cfg)


# ----------------------------------------------------------------------------- loss, LR

def test_lr_schedule_is_the_official_warmup_cosine():
    # 10 epochs of 8 frames at batch 1, warm-up 0.2 -> 2 epochs
    lr = NervLR(1.0, total_steps=80, steps_per_epoch=8, batch_size=1, num_frames=8, warmup=0.2)
    assert lr(1) == pytest.approx(0.1)  # cur_epoch 0: 0.1 + 0.9 * 0 / 2
    assert lr(5) == pytest.approx(0.1 + 0.9 * 0.5 / 2)  # epoch 0, iter 4: cur 0.5
    assert lr(9) == pytest.approx(0.55)  # cur 1
    assert lr(17) == pytest.approx(1.0)  # cur 2 = end of warm-up: cosine(0)
    assert lr(49) == pytest.approx(0.5)  # cur 6: halfway through the cosine
    assert lr(80) == pytest.approx(0.5 * (math.cos(math.pi * (9 + 7 / 8 - 2) / 8) + 1))
    const = NervLR(1.0, 80, 8, 1, 8, warmup=0.0, lr_type='const')
    assert const(1) == const(80) == 1.0
    with pytest.raises(ValueError, match='lr_type'):
        NervLR(1.0, 80, 8, 1, 8, lr_type='step')


def _two_frames():
    frames = read_video(sample_video_path('bikes'), max_frames=2)[:, :176, 200:376] / 255.0
    return frames.astype(np.float32)


def test_ssim_and_fusion6_loss_definitions():
    f = _two_frames()
    x, y = f[:1], f[1:]
    ours = float(ssim(x, y))
    ref = calculate_ssim(x[0] * 255.0, y[0] * 255.0)  # same window and constants, float64
    assert ours == pytest.approx(ref, abs=1e-4)
    loss = float(nerv_loss('Fusion6')(tf.constant(x), tf.constant(y)))
    assert loss == pytest.approx(0.7 * np.abs(x - y).mean() + 0.3 * (1 - ours), rel=1e-5)
    assert float(nerv_loss('L2')(tf.constant(x), tf.constant(y))) == pytest.approx(
        ((x - y) ** 2).mean(), rel=1e-5)
    with pytest.raises(ValueError, match='Fusion6'):
        nerv_loss('fusion6')


def test_ms_ssim_matches_the_multiscale_definition():
    f = _two_frames()  # 176x176: even at every scale, where TF's ssim_multiscale pads nothing
    ours = ms_ssim_per_image(f[:1], f[1:]).numpy()
    ref = tf.image.ssim_multiscale(f[:1], f[1:], max_val=1.0).numpy()
    np.testing.assert_allclose(ours, ref, atol=2e-4)
    assert ms_ssim_per_image(f[:1], f[:1]).numpy()[0] == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError, match='160'):
        ms_ssim_per_image(f[:, :160], f[:, :160])


# ----------------------------------------------------------------------------- training

def test_training_improves_psnr_and_writes_reports(fitted, log):
    cfg, out = fitted['cfg'], fitted['out']
    assert fitted['step'] == 60
    report = NervTask(make_cfg(out, 'nerv.dump_images', 'True', 'model.checkpoint',
                               str(out / 'checkpoints' / 'ckpt-60'))).evaluate(
        fitted['trainer'].model, log)
    assert report['psnr'] > fitted['psnr_before'] + 3.0
    assert report['step'] == 60 and report['epoch'] == 15
    assert len(report['psnr_per_frame']) == 8 and report['ms_ssim'] is None  # 36 px < 161
    assert abs(report['psnr_uint8'] - report['psnr']) < 0.5
    assert report['decode_fps'] > 0 and report['bpp'] == pytest.approx(
        report['storage']['stored_values'] * 32 / (8 * 36 * 44))
    with open(out / 'eval' / 'report.json') as f:
        assert json.load(f)['psnr'] == pytest.approx(report['psnr'])
    with open(out / 'eval' / 'nerv_curve.json') as f:
        curve = json.load(f)
    assert [c['step'] for c in curve] == [0, 60]  # appended per evaluation
    assert curve[1]['psnr'] > curve[0]['psnr']
    pngs = sorted(os.listdir(out / 'eval' / 'visualize'))
    assert pngs[0] == 'pred_0000.png' and len(pngs) == 8
    from PIL import Image
    compare = np.asarray(Image.open(report['compare_png']))  # 4 frames: decoded above GT
    assert compare.shape == (2 * (36 + 14 + 4) + 4, 4 * 44 + 5 * 4, 3)
    from ascendvsr.tasks.nerv import load_video
    gt_tile = compare[4 + (36 + 14 + 4) + 14:][:36, 4:4 + 44]  # row 2, tile 1: frame 0's GT
    np.testing.assert_array_equal(gt_tile, load_video(cfg).frames[0])
    assert report['rd_png'].endswith('nerv_rd.png') and os.path.getsize(report['rd_png']) > 1000


def test_resume_continues_from_the_checkpoint(fitted, log):
    cfg = make_cfg(fitted['out'], 'solver.total_steps', '68')
    trainer, step = train_nerv(cfg, log)
    assert step == 68
    assert trainer.resume() == 68  # newest checkpoint is the resumed run's end


def test_prune_and_fine_tune_then_quantize(fitted, tmp_path, log):
    ckpt = str(fitted['out'] / 'checkpoints' / 'ckpt-60')
    cfg = make_cfg(tmp_path, 'model.checkpoint', ckpt, 'nerv.prune_ratio', '0.5',
                   'nerv.warmup', '0.0', 'solver.total_steps', '16', 'solver.lr', '0.002')
    trainer, step = train_nerv(cfg, log)
    from ascendvsr.compression.pruning import sparsity
    assert sparsity(trainer.model)['prunable_sparsity'] == pytest.approx(0.5, abs=1e-3)
    pruned = NervTask(cfg).evaluate(trainer.model, log)
    assert pruned['psnr'] > fitted['psnr_before'] + 2.0
    q = NervTask(make_cfg(tmp_path, 'nerv.prune_ratio', '0.5', 'nerv.quant_bit', '8')).evaluate(
        trainer.model, log)
    st = q['storage']
    assert st['bits_per_value'] == 8 and st['bpp'] == pytest.approx(st['stored_values'] * 8 / (8 * 36 * 44))
    assert st['stored_values'] < 0.7 * st['params']
    assert abs(q['psnr'] - pruned['psnr']) < 0.5  # 8-bit costs little
    assert 'bpp_huffman' in st


def test_prune_steps_train_in_phases(fitted, tmp_path, log):
    """nerv.prune_steps [0, 0.5]: pruned at step 0 and again half-way (4 epochs of 4 steps);
    the amounts compound to keep 0.5 ** 1.5 of the prunable weights (official schedule)."""
    from ascendcv.runner.checkpoint import restore_checkpoint
    from ascendvsr.compression.pruning import sparsity
    ckpt = str(fitted['out'] / 'checkpoints' / 'ckpt-60')
    cfg = make_cfg(tmp_path, 'model.checkpoint', ckpt, 'nerv.prune_ratio', '0.5',
                   'nerv.prune_steps', '[0.0, 0.5]', 'nerv.warmup', '0.0',
                   'solver.total_steps', '16', 'solver.checkpoint_interval', '4',
                   'solver.keep_checkpoints', '10', 'solver.lr', '0.002')
    phases = NervTask(cfg).training_phases(build(cfg))
    assert [p.until for p in phases] == [8, 16] and all(p.on_start for p in phases)
    trainer, step = train_nerv(cfg, log)
    assert step == 16
    kept = {}
    for s in (0, 4, 8, 16):
        model = build(cfg)
        restore_checkpoint(model, str(tmp_path / 'checkpoints' / f'ckpt-{s}'))
        kept[s] = 1 - sparsity(model)['prunable_sparsity']
    assert kept[0] == pytest.approx(0.5 ** 0.5, abs=2e-3) and kept[4] == kept[0]
    assert kept[8] == pytest.approx(0.5 ** 1.5, abs=2e-3) and kept[16] == kept[8]
    # resuming at the second pruning step does not prune again
    again, step = train_nerv(cfg, log)
    assert step == 16 and 1 - sparsity(again.model)['prunable_sparsity'] == pytest.approx(kept[16])


# ----------------------------------------------------------------------------- export

def test_freeze_onnx_and_frozen_evaluation(fitted, tmp_path, log):
    from ascendcv.runner.freezer import FrozenGraphModel, export_and_check, freeze
    ckpt = str(fitted['out'] / 'checkpoints' / 'ckpt-60')
    cfg = make_cfg(tmp_path, 'model.checkpoint', ckpt, 'data.eval_batch_size', '-1')
    result = export_and_check(cfg, NervTask(cfg), get_entry('NeRV').build, log)
    assert result['pb_max_abs_diff'] <= 1e-6 and result['onnx_max_abs_diff'] <= 1e-5
    frozen = FrozenGraphModel(result['pb'])
    assert frozen.meta['inputs'][0]['shape'] == [None]
    model = fitted['trainer'].model
    idx = np.array([0, 3, 7], np.float32)
    np.testing.assert_allclose(frozen(idx).numpy(), model(idx).numpy(), atol=1e-6)
    with pytest.raises(tf.errors.InvalidArgumentError, match='out of range'):
        frozen(np.array([8.0], np.float32))
    live = NervTask(make_cfg(tmp_path)).evaluate(model, log)
    pb = NervTask(make_cfg(tmp_path, 'model.checkpoint', result['pb'])).evaluate(frozen, log)
    assert pb['psnr'] == pytest.approx(live['psnr'], abs=1e-4) and 'bpp' not in pb
    # uint8 output and a fixed batch
    cfg8 = make_cfg(tmp_path, 'model.convert_output_to_uint8', 'True', 'data.eval_batch_size', '2')
    path, meta = freeze(NervTask(cfg8), model, str(tmp_path / 'u8' / 'NeRV.pb'))
    y = FrozenGraphModel(path)(np.array([1.0, 2.0], np.float32)).numpy()
    assert meta['inputs'][0]['shape'] == [2] and y.dtype == np.uint8 and y.shape == (2, 36, 44, 3)


def test_infer_writes_frames_and_task_registry(fitted, tmp_path, log):
    assert get_entry('NeRV').make_task(make_cfg(tmp_path)).__class__ is NervTask
    cfg = make_cfg(tmp_path, 'inference.max_frames', '5')
    res = NervTask(cfg).infer(fitted['trainer'].model, log)
    files = sorted(os.listdir(res['output_dir']))
    assert files == [f'{i:08d}.png' for i in range(5)]
    from PIL import Image
    assert Image.open(os.path.join(res['output_dir'], files[0])).size == (44, 36)


def test_configs_build_the_paper_models():
    expected = {'nerv_s': 3201905, 'nerv_m': 6282001, 'nerv_l': 12524563}
    for name, params in expected.items():
        cfg = load_config(os.path.join(ROOT, 'configs', f'{name}.yaml'))
        assert cfg.nerv.embed == '1.25_40' and cfg.nerv.stem_dim_num == '512_1'
        model = build(cfg)
        assert model.output_size == (720, 1280) and model.count_parameters() == params
        assert cfg.solver.total_steps == 300 * 132
    small = load_config(os.path.join(ROOT, 'configs', 'nerv_small.yaml'))
    assert build(small).output_size == (180, 320) and small.nerv.resize


def test_tools_main_convert_eval_inference_freeze_train(tmp_path):
    """The user's entry point with the official-format fixture (12x16 NeRV): carphone is
    area-resized to 12x16 (its 120 frames are the video the model is evaluated on)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location('nerv_cli_main', os.path.join(ROOT, 'tools',
                                                                                  'main.py'))
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    fixture = ['model.name', 'NeRV', 'nerv.fc_hw_dim', '3_4_8', 'nerv.stem_dim_num', '64_1',
               'nerv.strides', '[2, 2]', 'nerv.lower_width', '6', 'nerv.source', 'carphone',
               'nerv.num_frames', '120', 'nerv.resize', 'True', 'data.eval_batch_size', '8',
               'output_dir', str(tmp_path)]
    prefix = tmp_path / 'converted' / 'nerv'
    assert cli.main(['--mode', 'convert', 'convert.source',
                     os.path.join(ROOT, 'tests', 'fixtures', 'nerv_tiny_state_dict.pth'),
                     'convert.output', str(prefix), *fixture]) == 0
    assert cli.main(['--mode', 'eval', 'model.checkpoint', str(prefix), *fixture]) == 0
    with open(tmp_path / 'eval' / 'report.json') as f:
        report = json.load(f)
    assert report['frames'] == 120 and report['height'] == 12 and 5 < report['psnr'] < 40
    assert report['bpp'] == pytest.approx(15533 * 32 / (120 * 12 * 16))
    assert cli.main(['--mode', 'inference', 'model.checkpoint', str(prefix),
                     'inference.max_frames', '3', *fixture]) == 0
    assert len(os.listdir(tmp_path / 'test' / 'NeRV')) == 3
    assert cli.main(['--mode', 'freeze', 'model.checkpoint', str(prefix), *fixture]) == 0
    assert (tmp_path / 'NeRV.pb').is_file() and (tmp_path / 'NeRV.onnx').is_file()
    # the frozen graph evaluates too, and a wrong size is a clear error (exit code 1)
    assert cli.main(['--mode', 'eval', 'model.checkpoint', str(tmp_path / 'NeRV.pb'),
                     *fixture]) == 0
    assert cli.main(['--mode', 'eval', 'model.checkpoint', str(prefix), *fixture,
                     'nerv.resize', 'False']) == 1
    # training from the command line: the official loss and schedule, pruning in two steps
    assert cli.main(['--mode', 'train', 'model.checkpoint', str(prefix), *fixture,
                     'output_dir', str(tmp_path / 'train'), 'solver.total_steps', '4',
                     'nerv.prune_ratio', '0.5', 'nerv.prune_steps', '[0.0, 0.5]',
                     'solver.lr', '0.0001', 'data.batch_size', '60']) == 0
    assert os.path.exists(tmp_path / 'train' / 'checkpoints' / 'ckpt-4.index')
    log_text = (tmp_path / 'train' / 'log.txt').read_text()
    assert 'Prune step 1/2 at epoch 0' in log_text and 'Prune step 2/2 at epoch 1' in log_text
