"""SCI evaluation: metrics, evaluate_sci (table, JSON, PNG grid, real-data frames), the SCI tasks
(Task interface: evaluate, infer, serving signature), GAP-TV through tools/main.py."""
import json
import logging
import os
import shutil

import numpy as np
import pytest
import scipy.io

from ascendcv.dataloader.sci import SciDataError, list_sci_files, load_mat, random_mask
from ascendcv.utils.metrics import psnr_sci, ssim_matlab
from ascendcv.utils.sci_physics import mask_sum, split_frames
from ascendvsr.config.defaults import get_cfg_defaults
from ascendvsr.tasks.sci import GapTvTask, RevSciTask, SciTask, evaluate_sci, reconstruct_files

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURE = os.path.join(HERE, '..', 'fixtures', 'sci', 'drop8_cacti.mat')
LOG = logging.getLogger('test_sci_eval')


def naive(meas, mask):
    """A cheap deterministic reconstruction: every frame = meas / mask_s."""
    meas = np.asarray(meas, np.float32)
    return np.repeat((meas / mask_sum(mask))[..., None], mask.shape[-1], axis=-1)


# ---------------------------------------------------------------------------- metrics

def test_psnr_peaks():
    ref = np.full((4, 4), 0.5)
    x = ref + 0.05
    assert psnr_sci(ref, x) == pytest.approx(10 * np.log10(0.25 / 0.0025))   # peak = ref max
    assert psnr_sci(ref, x, 1.0) == pytest.approx(10 * np.log10(1 / 0.0025))  # peak 255 / 255
    assert psnr_sci(ref, ref) == float('inf')


def test_ssim_matches_a_brute_force_replicate_padded_window():
    rng = np.random.default_rng(0)
    a, b = rng.random((14, 13)), rng.random((14, 13))
    b = 0.6 * a + 0.4 * b
    g = np.exp(-np.arange(-5, 6) ** 2 / 4.5)
    win = np.outer(g, g) / np.outer(g, g).sum()
    pa, pb = np.pad(a, 5, mode='edge'), np.pad(b, 5, mode='edge')
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    vals = []
    for i in range(14):
        for j in range(13):
            wa, wb = pa[i:i + 11, j:j + 11], pb[i:i + 11, j:j + 11]
            ma, mb = (win * wa).sum(), (win * wb).sum()
            va, vb = (win * wa * wa).sum() - ma ** 2, (win * wb * wb).sum() - mb ** 2
            cov = (win * wa * wb).sum() - ma * mb
            vals.append((2 * ma * mb + c1) * (2 * cov + c2)
                        / ((ma ** 2 + mb ** 2 + c1) * (va + vb + c2)))
    assert ssim_matlab(a, b) == pytest.approx(np.mean(vals), abs=1e-12)
    assert ssim_matlab(a, a) == pytest.approx(1.0)


# ---------------------------------------------------------------------------- evaluate_sci

def _smooth_video(h, w, n, seed):
    yy, xx = np.mgrid[0:h, 0:w]
    frames = [128 + 100 * np.sin(xx / 5.0 + t * 0.3 + seed) * np.cos(yy / 7.0) for t in range(n)]
    return np.clip(np.stack(frames, -1), 0, 255).astype(np.uint8)


@pytest.fixture()
def sci_dir(tmp_path):
    root = tmp_path / 'sci'
    root.mkdir()
    shutil.copy(FIXTURE, root / 'drop8_cacti.mat')               # benchmark, measurement 1 only
    mask = random_mask(24, 20, 8, seed=1).astype(np.uint8)
    scipy.io.savemat(str(root / 'kobe_tiny.mat'),                  # benchmark without meas
                     {'orig': _smooth_video(24, 20, 16, 0), 'mask': mask})
    real = (split_frames(_smooth_video(24, 20, 16, 1), 8).astype(np.float64) * mask).sum(-1)
    scipy.io.savemat(str(root / 'real_scene.mat'), {'meas': np.moveaxis(real, 0, -1)})
    np.save(str(tmp_path / 'real_mask.npy'), mask)
    return root


def _cfg(tmp_path, data_dir, **sci):
    cfg = get_cfg_defaults()
    cfg.output_dir = str(tmp_path / 'out')
    cfg.sci.data_dir = str(data_dir)
    cfg.sci.mask_file = str(tmp_path / 'real_mask.npy')
    cfg.data.eval_batch_size = 1
    for k, v in sci.items():
        setattr(cfg.sci, k, v)
    return cfg


