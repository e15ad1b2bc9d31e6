"""Video SCI tasks on the :class:`ascendcv.runner.task.Task` interface: :class:`SciTask` (networks
taking ``(meas_re, mask)``), :class:`RevSciTask` and :class:`GapTvTask` -- benchmark evaluation
(PSNR/SSIM table, JSON, PNG grids), real-data reconstruction, training data and export.

The data come from :class:`ascendcv.dataloader.sci.SciBenchmarkDataset` (files in benchmark
order, each with its mask, measurements, ground truth and the number of measurements to score);
the task runs a *reconstruction function* over them with
:func:`ascendcv.runner.predict.run_batches` and scores the result. A reconstruction function is
any callable ``predict(meas, mask) -> video`` with

* ``meas`` float32 ``[N, H, W]`` on the frames' scale (file values / ``sci.max_value``),
* ``mask`` float32 ``[H, W, B]``,
* ``video`` ``[N, H, W, B]`` (numpy or tensor), frames in [0, 1]; a colour model (Bayer
  measurements, e.g. RevSCI ``variant='color'``) returns ``[N, H, W, 3, B]``.

That is also the serving signature (:meth:`SciTask.serving_signature`: ``meas [None, H, W]``
and ``mask [H, W, B]``, H and W from ``data.eval_in_size`` when > 0, else dynamic) and what
:meth:`SciTask.serve` computes, so a frozen graph (``FrozenGraphModel(path)(meas, mask)``) is
itself a reconstruction function: evaluation and inference run it like the live model.

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

import numpy as np

from ascendcv.dataloader.sci import SciBenchmarkDataset, SciDataError, random_mask
from ascendcv.runner.predict import run_batches
from ascendcv.runner.task import Task
from ascendcv.utils.fileio import atomic_write_json as _atomic_json
from ascendcv.utils.metrics import SCI_PEAKS, sci_frame_scores
from ascendcv.utils.pictures import write_grid
from ascendcv.utils.sci_physics import is_color, measure, measure_bayer, normalize_measurement_tf

__all__ = ['evaluate_sci', 'reconstruct_files', 'write_grid',
           'SciTask', 'GapTvTask', 'RevSciTask', 'CONVENTIONS']

CONVENTIONS = tuple(SCI_PEAKS)


# ============================================================================ helpers

def _write_frames(folder, name, video):
    """Frames of ``video [M, H, W, B]`` (or colour ``[M, H, W, 3, B]``) ->
    ``folder/name/name_0000.png`` ... (order m*B+t)."""
    from ascendcv.utils.video_io import to_uint8, write_png
    frames = np.moveaxis(video, -1, 1).reshape((-1,) + video.shape[1:-1])
    for i, frame in enumerate(frames):
        write_png(os.path.join(folder, name, f'{name}_{i:04d}.png'), to_uint8(np.clip(frame, 0, 1)))
    return len(frames)


def _check_output(rec, meas, mask):
    gray = tuple(meas.shape) + tuple(mask.shape[-1:])
    if rec.shape not in (gray, gray[:-1] + (3,) + gray[-1:]):
        raise ValueError(f'reconstruction has shape {rec.shape}, expected {gray} '
                         f'[N, H, W, B] (or colour [N, H, W, 3, B])')


def reconstruct_item(predict, item, batch_size, warmup=True):
    """Reconstruct the first ``item.count`` measurements of an
    :class:`ascendcv.dataloader.sci.SciItem` with ``predict(meas, mask)``, ``batch_size`` at a
    time (< 1: all at once), through :func:`ascendcv.runner.predict.run_batches` (``warmup``: one
    untimed call first). Returns ``(float32 frames [count, H, W, (3,) B], seconds)``; every
    output's shape is checked."""
    meas = item.meas[:item.count]
    bs = len(meas) if int(batch_size) < 1 else int(batch_size)
    batches = [(meas[s:s + bs], item.mask) for s in range(0, len(meas), bs)]
    out = []

    def collect(_index, batch, rec):
        rec = np.asarray(rec, np.float32)
        _check_output(rec, *batch)
        out.append(rec)

    try:
        _, spent = run_batches(predict, batches, desc=item.name, warmup=warmup, callback=collect)
    except SciDataError as err:
        raise SciDataError(f'{item.path!r}: {err}') from None
    return np.concatenate(out), spent


