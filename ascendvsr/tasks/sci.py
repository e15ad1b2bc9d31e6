"""Video SCI task: benchmark evaluation (PSNR/SSIM table, JSON, PNG grids) and real-data
reconstruction, for any reconstruction callable; GAP-TV registered as ``model.name = 'GAP-TV'``.

A *reconstruction function* is any callable ``fn(meas, mask) -> video`` with

* ``meas`` float32 ``[N, H, W]`` on the frames' scale (file values / ``sci.max_value``),
* ``mask`` float32 ``[H, W, B]``,
* ``video`` ``[N, H, W, B]`` (numpy or tensor), frames in [0, 1]; a colour model (Bayer
  measurements, e.g. RevSCI ``variant='color'``) returns ``[N, H, W, 3, B]``.

:class:`ascendvsr.models.gap_tv.GapTV` is one; :func:`network_reconstruct_fn` wraps a network that
takes ``(meas_re, mask)`` (RevSCI / EfficientSCI input ``meas / mask_s``).

Evaluation conventions (``sci.psnr_convention``), on frames in [0, 1], reconstruction not clipped:

* ``pnp`` (PnP-SCI ``gapdenoise_cacti.m``): PSNR with peak = the ground-truth frame's maximum;
* ``cacti``: PSNR with peak ``1`` (= ``sci.max_value``, 255 for 8-bit data).

SSIM is MATLAB's ``ssim`` in both: 11x11 Gaussian window (sigma 1.5), replicate padding, mean of
the full map, data range 1. PSNR/SSIM are averaged over the frames of a dataset, the table's
``mean`` over datasets. Colour benchmarks (``orig [H, W, 3, N]``, measured through an RGGB Bayer
filter when the file has no ``meas``): PSNR over each RGB frame, SSIM the mean over R, G, B.
Datasets whose name starts with an entry of
``sci.first_measurement_only`` (PnP-SCI: runner, drop) are scored on their first measurement only.
"""
import os
import time

import numpy as np
from tqdm import tqdm

from ascendcv.dataloader.sci import (SciDataError, is_color, load_mask, load_mat, measure,
                                     measure_bayer, normalize_measurement_tf, split_frames)
from ascendvsr.tasks import register_task
from ascendcv.utils.fileio import atomic_write_json as _atomic_json

__all__ = ['psnr_sci', 'ssim_matlab', 'evaluate_sci', 'reconstruct_files', 'list_sci_files',
           'network_reconstruct_fn', 'write_grid', 'SciTask', 'GapTvTask', 'CONVENTIONS',
           'BENCHMARK_ORDER']

CONVENTIONS = ('pnp', 'cacti')
BENCHMARK_ORDER = ('kobe', 'traffic', 'runner', 'drop', 'crash', 'aerial')
"""The six grayscale benchmarks in the order of the papers' tables (others follow by name)."""


# ============================================================================ metrics

def psnr_sci(ref, x, peak=None):
    """PSNR (dB) of ``x`` against ``ref`` in float64; ``peak=None`` uses ``ref.max()`` (PnP-SCI).
    ``inf`` for identical images."""
    ref = np.asarray(ref, np.float64)
    x = np.asarray(x, np.float64)
    if ref.shape != x.shape:
        raise ValueError(f'psnr_sci: shapes differ: {ref.shape} vs {x.shape}')
    peak = float(ref.max()) if peak is None else float(peak)
    mse = float(np.mean((ref - x) ** 2))
    return float('inf') if mse == 0 else float(10 * np.log10(peak ** 2 / mse))


def ssim_matlab(x, ref, data_range=1.0):
    """MATLAB ``ssim(x, ref)`` of two 2-D images: Gaussian window sigma 1.5 (11x11), replicate
    padding, mean of the full SSIM map, ``C1 = (0.01 L)^2``, ``C2 = (0.03 L)^2``."""
    from scipy.ndimage import correlate1d
    x = np.asarray(x, np.float64)
    ref = np.asarray(ref, np.float64)
    if x.shape != ref.shape or x.ndim != 2:
        raise ValueError(f'ssim_matlab expects two [H, W] images of one shape, got {x.shape} and '
                         f'{ref.shape}')
    sigma = 1.5
    radius = int(np.ceil(3 * sigma))
    g = np.exp(-np.arange(-radius, radius + 1) ** 2 / (2 * sigma ** 2))
    g /= g.sum()

    def blur(im):
        return correlate1d(correlate1d(im, g, axis=0, mode='nearest'), g, axis=1, mode='nearest')

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mx, mr = blur(x), blur(ref)
    vx, vr, cov = blur(x * x) - mx * mx, blur(ref * ref) - mr * mr, blur(x * ref) - mx * mr
    smap = ((2 * mx * mr + c1) * (2 * cov + c2)) / ((mx * mx + mr * mr + c1) * (vx + vr + c2))
    return float(smap.mean())


