"""Per-video evaluation: PSNR/SSIM (BasicSR conventions) against ground truth, JSON report.

Prints, like the original EDVR evaluation::

    Evaluate 000
    Video 000 PSNR = 28.1234 dB, SSIM = 0.8123, inference time = 1.234 s (0.012 s/frame)
    ...
    Average PSNR = 27.8 dB, SSIM = 0.80 over 4 videos
"""
import os

import numpy as np

from ascendcv.utils.metrics import calculate_psnr, calculate_ssim
from ascendcv.utils.video_io import to_uint8
from ascendcv.utils.fileio import atomic_write_json as _atomic_json


def frame_metrics(restored, gt, crop_border, test_y, compute_ssim):
    psnr = [calculate_psnr(r, g, crop_border, test_y) for r, g in zip(restored, gt)]
    ssim = ([calculate_ssim(r, g, crop_border, test_y) for r, g in zip(restored, gt)]
            if compute_ssim else [])
    return psnr, ssim


def evaluate(cfg, predict, dataset, strategy, logger, check=None):
    """Evaluate ``predict`` on every clip of ``dataset`` (``load_clip(name) -> (lr, gt)`` uint8
    ``[N, h, w, C]`` / ``[N, H, W, C]``, ``eval_centers(name)``: the frames scored) through the
    prediction ``strategy`` (:mod:`ascendcv.runner.predict`); writes the JSON report, returns it.

    ``check(lr_shape)`` (optional) is called with every clip's ``[N, h, w, C]`` before any clip
    is restored, so frames the model cannot take fail at once (a frozen graph's input shape).
    """
    e = cfg.eval
    max_frames = None if cfg.data.max_eval_frames < 0 else cfg.data.max_eval_frames
    if check is not None and hasattr(dataset, 'lr_size'):
        for clip in dataset.clips:
            n = dataset.num_frames(clip)
            n = n if max_frames is None or max_frames <= 0 else min(n, max_frames)
            check((n,) + tuple(dataset.lr_size(clip)) + (3,))
    report = dict(model=cfg.model.name, checkpoint=cfg.model.checkpoint, data_dir=cfg.data.data_dir,
                  crop_border=e.crop_border, test_y_channel=e.test_y_channel, videos={})
    if e.compare_bicubic:
        from ascendcv.utils.matlab_resize import imresize
    for clip in dataset.clips:
        logger.info(f'Evaluate {clip}')
        lr, gt = dataset.load_clip(clip, max_frames=max_frames)
        # REDS scores every frame; Vimeo90K only the centre frame of each septuplet (BasicSR)
        centers = [c for c in dataset.eval_centers(clip) if c < len(lr)]
        if check is not None:
            check(lr.shape)
        restored, spent = strategy.restore(predict, lr.astype(np.float32) / 255.0, centers,
                                           desc=clip)
        restored = np.stack([to_uint8(f) for f in restored])
        gt, lr_eval = gt[centers], lr[centers]
        if restored.shape != gt.shape:
            raise ValueError(f'clip {clip}: restored frames {restored.shape} vs ground truth '
                             f'{gt.shape}; check model.scale and the LR/GT folders')
        psnr, ssim = frame_metrics(restored, gt, e.crop_border, e.test_y_channel, e.compute_ssim)
        entry = dict(frames=len(gt), psnr=float(np.mean(psnr)), psnr_per_frame=psnr,
                     inference_time_s=spent, time_per_frame_s=spent / len(gt))
        line = f'Video {clip} PSNR = {entry["psnr"]:.4f} dB'
        if ssim:
            entry['ssim'] = float(np.mean(ssim))
            line += f', SSIM = {entry["ssim"]:.4f}'
        if e.compare_bicubic:
            scale = gt.shape[1] // lr_eval.shape[1]
            bic = np.stack([imresize(f, scale) for f in lr_eval])
            bpsnr, bssim = frame_metrics(bic, gt, e.crop_border, e.test_y_channel, e.compute_ssim)
            entry['bicubic_psnr'] = float(np.mean(bpsnr))
            line += f' (bicubic {entry["bicubic_psnr"]:.4f} dB'
            if bssim:
                entry['bicubic_ssim'] = float(np.mean(bssim))
                line += f', SSIM {entry["bicubic_ssim"]:.4f}'
            line += ')'
        line += f', inference time = {spent:.3f} s ({spent / len(gt):.4f} s/frame)'
        logger.info(line)
        if e.save_strip:
            entry['strip'] = write_comparison_strip(cfg, clip, lr_eval, restored, gt, psnr)
        if e.save_images:
            from ascendcv.utils.image_writer import QueuedImageWriter
            folder = os.path.join(cfg.output_dir, 'eval', clip)
            with QueuedImageWriter(num_workers=cfg.inference.num_writers,
                                   max_queue=cfg.inference.writer_queue_size) as w:
                for i, img in enumerate(restored):
                    w.put(os.path.join(folder, f'{i:08d}.png'), img)
        report['videos'][clip] = entry
    vids = report['videos'].values()
    report['average_psnr'] = float(np.mean([v['psnr'] for v in vids]))
    line = f'Average PSNR = {report["average_psnr"]:.4f} dB'
    if e.compute_ssim:
        report['average_ssim'] = float(np.mean([v['ssim'] for v in vids]))
        line += f', SSIM = {report["average_ssim"]:.4f}'
    if e.compare_bicubic:
        report['average_bicubic_psnr'] = float(np.mean([v['bicubic_psnr'] for v in vids]))
        line += f' (bicubic {report["average_bicubic_psnr"]:.4f} dB)'
    logger.info(line + f' over {len(report["videos"])} videos')
    path = os.path.join(cfg.output_dir, e.report)
    _atomic_json(path, report)
    logger.info(f'Report written to {path}')
    if e.save_strip:
        logger.info(f'Pictures (bicubic | {cfg.model.name} | ground truth): '
                    f'{os.path.join(cfg.output_dir, "eval", "strips")}/')
    return report


def write_comparison_strip(cfg, clip, lr, restored, gt, psnr):
    """``output_dir/eval/strips/<clip>.png``: the middle scored frame as MATLAB-bicubic
    upsampling | the model | ground truth, each labelled with its PSNR; returns the path."""
    from ascendcv.utils.matlab_resize import imresize
    from ascendcv.utils.pictures import write_strip
    e, i = cfg.eval, len(gt) // 2
    bicubic = to_uint8(imresize(lr[i], gt.shape[1] // lr.shape[1]))
    bpsnr = calculate_psnr(bicubic, gt[i], e.crop_border, e.test_y_channel)
    path = os.path.join(cfg.output_dir, 'eval', 'strips', f'{clip}.png')
    return write_strip(path, [bicubic, restored[i], gt[i]],
                       [f'bicubic {bpsnr:.2f} dB', f'{cfg.model.name} {psnr[i]:.2f} dB',
                        'ground truth'])