# ============================================================================ evaluation

def evaluate_sci(cfg, predict, logger, tag='model', dataset=None):
    """Evaluate ``predict(meas, mask) -> video`` on the SCI dataset of ``cfg``
    (:meth:`SciBenchmarkDataset.from_config`: the ``.mat`` files of ``sci.data_dir``), or on
    ``dataset``.

    Benchmarks (files with ``orig``) are reconstructed, scored (``sci.psnr_convention``) and, with
    ``sci.save_grid``, drawn as ``<report dir>/sci_grid_<name>.png`` (ground truth above the
    reconstruction of the first measurement). Real data (only ``meas``): the reconstructed frames
    go to ``output_dir/<sci.frames_dir>/<name>/``. Prints one table line per dataset and the mean,
    writes the JSON report ``output_dir/<sci.report>`` and returns it. Measurements go
    ``data.eval_batch_size`` at a time (< 1: all of a file at once); ``seconds_per_measurement``
    excludes one warm-up call (on the first file).
    """
    sci = cfg.sci
    convention = str(sci.psnr_convention).lower()
    if convention not in CONVENTIONS:
        raise ValueError(f'sci.psnr_convention must be one of {CONVENTIONS}, got '
                         f'{sci.psnr_convention!r}')
    dataset = SciBenchmarkDataset.from_config(cfg) if dataset is None else dataset
    report_path = os.path.join(cfg.output_dir, sci.report)
    frames_root = os.path.join(cfg.output_dir, sci.frames_dir)
    peak = 'ground-truth frame max' if convention == 'pnp' else f'{sci.max_value:g} (8-bit scale)'
    report = dict(model=tag, data_dir=dataset.source, convention=convention, psnr_peak=peak,
                  ssim='MATLAB ssim: Gaussian 11x11 sigma 1.5, replicate padding, data range 1',
                  datasets={}, real={})
    logger.info(f'SCI evaluation of {tag} on {len(dataset)} file(s) in {dataset.source} '
                f'({convention} convention: PSNR peak = {peak})')
    for i, item in enumerate(dataset):
        name, count, b = item.name, item.count, item.compression_ratio
        rec, spent = reconstruct_item(predict, item, cfg.data.eval_batch_size, warmup=i == 0)
        entry = dict(file=item.path, measurements=count, frames=count * b,
                     seconds_per_measurement=spent / count)
        if not item.is_benchmark:
            entry['frames_dir'] = os.path.join(frames_root, name)
            entry['frames_written'] = _write_frames(frames_root, name, rec)
            report['real'][name] = entry
            logger.info(f'{name}: real data, {count} measurement(s) -> {entry["frames_dir"]} '
                        f'({entry["seconds_per_measurement"]:.3f} s/measurement)')
            continue
        gt = item.gt[:count]
        if gt.shape != rec.shape:
            kinds = {True: 'colour', False: 'grayscale'}
            raise SciDataError(f'{item.path!r} holds {kinds[is_color(gt)]} frames {gt.shape[1:]} '
                               f'but the model reconstructs {kinds[is_color(rec)]} '
                               f'{rec.shape[1:]} (colour models need colour benchmarks, orig '
                               f'H x W x 3 x N; grayscale models grayscale ones, orig H x W x N)')
        psnr, ssim = sci_frame_scores(gt, rec, convention)
        entry.update(psnr=float(np.mean(psnr)), ssim=float(np.mean(ssim)),
                     psnr_per_frame=psnr, ssim_per_frame=ssim)
        if sci.save_grid:
            grid = os.path.join(os.path.dirname(report_path), f'sci_grid_{name}.png')
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


