"""A small Python API for the most common job: restore a video with a trained model.

    from ascendvsr.api import restore_video
    frames = restore_video('clip.mp4', 'outputs/edvr_quickstart/checkpoints', output='sr.mp4')
    # frames: uint8 [T, 4H, 4W, 3]; sr.mp4 written (a folder name instead: one PNG per frame)

``checkpoint`` is what ``--mode inference`` takes: a TF checkpoint (prefix or a run's
``checkpoints`` folder, whose stored ``config.yaml`` is used) or a frozen ``.pb``. Everything the
command line does applies (padding to the model's multiple, ``inference.tile`` tiles, any batch
of a frozen graph); ``overrides`` are the same ``KEY=VALUE`` strings.
"""
import os

import numpy as np

__all__ = ['Restorer', 'restore_video']


class Restorer:
    """A loaded video restoration model: ``Restorer(checkpoint)(frames) -> frames``.

    Args:
        checkpoint: TF checkpoint prefix or folder, or a frozen ``.pb``.
        config: a YAML config; default the one stored with the checkpoint (else the defaults).
        overrides: ``KEY=VALUE`` strings, e.g. ``['inference.tile=[10,64,64]']``.
        logger: a ``logging.Logger`` (default: the ``ascendvsr`` logger, console only).
    """

    def __init__(self, checkpoint, config=None, overrides=(), logger=None):
        from ascendcv.runner.logging_utils import get_logger
        from ascendvsr.cli import load_model_for_inference
        from ascendvsr.config.stored import load_run_config
        from ascendvsr.zoo import get_entry
        opts = ['mode', 'inference', 'model.checkpoint', os.fspath(checkpoint), *overrides]
        self.cfg, _ = load_run_config(config, opts)
        self.log = logger or get_logger(None)
        entry = get_entry(self.cfg.model.name)
        self.task = entry.make_task(self.cfg)
        if not hasattr(self.task, 'predictor'):
            raise ValueError(f'model.name={self.cfg.model.name!r} is not a video restoration '
                             f'model (its task has no frame predictor); use --mode inference')
        self.model = load_model_for_inference(self.cfg, entry, self.task, self.log)
        self._predict, self._strategy, self._check = self.task.predictor(
            self.model, max(self.cfg.data.eval_batch_size, 1), self.cfg.inference.padding,
            self.log.info)

    def __call__(self, frames):
        """``frames`` uint8 ``[T, h, w, 3]`` -> restored uint8 ``[T, H, W, 3]``."""
        from ascendcv.utils.video_io import to_uint8
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f'frames must be [T, H, W, 3] RGB; got shape {frames.shape}')
        self._check(frames.shape)
        out = [None] * len(frames)

        def put(indices, outputs):
            for i, o in zip(indices, outputs):
                out[i] = to_uint8(np.asarray(o))
        self._strategy.restore(self._predict, frames.astype(np.float32) / 255.0,
                               desc='restore', callback=put)
        return np.stack(out)


def restore_video(source, checkpoint, output=None, config=None, overrides=(), max_frames=None,
                  fps=None):
    """Restore the video file or frame folder ``source`` with ``checkpoint``; returns uint8
    ``[T, H, W, 3]``. ``output``: an ``.mp4`` to write (at ``fps``, default the config's
    ``inference.fps``) or a folder for ``%08d.png`` frames (written atomically)."""
    from ascendcv.utils.video_io import read_frames, write_png, write_video
    restorer = Restorer(checkpoint, config, overrides)
    restored = restorer(read_frames(source, max_frames=max_frames))
    if output:
        output = os.fspath(output)
        if output.lower().endswith(('.mp4', '.mkv', '.avi', '.mov')):
            write_video(output, restored, fps=fps or restorer.cfg.inference.fps)
        else:
            for i, frame in enumerate(restored):
                write_png(os.path.join(output, f'{i:08d}.png'), frame)
    return restored

