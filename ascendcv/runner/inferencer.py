"""Restore a video (file or frame folder) through a prediction strategy; no ground truth needed.

Frames go to ``output_dir/test/<clip>/%08d.png`` through a bounded queue drained by writer
threads (:class:`ascendcv.utils.image_writer.QueuedImageWriter`); every PNG is written under a
temporary name and renamed, and the queue is drained even on Ctrl-C, so no frame is lost or
half-written.
"""
import os
import time

import numpy as np

from ascendcv.utils.image_writer import QueuedImageWriter
from ascendcv.utils.video_io import read_frames, to_uint8, write_video


def clip_name(source):
    base = os.path.basename(os.path.normpath(source))
    return os.path.splitext(base)[0] or 'clip'


def run_inference(cfg, predict, strategy, logger=print, check=None):
    """Restore ``cfg.inference.source`` into ``cfg.output_dir/test`` with ``predict`` fed by
    ``strategy`` (:mod:`ascendcv.runner.predict`); returns the output folder.

    ``check(frames_shape)`` (optional) may refuse the frames before any work. A failed run
    leaves no empty output folder behind.
    """
    source = cfg.inference.source
    if not source:
        raise ValueError('inference.source is empty: give a video file or a frame folder, e.g. '
                         'inference.source=path/to/clip.mp4')
    max_frames = None if cfg.inference.max_frames < 0 else cfg.inference.max_frames
    frames = read_frames(source, max_frames=max_frames)
    if check is not None:
        check(frames.shape)
    name = clip_name(source)
    out_dir = os.path.join(cfg.output_dir, 'test', name)
    created = [d for d in (os.path.dirname(out_dir), out_dir) if not os.path.isdir(d)]
    os.makedirs(out_dir, exist_ok=True)
    logger(f'Restoring {len(frames)} frames of {source} ({frames.shape[1]}x{frames.shape[2]}) '
           f'-> {out_dir}')
    restored = [] if cfg.inference.save_video else None
    t0 = time.time()
    writer = QueuedImageWriter(num_workers=cfg.inference.num_writers,
                               max_queue=cfg.inference.writer_queue_size)
    def put(indices, outputs):
        for i, out in zip(indices, outputs):
            image = to_uint8(out)
            writer.put(os.path.join(out_dir, f'{i:08d}.png'), image)
            if restored is not None:
                restored.append(image)

    try:
        try:
            strategy.restore(predict, frames.astype(np.float32) / 255.0, desc=f'Inference {name}',
                             callback=put)
        finally:
            writer.close()
    except BaseException:
        for d in reversed(created):  # the folders this run made, if still empty
            if os.path.isdir(d) and not os.listdir(d):
                os.rmdir(d)
        raise
    elapsed = time.time() - t0
    logger(f'Inference time: {elapsed:.2f} s for {len(frames)} frames '
           f'({elapsed / max(len(frames), 1):.3f} s/frame); {writer.written} PNGs in {out_dir}')
    if restored:
        path = os.path.join(cfg.output_dir, 'test', f'{name}.mp4')
        write_video(path, np.stack(restored), fps=cfg.inference.fps)
        logger(f'Video written to {path}')
    return out_dir