def reconstruct_files(cfg, predict, logger, source=None, dataset=None):
    """Reconstruct every measurement (at most ``sci.max_measurements``) of ``source`` (a ``.mat``
    file or a folder of them; default ``inference.source``, else ``sci.data_dir``), or of
    ``dataset``, and write the frames to ``output_dir/<sci.frames_dir>/<name>/``; returns
    ``{name: folder}``."""
    if dataset is None:
        dataset = SciBenchmarkDataset.from_config(cfg, source=source, scoring=False)
    root = os.path.join(cfg.output_dir, cfg.sci.frames_dir)
    out = {}
    for i, item in enumerate(dataset):
        rec, spent = reconstruct_item(predict, item, cfg.data.eval_batch_size, warmup=i == 0)
        n = _write_frames(root, item.name, rec)
        out[item.name] = os.path.join(root, item.name)
        logger.info(f'{item.name}: {item.count} measurement(s), {n} frames -> {out[item.name]} '
                    f'({spent / item.count:.3f} s/measurement)')
    return out


# ============================================================================ frozen graphs

def _frozen_meta(model):
    """The SCI entries of a frozen graph's sidecar (:meth:`SciTask.export_meta`), or None for a
    live model / plain callable."""
    from ascendcv.runner.freezer import FrozenGraphModel
    if not isinstance(model, FrozenGraphModel):
        return None
    sci = model.meta.get('sci')
    if not isinstance(sci, dict):
        raise SciDataError(f'{model.path} was not frozen by an SCI task (its sidecar has no '
                           f'"sci" entry); freeze an SCI model with --mode freeze')
    return sci


def _checked_frozen(model, meta):
    """``predict(meas, mask)`` running the frozen graph ``model``, refusing (with the sizes the
    graph was frozen for) inputs that do not fit its serving signature."""
    size = list(meta.get('input_size') or [None, None])
    b = meta.get('compression_ratio')

    def predict(meas, mask):
        fits = all(s is None or s == g for s, g in zip(size, tuple(np.shape(meas))[1:]))
        if not fits or (b is not None and np.shape(mask)[-1] != b):
            want = 'x'.join('any' if s is None else str(s) for s in size)
            raise SciDataError(f'the frozen graph takes {want} measurements and a mask of {b} '
                               f'frames (its serving signature: data.eval_in_size and the '
                               f'compression ratio when it was frozen); got meas '
                               f'{tuple(np.shape(meas))} and mask {tuple(np.shape(mask))}')
        return model(meas, mask)
    return predict


# ============================================================================ tasks