def test_evaluate_sci_report_grid_and_real_frames(tmp_path, sci_dir, caplog):
    cfg = _cfg(tmp_path, sci_dir)
    calls = []

    def fn(meas, mask):
        calls.append(meas.shape)
        return naive(meas, mask)

    with caplog.at_level(logging.INFO, logger='test_sci_eval'):
        report = evaluate_sci(cfg, fn, LOG, tag='naive')
    assert list(report['datasets']) == ['kobe_tiny', 'drop8']  # benchmark order, then name
    kobe, drop = report['datasets']['kobe_tiny'], report['datasets']['drop8']
    assert (kobe['measurements'], kobe['frames'], len(kobe['psnr_per_frame'])) == (2, 16, 16)
    assert (drop['measurements'], drop['frames']) == (1, 8)  # 'drop' is scored on meas 1 only
    # the numbers are the PnP-convention scores of the naive reconstruction
    data = load_mat(FIXTURE)
    gt = split_frames(data['orig'], 8)[0] / 255
    rec = naive(data['meas'][None, ..., 0] / 255, data['mask'])[0]
    want = np.mean([psnr_sci(gt[..., t], rec[..., t]) for t in range(8)])
    assert drop['psnr'] == pytest.approx(want, abs=1e-4)
    assert 0 < drop['ssim'] < 1
    assert report['mean']['psnr'] == pytest.approx((kobe['psnr'] + drop['psnr']) / 2)
    # warm-up + one call per measurement (eval_batch_size 1)
    assert calls[0] == (1, 24, 20) and len(calls) == 1 + 2 + 1 + 2
    # JSON on disk = returned report
    path = os.path.join(cfg.output_dir, 'eval', 'sci_report.json')
    with open(path) as f:
        assert json.load(f) == json.loads(json.dumps(report))
    # the PNG grid: 2 rows of 8 labelled tiles
    from PIL import Image
    with Image.open(drop['grid']) as im:
        assert im.size == (8 * 256 + 9 * 4, 2 * (256 + 14 + 4) + 4)
        px = np.asarray(im)
    tile = px[4 + 14:4 + 14 + 256, 4:4 + 256]  # GT frame 1
    np.testing.assert_array_equal(tile, data['orig'][..., 0].astype(np.uint8))
    assert px[4:4 + 14, 4:60].max() > 200  # label text drawn (anti-aliased)
    # real data: frames written, no scores
    real = report['real']['real_scene']
    assert real['frames_written'] == 16 and 'psnr' not in real
    files = sorted(os.listdir(real['frames_dir']))
    assert len(files) == 16 and files[0] == 'real_scene_0000.png'
    text = caplog.text
    assert 'kobe_tiny' in text and 'mean' in text and 'PSNR(dB)' in text


def test_evaluate_sci_options(tmp_path, sci_dir):
    cfg = _cfg(tmp_path, sci_dir, psnr_convention='cacti', datasets=['kobe_tiny'],
               save_grid=False, save_frames=True, max_measurements=1)
    cfg.data.eval_batch_size = -1
    report = evaluate_sci(cfg, naive, LOG)
    assert list(report['datasets']) == ['kobe_tiny'] and not report['real']
    kobe = report['datasets']['kobe_tiny']
    assert kobe['measurements'] == 1 and 'grid' not in kobe
    assert len(os.listdir(kobe['frames_dir'])) == 8
    data = load_mat(str(sci_dir / 'kobe_tiny.mat'))
    gt = split_frames(data['orig'], 8)[0] / 255
    meas = (gt * data['mask']).sum(-1)[None]
    rec = naive(meas, data['mask'])[0]
    assert kobe['psnr'] == pytest.approx(np.mean([psnr_sci(gt[..., t], rec[..., t], 1.0)
                                                  for t in range(8)]), abs=1e-4)


def test_evaluate_sci_errors(tmp_path, sci_dir):
    with pytest.raises(ValueError, match='psnr_convention'):
        evaluate_sci(_cfg(tmp_path, sci_dir, psnr_convention='matlab'), naive, LOG)
    with pytest.raises(SciDataError, match='not found'):
        evaluate_sci(_cfg(tmp_path, tmp_path / 'none'), naive, LOG)
    with pytest.raises(SciDataError, match=r"\['crash'\] not found"):
        list_sci_files(str(sci_dir), ['crash'])
    cfg = _cfg(tmp_path, sci_dir, mask_file='', datasets=['real_scene'])
    with pytest.raises(SciDataError, match=r'real_scene\.mat.*has no mask; set sci.mask_file'):
        evaluate_sci(cfg, naive, LOG)
    cfg = _cfg(tmp_path, sci_dir, datasets=['kobe_tiny'])
    with pytest.raises(ValueError, match=r'expected \(1, 24, 20, 8\) \[N, H, W, B\] \(or colour'):
        evaluate_sci(cfg, lambda meas, mask: naive(meas, mask)[..., :4], LOG)


