"""One prediction loop and the prediction strategies that feed it.

:func:`run_batches` is the only place that calls a model over many inputs: it warms the graph up
outside the timing, shows progress, times every call and hands each output to a callback. The
strategies turn a task's data into batches and the outputs back into results:

* :class:`SlidingWindow` -- a window of ``num_frame`` frames around each frame -> that frame
  (EDVR);
* :class:`ClipToClip` -- clips of ``clip_len`` frames (overlapping, averaged where they overlap)
  -> the same frames restored (RVRT-style recurrent models);
* SCI measurement batches and NeRV frame indices are plain batch lists, built by their tasks.
"""
import itertools
import time

import numpy as np
from tqdm import tqdm


def run_batches(predict, batches, total=None, desc=None, warmup=True, repeats=1, callback=None):
    """Call ``predict(*batch)`` for every batch; returns ``(outputs, seconds)``.

    Args:
        predict: ``predict(*arrays) -> array or tensor``.
        batches: iterable of tuples of numpy arrays (the positional inputs of each call); a
            generator keeps only one batch in memory.
        total (int): number of batches for the progress bar (default ``len(batches)`` if any).
        desc (str): progress-bar label.
        warmup (bool): one untimed call on the first batch first (tracing / XLA compilation is
            not part of the timing).
        repeats (int): time each batch this many times (decoding-speed figures).
        callback: ``callback(index, batch, output)`` per batch, outside the timed region;
            with a callback the outputs are not kept (``outputs`` is ``None``).

    Returns:
        ``(list of numpy outputs or None, seconds spent in predict)``.
    """
    if total is None and hasattr(batches, '__len__'):
        total = len(batches)
    it = iter(batches)
    first = next(it, None)
    outputs = None if callback is not None else []
    if first is None:
        return outputs, 0.0
    if warmup:
        np.asarray(predict(*first))
    spent = 0.0
    for i, batch in enumerate(tqdm(itertools.chain([first], it), total=total, desc=desc,
                                   unit='batch', leave=False)):
        for _ in range(max(int(repeats), 1)):
            t0 = time.perf_counter()
            out = np.asarray(predict(*batch))
            spent += time.perf_counter() - t0
        if callback is not None:
            callback(i, batch, out)
        else:
            outputs.append(out)
    return outputs, spent


class SlidingWindow:
    """Window of ``num_frame`` frames (clip ends padded by ``padding``) -> the centre frame.

    Args:
        num_frame (int): frames the model takes per output frame.
        padding (str): frame-index padding at the clip ends
            (:func:`ascendcv.dataloader.frame_indices.generate_frame_indices`).
        batch_size (int): windows per model call.
    """

    def __init__(self, num_frame, padding='reflection_circle', batch_size=1):
        self.num_frame, self.padding = int(num_frame), padding
        self.batch_size = max(int(batch_size), 1)

    def restore(self, predict, frames, indices=None, desc=None, callback=None):
        """Restore the frames ``indices`` (default all) of ``frames`` float ``[N, h, w, C]``.

        ``predict([B, T, h, w, C]) -> [B, H, W, C]``. Returns ``(restored float [len(indices),
        H, W, C] or None with a callback, seconds)``; ``callback(indices, outputs)`` receives
        each batch's frame indices and outputs.
        """
        from ascendcv.dataloader.frame_indices import generate_frame_indices
        n = len(frames)
        indices = list(range(n)) if indices is None else list(indices)
        groups = [indices[i:i + self.batch_size] for i in range(0, len(indices), self.batch_size)]
        batches = ((np.stack([frames[generate_frame_indices(c, n, self.num_frame, self.padding)]
                              for c in g]),) for g in groups)
        cb = None if callback is None else (lambda i, _b, out: callback(groups[i], out))
        outputs, spent = run_batches(predict, batches, total=len(groups), desc=desc,
                                     warmup=False, callback=cb)
        return (None if outputs is None else np.concatenate(outputs)), spent


class ClipToClip:
    """Clips of ``clip_len`` frames -> the same frames restored (recurrent clip models).

    The video is cut into clips of ``clip_len`` frames (``0`` = the whole video in one call) that
    overlap by ``overlap`` frames; where clips overlap, their outputs are averaged (the official
    RVRT ``test_video`` rule). The last clip is shifted back to end at the last frame.

    Args:
        clip_len (int): frames per model call (0 = all).
        overlap (int): frames shared by consecutive clips (< clip_len).
    """

    def __init__(self, clip_len=0, overlap=0):
        self.clip_len, self.overlap = int(clip_len), int(overlap)
        if self.clip_len < 0 or self.overlap < 0 or (self.clip_len and
                                                     self.overlap >= self.clip_len):
            raise ValueError(f'clip-to-clip prediction needs clip_len >= 0 and 0 <= overlap < '
                             f'clip_len; got clip_len={clip_len}, overlap={overlap}')

    def starts(self, n):
        """First frame of each clip of a video of ``n`` frames."""
        size = n if self.clip_len == 0 or self.clip_len >= n else self.clip_len
        stride = size - self.overlap if size < n else size
        out = list(range(0, n - size, stride)) + [n - size]
        return sorted(set(out)), size

    def restore(self, predict, frames, indices=None, desc=None, callback=None):
        """Restore ``frames`` float ``[N, h, w, C]`` with ``predict([1, T, h, w, C]) ->
        [1, T, H, W, C]``; returns ``(restored [len(indices), H, W, C], seconds)``."""
        n = len(frames)
        starts, size = self.starts(n)
        batches = ((frames[s:s + size][None],) for s in starts)
        outputs, spent = run_batches(predict, batches, total=len(starts), desc=desc,
                                     warmup=False)
        total = np.zeros((n,) + outputs[0].shape[2:], np.float64)
        count = np.zeros((n,), np.float64)
        for s, out in zip(starts, outputs):
            total[s:s + size] += out[0]
            count[s:s + size] += 1
        restored = (total / count[:, None, None, None]).astype(np.float32)
        indices = list(range(n)) if indices is None else list(indices)
        restored = restored[indices]
        if callback is not None:
            callback(indices, restored)
            return None, spent
        return restored, spent