class SciTask(Task):
    """Video SCI task for networks called as ``model((meas_re, mask), training=False)`` with
    ``meas_re = meas / sum_t mask_t`` ``[N, H, W]`` and ``mask`` ``[H, W, B]``, returning
    frames-last video ``[N, H, W, B]`` (colour ``[N, H, W, 3, B]``); subclasses override
    :meth:`serve` (and :meth:`is_live`) for other calling conventions.

    Training batches: ``((meas_re [N, c, c], mask [N, c, c, B]), video [N, c, c, B])``
    (:func:`ascendcv.dataloader.sci.build_sci_train_pipeline`; colour models get Bayer
    measurements and ``video [N, c, c, 3, B]``).

    Serving signature (``--mode freeze``): ``meas`` float32 ``[None, H, W]`` (any batch) and
    ``mask`` float32 ``[H, W, B]``, ``H, W`` from ``data.eval_in_size`` (a value <= 0 = dynamic),
    ``B`` the model's compression ratio (``sci.compression_ratio``); output the reconstruction
    (:meth:`serve`). The sidecar's ``sci`` entry (:meth:`export_meta`) lets evaluation check
    measurements against a frozen graph before running it.
    """

    # ------------------------------------------------------------------ model facts
    def compression_ratio(self, model):
        """Frames per measurement ``B`` of ``model`` (a frozen graph: from its sidecar)."""
        meta = _frozen_meta(model)
        if meta and meta.get('compression_ratio'):
            return int(meta['compression_ratio'])
        return int(self.cfg.sci.compression_ratio)

    def is_color(self, model):
        """The model takes Bayer (RGGB) measurements and returns RGB frames."""
        meta = _frozen_meta(model)
        if meta is not None:
            return bool(meta.get('color'))
        return False

    def is_live(self, model):
        """``model`` is a network of this task (run through :meth:`serve`), not a frozen graph or
        another callable of the serving inputs (run as it is)."""
        import keras
        return isinstance(model, keras.Model)

    def serving_size(self):
        """``(H, W)`` of the serving signature: ``data.eval_in_size``, None where <= 0."""
        return tuple(None if int(s) <= 0 else int(s) for s in self.cfg.data.eval_in_size)

    def example_size(self, model):
        """``(H, W)`` of :meth:`example_inputs` where the serving size is dynamic."""
        return (64, 64)

    # ------------------------------------------------------------------ training
    def train_pipeline(self, model, backend):
        from ascendcv.dataloader.sci import (build_sci_dataset, build_sci_train_pipeline,
                                             training_mask)
        cfg = self.cfg
        dataset = build_sci_dataset(cfg, color=self.is_color(model))
        mask = training_mask(cfg)

        def pipeline_fn(start_step):
            return build_sci_train_pipeline(cfg, dataset, mask, seed=cfg.seed,
                                            start_step=start_step, rank=backend.rank,
                                            world_size=backend.world_size)
        return pipeline_fn

    # ------------------------------------------------------------------ prediction
    def predict_fn(self, model):
        """The reconstruction function ``predict(meas, mask) -> video`` of ``model``: a live model
        through :meth:`serve` (a graph function with dynamic shapes, traced once), a frozen graph
        (``FrozenGraphModel``, whose inputs are the serving signature) checked against the
        sizes it was frozen for, any other callable as it is."""
        if self.is_live(model):
            import tensorflow as tf
            return tf.function(lambda meas, mask: self.serve(model, meas, mask), input_signature=[
                tf.TensorSpec([None, None, None], tf.float32),
                tf.TensorSpec([None, None, None], tf.float32)])
        meta = _frozen_meta(model)
        return _checked_frozen(model, meta) if meta is not None else model

    def evaluate(self, model, logger):
        return evaluate_sci(self.cfg, self.predict_fn(model), logger, tag=self.cfg.model.name)

    def headline_psnr(self, report):
        if 'mean' not in report:
            raise ValueError(f'no benchmark file with ground truth in {report["data_dir"]}: the '
                             f'precision guard needs scored benchmarks (sci.data_dir)')
        return float(report['mean']['psnr'])

    def infer(self, model, logger):
        return reconstruct_files(self.cfg, self.predict_fn(model), logger)

    # ------------------------------------------------------------------ export
    def serving_signature(self, model):
        import tensorflow as tf
        h, w = self.serving_size()
        return [tf.TensorSpec([None, h, w], tf.float32, name='meas'),
                tf.TensorSpec([h, w, self.compression_ratio(model)], tf.float32, name='mask')]

    def serve(self, model, meas, mask):
        """Frames-last reconstruction of ``meas [N, H, W]`` with ``mask [H, W, B]``."""
        return model((normalize_measurement_tf(meas, mask), mask), training=False)

    def example_inputs(self, model):
        """Two measurements of random frames (Bayer for a colour model) with a random binary
        mask (``cfg.seed``), of the serving size (dynamic sizes: :meth:`example_size`)."""
        size = self.serving_size()
        h, w = (d if s is None else s for s, d in zip(size, self.example_size(model)))
        b = self.compression_ratio(model)
        mask = random_mask(h, w, b, seed=int(self.cfg.seed))
        rng = np.random.default_rng(int(self.cfg.seed))
        if self.is_color(model):
            meas = measure_bayer(rng.random((2, b, h, w, 3), dtype=np.float32), mask)
        else:
            meas = measure(rng.random((2, h, w, b), dtype=np.float32), mask)
        return [meas.astype(np.float32), mask]

    def sample_data(self, workdir):
        """A tiny real SCI setting under ``workdir/sci_sample``: a benchmark file simulated from
        16 frames of the bundled carphone clip (luma, 32x32 centre crop, random mask, 2
        measurements) and a training frame folder of 10 frames of bikes (48x48)."""
        from ascendcv.dataloader.sci import save_mat, simulate_benchmark
        from ascendcv.utils.sci_physics import rgb_to_luma
        from ascendcv.utils.video_io import read_frames, resolve_source, write_png
        root = os.path.join(workdir, 'sci_sample')
        bench, clip = os.path.join(root, 'bench', 'carphone.mat'), os.path.join(root, 'bikes')
        if not os.path.isfile(bench):
            frames = rgb_to_luma(read_frames(resolve_source('carphone'), max_frames=16))
            top, left = (frames.shape[1] - 32) // 2, (frames.shape[2] - 32) // 2
            frames = np.ascontiguousarray(frames[:, top:top + 32, left:left + 32])
            mask = random_mask(32, 32, 8, seed=0).astype(np.uint8)
            save_mat(bench, simulate_benchmark(frames, mask))
        if not os.path.isdir(clip):
            for i, frame in enumerate(read_frames(resolve_source('bikes'), max_frames=10)):
                write_png(os.path.join(clip, f'{i:03d}.png'), frame[:48, :48])
        return [f'sci.data_dir={os.path.dirname(bench)}', f'sci.train_sources=[{clip!r}]',
                'sci.mask_file=', 'sci.crop_size=16', 'sci.compression_ratio=8',
                'sci.first_measurement_only=[]', 'sci.save_grid=False', 'data.batch_size=2',
                'data.num_threads=1', 'data.train_data_queue_size=1', 'data.eval_batch_size=2',
                'data.eval_in_size=[32,32]']

    def export_meta(self, model):
        h, w = self.serving_size()
        return {'sci': dict(
            inputs=['meas', 'mask'], input_size=[h, w],
            compression_ratio=self.compression_ratio(model), color=self.is_color(model),
            max_value=float(self.cfg.sci.max_value),
            meas='float32 [N, H, W]: the measurement on the frames\' scale (file / max_value)',
            mask='float32 [H, W, B]',
            output='float32 frames [N, H, W, B] (colour [N, H, W, 3, B]) in [0, 1], not clipped')}