def _frame_scores(gt, rec, convention):
    """Per-frame PSNR and SSIM lists for ``gt``/``rec`` ``[M, H, W, B]`` or colour
    ``[M, H, W, 3, B]`` (frame order m*B+t; colour SSIM = mean over the channels)."""
    peak = None if convention == 'pnp' else 1.0
    psnr, ssim = [], []
    for m in range(gt.shape[0]):
        for t in range(gt.shape[-1]):
            ref, x = gt[m, ..., t], rec[m, ..., t]
            psnr.append(psnr_sci(ref, x, peak))
            if ref.ndim == 3:
                ssim.append(float(np.mean([ssim_matlab(x[..., c], ref[..., c])
                                           for c in range(ref.shape[-1])])))
            else:
                ssim.append(ssim_matlab(x, ref))
    return psnr, ssim


# ============================================================================ helpers

def network_reconstruct_fn(model):
    """Reconstruction function of a network called as ``model((meas_re, mask), training=False)``
    with ``meas_re = meas / mask_s`` ``[N, H, W]`` and ``mask`` ``[H, W, B]`` (RevSCI layout)."""
    def fn(meas, mask):
        return model((normalize_measurement_tf(meas, mask), mask), training=False)
    return fn


def _dataset_name(path):
    stem = os.path.splitext(os.path.basename(path))[0]
    return stem[:-len('_cacti')] if stem.endswith('_cacti') else stem


def _order_key(path):
    name = _dataset_name(path).lower()
    for i, bench in enumerate(BENCHMARK_ORDER):
        if name.startswith(bench):
            return (i, name)
    return (len(BENCHMARK_ORDER), name)


def list_sci_files(folder, names=()):
    """The ``.mat`` files of ``folder`` (benchmark order first), restricted to ``names`` (file
    stems, with or without ``_cacti``) when given."""
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise SciDataError(f'SCI data folder not found: {folder!r} (sci.data_dir)')
    files = [os.path.join(folder, f) for f in os.listdir(folder)
             if f.lower().endswith('.mat') and not f.startswith('.')]
    if names:
        wanted = {str(n) for n in names}
        files = [f for f in files if _dataset_name(f) in wanted
                 or os.path.splitext(os.path.basename(f))[0] in wanted]
        found = {_dataset_name(f) for f in files} | {os.path.splitext(os.path.basename(f))[0]
                                                     for f in files}
        missing = sorted(wanted - found)
        if missing:
            raise SciDataError(f'sci.datasets {missing} not found in {folder!r}')
    if not files:
        raise SciDataError(f'no .mat files in {folder!r} (sci.data_dir)')
    return sorted(files, key=_order_key)


def _mask_for(data, cfg, path):
    if 'mask' in data:
        return data['mask']
    if cfg.sci.mask_file:
        return load_mask(cfg.sci.mask_file)
    raise SciDataError(f'{path!r} has no mask; set sci.mask_file to the mask of these '
                       f'measurements')


class _Runner:
    """Calls the reconstruction function in batches, timing every call but a first warm-up."""

    def __init__(self, fn, batch_size):
        self.fn, self.batch_size, self.warm = fn, batch_size, False

    def __call__(self, meas, mask, desc):
        n = len(meas)
        bs = n if self.batch_size < 1 else self.batch_size
        if not self.warm:  # graph tracing / compilation is not part of the timing
            np.asarray(self.fn(meas[:bs], mask))
            self.warm = True
        out, spent = [], 0.0
        for start in tqdm(range(0, n, bs), desc=desc, unit='batch', leave=False):
            t0 = time.perf_counter()
            rec = np.asarray(self.fn(meas[start:start + bs], mask), np.float32)
            spent += time.perf_counter() - t0
            gray = meas[start:start + bs].shape + mask.shape[-1:]
            if rec.shape not in (gray, gray[:-1] + (3,) + gray[-1:]):
                raise ValueError(f'reconstruction has shape {rec.shape}, expected {gray} '
                                 f'[N, H, W, B] (or colour [N, H, W, 3, B])')
            out.append(rec)
        return np.concatenate(out), spent