def test_reconstruct_files_and_network_adapter(tmp_path, sci_dir):
    cfg = _cfg(tmp_path, sci_dir)
    out = reconstruct_files(cfg, naive, LOG, str(sci_dir / 'real_scene.mat'))
    assert len(os.listdir(out['real_scene'])) == 16
    # SciTask.infer: inference.source, else sci.data_dir (every measurement of every file)
    cfg.sci.max_measurements = 1
    out = SciTask(cfg).infer(naive, LOG)  # a plain callable of (meas, mask) runs as it is
    assert sorted(out) == ['drop8', 'kobe_tiny', 'real_scene']
    assert len(os.listdir(out['kobe_tiny'])) == 8
    seen = {}

    def model(inputs, training):
        meas_re, mask = inputs
        seen.update(training=training, meas_re=np.asarray(meas_re))
        return np.repeat(np.asarray(meas_re)[..., None], mask.shape[-1], -1)

    mask = random_mask(6, 6, 8, seed=0)
    meas = np.random.default_rng(0).random((2, 6, 6)).astype(np.float32)
    rec = np.asarray(SciTask(cfg).serve(model, meas, mask))  # (meas_re, mask) networks
    assert seen['training'] is False and rec.shape == (2, 6, 6, 8)
    np.testing.assert_allclose(seen['meas_re'], meas / mask_sum(mask), rtol=1e-6)


def test_gap_tv_task_in_process(tmp_path, sci_dir):
    """GapTvTask(cfg).evaluate(build_gap_tv(cfg)) reproduces the published Drop number."""
    from ascendcv.runner.task import Task
    from ascendvsr.config import load_config
    from ascendvsr.models.gap_tv import build_gap_tv
    cfg = load_config(os.path.join(HERE, '..', '..', 'configs', 'gap_tv.yaml'),
                      ['sci.data_dir', str(sci_dir), 'sci.datasets', "['drop8']",
                       'output_dir', str(tmp_path / 'gap')])
    task = GapTvTask(cfg)
    assert isinstance(task, Task) and task.cfg is cfg
    assert GapTvTask.needs_checkpoint is False and GapTvTask.trainable is False
    assert RevSciTask.needs_checkpoint is True and RevSciTask.trainable is True
    with pytest.raises(ValueError, match='nothing to train'):
        task.train_pipeline(None, None)
    report = task.evaluate(build_gap_tv(cfg), LOG)
    assert report['model'] == 'GAP-TV'
    assert abs(report['datasets']['drop8']['psnr'] - 34.63) < 0.1  # the published Drop number
    with open(tmp_path / 'gap' / 'eval' / 'sci_report.json') as f:
        assert json.load(f)['datasets']['drop8']['psnr'] == report['datasets']['drop8']['psnr']


def test_gap_tv_serving_signature_and_frozen_graph(tmp_path, sci_dir):
    """GAP-TV's serving signature (meas [None, H, W], mask [H, W, B]; dynamic H, W with
    data.eval_in_size <= 0), frozen to constants, evaluates like the live model."""
    from ascendcv.runner.freezer import FrozenGraphModel, freeze
    from ascendvsr.models.gap_tv import build_gap_tv
    cfg = _cfg(tmp_path, sci_dir, datasets=['kobe_tiny'], gap_tv_iter_max=5)
    cfg.data.eval_in_size = [-1, -1]
    task, model = GapTvTask(cfg), build_gap_tv(cfg)
    specs = task.serving_signature(model)
    assert [(s.name, s.shape.as_list()) for s in specs] == [('meas', [None, None, None]),
                                                          ('mask', [None, None, 8])]
    meas, mask = task.example_inputs(model)
    assert meas.shape == (2, 64, 64) and mask.shape == (64, 64, 8)
    assert task.export_meta(model)['sci']['input_size'] == [None, None]
    path, meta = freeze(task, model, str(tmp_path / 'GAP-TV.pb'))
    assert [i['shape'] for i in meta['inputs']] == [[None, None, None], [None, None, 8]]
    frozen = FrozenGraphModel(path)
    live = task.serve(model, meas, mask).numpy()
    np.testing.assert_allclose(frozen(meas, mask).numpy(), live, atol=1e-5)
    want = task.evaluate(model, LOG)['datasets']['kobe_tiny']['psnr']
    got = task.evaluate(frozen, LOG)['datasets']['kobe_tiny']['psnr']
    assert got == pytest.approx(want, abs=1e-3)
    cfg.data.eval_in_size = [32, 32]  # frozen for 32x32: a 24x20 benchmark is refused
    frozen = FrozenGraphModel(freeze(task, model, str(tmp_path / 'GAP-TV32.pb'))[0])
    with pytest.raises(SciDataError, match=r'kobe_tiny\.mat.*frozen graph takes 32x32 '
                                           r'measurements.*got meas \(1, 24, 20\)'):
        task.evaluate(frozen, LOG)