class RevSciTask(SciTask):
    """RevSCI: reconstruction through ``model.reconstruct(meas, mask)`` (the official
    normalisation, network output moved to frames last); training targets transposed to the
    network's ``[N, B, H, W]`` (colour ``[N, B, H, W, 3]``) layout."""

    def serve(self, model, meas, mask):
        return model.reconstruct(meas, mask)

    def compression_ratio(self, model):
        return super().compression_ratio(model) if _frozen_meta(model) else model.compress_ratio

    def is_color(self, model):
        return super().is_color(model) if _frozen_meta(model) else model.color

    def example_size(self, model):
        return tuple(model.mask_size)

    def train_pipeline(self, model, backend):
        import tensorflow as tf
        make = super().train_pipeline(model, backend)

        def pipeline_fn(start_step):
            return make(start_step).map(  # frames axis (last) -> axis 1
                lambda x, v: (x, tf.transpose(v, [0, v.shape.rank - 1] + list(
                    range(1, v.shape.rank - 1)))))
        return pipeline_fn


class GapTvTask(SciTask):
    """GAP-TV (:class:`ascendvsr.models.gap_tv.GapTV`, built from ``cfg.sci`` alone): nothing to
    train and no weights to load; evaluation, inference and export as :class:`SciTask`, the
    model called as ``model(meas, mask)``."""
    needs_checkpoint = False  # an optimisation method: no weights
    trainable = False

    def is_live(self, model):
        from ascendvsr.models.gap_tv import GapTV
        return isinstance(model, GapTV)

    def is_color(self, model):
        if self.is_live(model):
            return model.bayer
        return super().is_color(model)

    def predict_fn(self, model):
        if self.is_live(model):  # GapTV is a graph function with dynamic shapes already
            return lambda meas, mask: self.serve(model, meas, mask)
        return super().predict_fn(model)

    def serve(self, model, meas, mask):
        return model(meas, mask)

    def train_pipeline(self, model, backend):
        raise ValueError('GAP-TV is an iterative algorithm without weights: there is nothing to '
                         'train (use --mode eval)')