def write_grid(path, rows, labels):
    """Write a labelled grid PNG: ``rows`` is a list of ``[B, H, W]`` (grayscale) or
    ``[B, H, W, 3]`` (RGB) float [0, 1] frame rows, ``labels`` one list of ``B`` strings per row
    (drawn above each tile)."""
    from PIL import Image, ImageDraw

    from ascendcv.utils.video_io import to_uint8, write_png
    band, gap = 14, 4
    b, h, w = rows[0].shape[:3]
    color = rows[0].ndim == 4
    width = b * w + (b + 1) * gap
    height = len(rows) * (h + band + gap) + gap
    canvas = Image.new('RGB' if color else 'L', (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    for r, (frames, row_labels) in enumerate(zip(rows, labels)):
        y = gap + r * (h + band + gap)
        for t in range(b):
            x = gap + t * (w + gap)
            draw.text((x + 2, y + 1), row_labels[t], fill=(255, 255, 255) if color else 255)
            canvas.paste(Image.fromarray(to_uint8(np.clip(frames[t], 0, 1))), (x, y + band))
    write_png(path, np.asarray(canvas))


def _write_frames(folder, name, video):
    """Frames of ``video [M, H, W, B]`` (or colour ``[M, H, W, 3, B]``) ->
    ``folder/name/name_0000.png`` ... (order m*B+t)."""
    from ascendcv.utils.video_io import to_uint8, write_png
    frames = np.moveaxis(video, -1, 1).reshape((-1,) + video.shape[1:-1])
    for i, frame in enumerate(frames):
        write_png(os.path.join(folder, name, f'{name}_{i:04d}.png'), to_uint8(np.clip(frame, 0, 1)))
    return len(frames)


def _measurements(data, mask, max_value):
    if 'meas' in data:
        return np.ascontiguousarray(np.moveaxis(data['meas'], -1, 0)) / np.float32(max_value)
    gt = split_frames(data['orig'], mask.shape[-1]) / np.float32(max_value)
    if is_color(gt):  # [M, H, W, 3, B]: RGGB Bayer measurement of the RGB frames
        return measure_bayer(np.moveaxis(gt, -1, 1), mask)
    return measure(gt, mask)


# ============================================================================ evaluation

def evaluate_sci(cfg, reconstruct_fn, logger, tag='model'):
    """Evaluate ``reconstruct_fn(meas, mask) -> video`` on the ``.mat`` files of ``sci.data_dir``.

    Files with ``orig`` are benchmarks: their measurements (``meas``, or simulated from
    ``orig`` and ``mask``) are reconstructed, scored (``sci.psnr_convention``) and, with
    ``sci.save_grid``, drawn as ``<report dir>/sci_grid_<name>.png`` (ground truth above the
    reconstruction of the first measurement). Files with only ``meas`` are real data: their
    reconstructed frames go to ``output_dir/<sci.frames_dir>/<name>/``. Prints one table line per
    dataset and the mean, writes the JSON report ``output_dir/<sci.report>`` and returns it.
    Measurements go ``data.eval_batch_size`` at a time (< 1: all of a file at once);
    ``seconds_per_measurement`` excludes one warm-up call.
    """
    sci = cfg.sci
    convention = str(sci.psnr_convention).lower()
    if convention not in CONVENTIONS:
        raise ValueError(f'sci.psnr_convention must be one of {CONVENTIONS}, got '
                         f'{sci.psnr_convention!r}')
    files = list_sci_files(sci.data_dir, list(sci.datasets))
    report_path = os.path.join(cfg.output_dir, sci.report)
    frames_root = os.path.join(cfg.output_dir, sci.frames_dir)
    runner = _Runner(reconstruct_fn, int(cfg.data.eval_batch_size))
    first_only = tuple(str(p).lower() for p in sci.first_measurement_only)
    peak = 'ground-truth frame max' if convention == 'pnp' else f'{sci.max_value:g} (8-bit scale)'
    report = dict(model=tag, data_dir=sci.data_dir, convention=convention, psnr_peak=peak,
                  ssim='MATLAB ssim: Gaussian 11x11 sigma 1.5, replicate padding, data range 1',
                  datasets={}, real={})
    logger.info(f'SCI evaluation of {tag} on {len(files)} file(s) in {sci.data_dir} '
                f'({convention} convention: PSNR peak = {peak})')
    for path in files:
        name = _dataset_name(path)
        data = load_mat(path)
        mask = _mask_for(data, cfg, path)
        meas = _measurements(data, mask, sci.max_value)
        if mask.shape[:2] != meas.shape[1:]:
            raise SciDataError(f'{path!r}: measurements are {meas.shape[1]}x{meas.shape[2]} but '
                               f'the mask is {mask.shape[0]}x{mask.shape[1]}')
        count = len(meas)
        if 'orig' in data and name.lower().startswith(first_only):
            count = 1
        if sci.max_measurements > 0:
            count = min(count, int(sci.max_measurements))
        rec, spent = runner(meas[:count], mask, desc=name)
        entry = dict(file=path, measurements=count, frames=count * mask.shape[-1],
                     seconds_per_measurement=spent / count)
        if 'orig' not in data:
            entry['frames_dir'] = os.path.join(frames_root, name)
            entry['frames_written'] = _write_frames(frames_root, name, rec)
            report['real'][name] = entry
            logger.info(f'{name}: real data, {count} measurement(s) -> {entry["frames_dir"]} '
                        f'({entry["seconds_per_measurement"]:.3f} s/measurement)')
            continue
        gt = split_frames(data['orig'], mask.shape[-1])[:count] / np.float32(sci.max_value)
        if gt.shape != rec.shape:
            kinds = {True: 'colour', False: 'grayscale'}
            raise SciDataError(f'{path!r} holds {kinds[is_color(gt)]} frames {gt.shape[1:]} but '
                               f'the model reconstructs {kinds[is_color(rec)]} {rec.shape[1:]} '
                               f'(colour models need colour benchmarks, orig H x W x 3 x N; '
                               f'grayscale models grayscale ones, orig H x W x N)')
        psnr, ssim = _frame_scores(gt, rec, convention)
        entry.update(psnr=float(np.mean(psnr)), ssim=float(np.mean(ssim)),
                     psnr_per_frame=psnr, ssim_per_frame=ssim)
        if sci.save_grid:
            grid = os.path.join(os.path.dirname(report_path), f'sci_grid_{name}.png')
            b = mask.shape[-1]
            write_grid(grid, [np.moveaxis(gt[0], -1, 0), np.moveaxis(rec[0], -1, 0)],
                       [[f'GT {t + 1}' for t in range(b)],
                        [f'{tag} {psnr[t]:.2f}dB' for t in range(b)]])
            entry['grid'] = grid
        if sci.save_frames:
            entry['frames_dir'] = os.path.join(frames_root, name)
            _write_frames(frames_root, name, rec)
        report['datasets'][name] = entry
    if report['datasets']:
        scored = report['datasets'].values()
        report['mean'] = dict(psnr=float(np.mean([e['psnr'] for e in scored])),
                              ssim=float(np.mean([e['ssim'] for e in scored])))
        logger.info(f'{"dataset":<14}{"meas":>5}{"frames":>7}{"PSNR(dB)":>10}{"SSIM":>8}'
                    f'{"s/meas":>9}')
        for name, e in report['datasets'].items():
            logger.info(f'{name:<14}{e["measurements"]:>5}{e["frames"]:>7}{e["psnr"]:>10.2f}'
                        f'{e["ssim"]:>8.4f}{e["seconds_per_measurement"]:>9.3f}')
        logger.info(f'{"mean":<26}{report["mean"]["psnr"]:>10.2f}{report["mean"]["ssim"]:>8.4f}')
    _atomic_json(report_path, report)
    logger.info(f'Report: {report_path}')
    return report


def reconstruct_files(cfg, reconstruct_fn, logger, source):
    """Reconstruct every measurement of ``source`` (a ``.mat`` file or a folder of them) and
    write the frames to ``output_dir/<sci.frames_dir>/<name>/``; returns ``{name: folder}``."""
    source = os.fspath(source)
    if os.path.isdir(source):
        paths = list_sci_files(source)
    elif os.path.isfile(source):
        paths = [source]
    else:
        raise SciDataError(f'SCI measurement source not found: {source!r} (a .mat file or a '
                           f'folder of them)')
    runner = _Runner(reconstruct_fn, int(cfg.data.eval_batch_size))
    root = os.path.join(cfg.output_dir, cfg.sci.frames_dir)
    out = {}
    for path in paths:
        name = _dataset_name(path)
        data = load_mat(path)
        mask = _mask_for(data, cfg, path)
        meas = _measurements(data, mask, cfg.sci.max_value)
        if cfg.sci.max_measurements > 0:
            meas = meas[:int(cfg.sci.max_measurements)]
        rec, spent = runner(meas, mask, desc=name)
        n = _write_frames(root, name, rec)
        out[name] = os.path.join(root, name)
        logger.info(f'{name}: {len(meas)} measurement(s), {n} frames -> {out[name]} '
                    f'({spent / len(meas):.3f} s/measurement)')
    return out


# ============================================================================ task

class SciTask:
    """Video SCI task for networks taking ``(meas_re, mask)``; subclasses may override
    :meth:`reconstruct_fn` for another calling convention."""
    name = 'sci'
    needs_checkpoint = True

    @staticmethod
    def reconstruct_fn(model):
        from ascendvsr.models.gap_tv import GapTV
        return model if isinstance(model, GapTV) else network_reconstruct_fn(model)

    @staticmethod
    def train_pipeline(cfg, model, backend):
        from ascendcv.dataloader.sci import (build_sci_dataset, build_sci_train_pipeline,
                                             training_mask)
        dataset = build_sci_dataset(cfg, color=bool(getattr(model, 'color', False)))
        mask = training_mask(cfg)

        def pipeline_fn(start_step):
            return build_sci_train_pipeline(cfg, dataset, mask, seed=cfg.seed,
                                            start_step=start_step, rank=backend.rank,
                                            world_size=backend.world_size)
        return pipeline_fn

    @classmethod
    def evaluate(cls, cfg, model, logger):
        return evaluate_sci(cfg, cls.reconstruct_fn(model), logger, tag=cfg.model.name)

    @classmethod
    def infer(cls, cfg, model, logger):
        return reconstruct_files(cfg, cls.reconstruct_fn(model), logger,
                                 cfg.inference.source or cfg.sci.data_dir)


class GapTvTask(SciTask):
    """GAP-TV: nothing to train; evaluation and inference as :class:`SciTask`."""
    name = 'gap_tv'
    needs_checkpoint = False  # the model is built from cfg.sci alone (no weights to load)

    @staticmethod
    def train_pipeline(cfg, model, backend):
        raise ValueError('GAP-TV is an iterative algorithm without weights: there is nothing to '
                         'train (use --mode eval)')


class RevSciTask(SciTask):
    """RevSCI: reconstruction through ``model.reconstruct(meas, mask)`` (frames last); training
    targets transposed to the network's ``[N, B, H, W]`` (colour ``[N, B, H, W, 3]``) layout."""
    name = 'revsci'

    @staticmethod
    def reconstruct_fn(model):
        return model.reconstruct if hasattr(model, 'reconstruct') else network_reconstruct_fn(model)

    @staticmethod
    def train_pipeline(cfg, model, backend):
        import tensorflow as tf
        make = SciTask.train_pipeline(cfg, model, backend)

        def pipeline_fn(start_step):
            return make(start_step).map(  # frames axis (last) -> axis 1
                lambda x, v: (x, tf.transpose(v, [0, v.shape.rank - 1] + list(
                    range(1, v.shape.rank - 1)))))
        return pipeline_fn


def run_gap_tv(cfg, logger):
    """Build GAP-TV from ``cfg.sci`` and run ``cfg.mode`` ('eval' or 'inference') with it."""
    from ascendvsr.models.gap_tv import build_gap_tv
    model = build_gap_tv(cfg)
    if cfg.mode == 'inference':
        return GapTvTask.infer(cfg, model, logger)
    return GapTvTask.evaluate(cfg, model, logger)


def main(argv=None):
    """``python -m ascendvsr.tasks.sci --config-file configs/gap_tv.yaml [--mode eval|inference]
    [KEY VALUE ...]``: GAP-TV needs no checkpoint, so it runs without ``tools/main.py``."""
    import argparse
    import sys

    from ascendcv.runner.logging_utils import get_logger
    from ascendvsr.config import ConfigError, load_config
    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument('--config-file', default='configs/gap_tv.yaml')
    ap.add_argument('--mode', choices=('eval', 'inference'), default='eval')
    ap.add_argument('opts', nargs=argparse.REMAINDER)
    args = ap.parse_args(argv)
    try:
        cfg = load_config(args.config_file, list(args.opts) + ['mode', args.mode])
    except ConfigError as err:
        print(f'Config error: {err}', file=sys.stderr)
        return 2
    try:
        run_gap_tv(cfg, get_logger(None))
    except (ValueError, OSError) as err:
        print(f'Error: {err}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    import sys
    # run through the package module so the task registry sees one copy of this file
    from ascendvsr.tasks import sci as _sci
    sys.exit(_sci.main())
else:
    register_task('GAP-TV', GapTvTask)
    register_task('RevSCI', RevSciTask)