def test_gap_tv_through_tools_main(tmp_path, sci_dir):
    """The only CLI: tools/main.py --mode eval with configs/gap_tv.yaml (no checkpoint)."""
    from tests.runner.runner_helpers import ROOT, run_main
    out = tmp_path / 'cli'
    run_main('--config-file', os.path.join(ROOT, 'configs', 'gap_tv.yaml'), '--mode', 'eval',
             f'sci.data_dir={sci_dir}', "sci.datasets=['drop8']", f'output_dir={out}',
             'sci.gap_tv_iter_max=10', 'sci.save_grid=False')
    with open(out / 'eval' / 'sci_report.json') as f:
        report = json.load(f)
    assert report['model'] == 'GAP-TV' and report['datasets']['drop8']['measurements'] == 1
    assert abs(report['datasets']['drop8']['psnr'] - 8.68) < 0.05  # 10 iterations (100: 34.63)


# ---------------------------------------------------------------------------- colour (Bayer)

def make_sci_benchmark(capsys, *argv):
    """scripts/make_sci_benchmark.py run in-process: ``(exit code, stdout, stderr)``."""
    import importlib.util
    path = os.path.join(HERE, '..', '..', 'scripts', 'make_sci_benchmark.py')
    spec = importlib.util.spec_from_file_location('make_sci_benchmark', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    capsys.readouterr()
    rc = module.main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_colour_benchmark_with_colour_revsci(tmp_path, sci_dir, capsys):
    """make_sci_benchmark.py --color -> evaluate_sci with an (untrained) colour RevSCI: RGB
    scores, RGB grid; a colour model on a grayscale benchmark is a clear error."""
    from ascendcv.utils.sci_physics import measure_bayer
    from ascendvsr.models.revsci import RevSCI
    from ascendvsr.tasks.sci import RevSciTask
    mask = random_mask(32, 32, 8, seed=4).astype(np.uint8)
    np.save(str(tmp_path / 'mask.npy'), mask)
    frames = np.random.default_rng(0).integers(0, 256, (16, 40, 36, 3), dtype=np.uint8)
    np.save(str(tmp_path / 'clip.npy'), frames)
    color_dir = tmp_path / 'color'
    from ascendcv.utils.video_io import write_png
    for i, f in enumerate(frames):
        write_png(str(tmp_path / 'frames' / f'{i:03d}.png'), f)
    rc, stdout, stderr = make_sci_benchmark(
        capsys, '--source', str(tmp_path / 'frames'), '--mask', str(tmp_path / 'mask.npy'),
        '--frames', '16', '--color', '--out', str(color_dir / 'clip_color.mat'))
    assert rc == 0, stderr
    assert 'orig (32, 32, 3, 16)' in stdout
    data = load_mat(str(color_dir / 'clip_color.mat'))
    crop = frames[:8, 4:36, 2:34]  # centre crop to the mask size
    np.testing.assert_allclose(data['meas'][..., 0], measure_bayer(crop.astype(np.float64), mask),
                               rtol=1e-6)
    model = RevSCI(variant='color', num_block=1, mask_size=(32, 32))
    cfg = _cfg(tmp_path, color_dir, first_measurement_only=[])
    cfg.model.name = 'RevSCI'
    report = RevSciTask(cfg).evaluate(model, LOG)
    entry = report['datasets']['clip_color']
    assert (entry['measurements'], entry['frames'], len(entry['ssim_per_frame'])) == (2, 16, 16)
    rec = np.asarray(model.reconstruct(data['meas'][None, ..., 1] / 255, data['mask']))
    gt = split_frames(data['orig'], 8)[1] / 255
    assert entry['psnr_per_frame'][9] == pytest.approx(psnr_sci(gt[..., 1], rec[0, ..., 1]),
                                                        abs=1e-4)
    from PIL import Image
    with Image.open(entry['grid']) as im:
        assert im.mode == 'RGB'
        tile = np.asarray(im)[4 + 14:4 + 14 + 32, 4:4 + 32]
    np.testing.assert_array_equal(tile, crop[0])
    # failures: a bad --size, and a colour model on grayscale frames
    rc, _, stderr = make_sci_benchmark(
        capsys, '--source', str(tmp_path / 'frames'), '--mask', str(tmp_path / 'mask.npy'),
        '--size', '64', '64', '--out', str(tmp_path / 'x.mat'))
    assert rc == 1 and '--size 64x64 is larger' in stderr
    assert not os.path.exists(tmp_path / 'x.mat')
    gray_dir = tmp_path / 'gray'
    gray_dir.mkdir()
    scipy.io.savemat(str(gray_dir / 'g.mat'), {'orig': _smooth_video(32, 32, 8, 0), 'mask': mask})
    with pytest.raises(SciDataError, match='holds grayscale frames .* reconstructs colour'):
        RevSciTask(_cfg(tmp_path, gray_dir)).evaluate(model, LOG)
