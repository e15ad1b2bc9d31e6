"""One prediction loop and the prediction strategies that feed it.

:func:`run_batches` is the only place that calls a model over many inputs: it warms the graph up
outside the timing, shows progress, times every call and hands each output to a callback. The
strategies turn a task's data into batches and the outputs back into results:

* :class:`SlidingWindow` -- a window of ``num_frame`` frames around each frame -> that frame
  (EDVR);
* :class:`ClipToClip` -- clips of ``clip_len`` frames (overlapping, averaged where they overlap)
  -> the same frames restored (RVRT-style recurrent models);
* SCI measurement batches and NeRV frame indices are plain batch lists, built by their tasks.

Frames of any size reach a video model through :class:`SpatialTiles`, a wrapper of ``predict``:
it pads the frames to the multiple the model needs (mirroring the last rows and columns, as the
official RVRT test code does) and crops the output back, and with ``tile`` it restores the frames
in overlapping spatial tiles blended as the official RVRT ``test_clip`` does, so memory is bounded
by the tile, not the frame. :func:`fixed_batch` feeds a graph frozen with a static batch.
"""
import itertools
import time

import numpy as np
from ascendcv.utils.progress import progress


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
    for i, batch in enumerate(progress(itertools.chain([first], it), total=total, desc=desc,
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

    def call_frames(self, n):
        """Frames in each model call for a video of ``n`` frames (the window)."""
        return self.num_frame

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
    RVRT ``test_video`` rule). The last clip is shifted back to end at the last frame. A clip of
    a length that is not a multiple of ``multiple`` (the whole video, or a video shorter than
    ``clip_len``) is extended by mirroring its last frames and the extra outputs dropped (the
    official rule for the whole-video case). Frames are handed on as soon as no later clip
    covers them, so a long video keeps at most one clip of outputs in memory.

    Args:
        clip_len (int): frames per model call (0 = all); a multiple of ``multiple``.
        overlap (int): frames shared by consecutive clips (< clip_len).
        multiple (int): the frame count the model needs a multiple of.
    """

    def __init__(self, clip_len=0, overlap=0, multiple=1):
        self.clip_len, self.overlap, self.multiple = int(clip_len), int(overlap), int(multiple)
        if self.clip_len < 0 or self.overlap < 0 or (self.clip_len and
                                                     self.overlap >= self.clip_len):
            raise ValueError(f'clip-to-clip prediction needs clip_len >= 0 and 0 <= overlap < '
                             f'clip_len; got clip_len={clip_len}, overlap={overlap}')
        if self.multiple < 1 or self.clip_len % self.multiple:
            raise ValueError(f'clip-to-clip prediction: clip_len={clip_len} must be a multiple of '
                             f'the {self.multiple} frames the model takes at a time')

    def starts(self, n):
        """``(first frame of each clip, clip length)`` for a video of ``n`` frames."""
        size = n if self.clip_len == 0 or self.clip_len >= n else self.clip_len
        stride = size - self.overlap if size < n else size
        out = list(range(0, n - size, stride)) + [n - size]
        return sorted(set(out)), size

    def call_frames(self, n):
        """Frames in each model call for a video of ``n`` frames."""
        size = self.starts(n)[1]
        return -(-size // self.multiple) * self.multiple

    def restore(self, predict, frames, indices=None, desc=None, callback=None):
        """Restore ``frames`` float ``[N, h, w, C]`` with ``predict([1, T, h, w, C]) ->
        [1, T, H, W, C]``; returns ``(restored [len(indices), H, W, C] or None with a callback,
        seconds)``; ``callback(indices, outputs)`` receives the frames as they are final."""
        n = len(frames)
        starts, size = self.starts(n)
        padded = self.call_frames(n)
        order = list(range(n)) if indices is None else list(indices)
        wanted_set = set(order)
        pending, done = {}, {}  # frame -> [sum, count]; frame -> restored

        def clip(s):
            x = frames[s:s + size]
            return (pad_to_multiple(x, (padded,), (0,))[None],)

        def add(i, _batch, out):
            s = starts[i]
            for k in range(size):
                acc = pending.setdefault(s + k, [0.0, 0])
                acc[0] = acc[0] + out[0, k].astype(np.float64)
                acc[1] += 1
            final = starts[i + 1] if i + 1 < len(starts) else n
            ready = [f for f in sorted(pending) if f < final]
            keep = [f for f in ready if f in wanted_set]
            results = [_mean_as(pending[f][0] / pending[f][1], out.dtype) for f in keep]
            for f in ready:
                del pending[f]
            if keep:
                if callback is not None:
                    callback(keep, np.stack(results))
                else:
                    done.update(zip(keep, results))

        _, spent = run_batches(predict, (clip(s) for s in starts), total=len(starts), desc=desc,
                               warmup=False, callback=add)
        if callback is not None:
            return None, spent
        return np.stack([done[i] for i in order]), spent


def _mean_as(mean, dtype):
    """A blended (averaged) output in the model's output dtype (uint8 graphs: rounded)."""
    if dtype == np.uint8:  # a graph frozen with model.convert_output_to_uint8
        return np.clip(np.rint(mean), 0, 255).astype(np.uint8)
    return mean.astype(np.float32)


def pad_to_multiple(x, sizes, axes, mode='symmetric'):
    """Pad ``x`` at the end of each of ``axes`` to the matching length of ``sizes`` (numpy).

    ``mode='symmetric'`` mirrors the last entries, edge included (``[.., a, b, c | c, b, ..]``),
    which is what the official RVRT test code appends (``cat([x, flip(x[-pad:])])``).
    """
    pad = [(0, 0)] * x.ndim
    for size, axis in zip(sizes, axes):
        extra = int(size) - x.shape[axis]
        if extra < 0:
            raise ValueError(f'cannot pad axis {axis} of shape {x.shape} to {size}')
        pad[axis] = (0, extra)
    if all(p == (0, 0) for p in pad):
        return x
    return np.pad(x, pad, mode=mode)


def _tile_plan(size, tile, overlap, multiple):
    """``(padded size, tile starts, tile length)`` along one spatial axis (see
    :class:`SpatialTiles`)."""
    if tile and size >= tile:
        stride = tile - overlap
        return size, sorted(set(list(range(0, size - tile, stride)) + [size - tile])), tile
    padded = -(-size // multiple) * multiple
    return padded, [0], padded


def _keep_mask(length, first, last, overlap):
    """1 where a tile's output is blended, 0 on its inner borders: ``overlap // 2`` output pixels
    at the start of every tile but the first and ``ceil(overlap / 2)`` at the end of every tile
    but the last (the official ``test_clip`` rule, counted in output pixels as it does)."""
    mask = np.ones((length,), np.float32)
    if overlap:
        if not first:
            mask[:overlap // 2] = 0
        if not last:
            mask[length - (overlap + 1) // 2:] = 0
    return mask


class SpatialTiles:
    """``predict`` for frames of any size: pad to a multiple, optional overlapping tiles.

    ``SpatialTiles(predict, tile, overlap, multiple)(x)`` takes ``x`` float ``[B, T, h, w, C]``
    and returns what ``predict`` returns for it (``[B, H, W, C]`` or ``[B, T, H, W, C]``, spatial
    axes ``-3, -2``), with ``H = s * h`` for the model's scale ``s`` (read from the output):

    * along an axis whose tile is 0 (or larger than the frame), the frames are padded to a
      multiple of ``multiple`` by mirroring (:func:`pad_to_multiple`) and the output cropped back;
    * along an axis with a tile ``t`` (a multiple of ``multiple``), the frame is cut into tiles
      of ``t`` overlapping by ``overlap`` (the last one shifted back to end at the border);
      each tile's output drops its inner borders (:func:`_keep_mask`) and the rest is averaged
      where tiles overlap -- the official RVRT ``test_clip`` blending. A model whose receptive
      field ends within the kept part gives the whole-frame output exactly.

    Args:
        predict: ``predict([B, T, th, tw, C]) -> array``; if it has ``check(call_shape,
            data_shape)`` (a frozen graph's input check), :meth:`check` calls it.
        tile (tuple): ``(th, tw)`` tile size in input pixels, 0 = the whole frame.
        overlap (tuple): ``(oh, ow)`` overlap of neighbouring tiles (< the tile).
        multiple (int): the input height and width the model needs a multiple of.
    """

    def __init__(self, predict, tile=(0, 0), overlap=(0, 0), multiple=1, keys=None):
        self.predict = predict
        self.tile = tuple(int(t) for t in tile)
        self.overlap = tuple(int(o) for o in overlap)
        self.multiple = int(multiple)
        keys = keys or ('tile', 'tile_overlap')
        if self.multiple < 1:
            raise ValueError(f'the size multiple of a model must be >= 1; got {multiple}')
        for axis, (t, o) in enumerate(zip(self.tile, self.overlap)):
            name = 'height' if axis == 0 else 'width'
            if t < 0 or o < 0:
                raise ValueError(f'{keys[0]} / {keys[1]} ({name}) must be >= 0; got tile {t}, '
                                 f'overlap {o}')
            if t and t % self.multiple:
                raise ValueError(f'{keys[0]}: a tile {name} of {t} is not a multiple of '
                                 f'{self.multiple}, which this model needs')
            if t and o >= t:
                raise ValueError(f'{keys[1]}: the {name} overlap {o} must be smaller than the '
                                 f'tile {t} ({keys[0]})')
        self._checked = set()

    def call_hw(self, h, w):
        """The ``(height, width)`` of each model call for frames of ``h x w``."""
        return (_tile_plan(h, self.tile[0], self.overlap[0], self.multiple)[2],
                _tile_plan(w, self.tile[1], self.overlap[1], self.multiple)[2])

    def check(self, data_shape, frames_per_call, batch=1):
        """Let ``predict`` refuse the call shape of frames ``data_shape`` ``[N, h, w, C]`` before
        any work (a frozen graph's recorded input shape)."""
        check = getattr(self.predict, 'check', None)
        if check is None:
            return
        h, w = data_shape[1], data_shape[2]
        call = (batch, frames_per_call) + self.call_hw(h, w) + (data_shape[-1],)
        if call not in self._checked:
            check(call, tuple(data_shape))
            self._checked.add(call)

    def __call__(self, x):
        x = np.asarray(x)
        h, w = x.shape[2], x.shape[3]
        (ph, hs, th), (pw, ws, tw) = (_tile_plan(h, self.tile[0], self.overlap[0], self.multiple),
                                      _tile_plan(w, self.tile[1], self.overlap[1], self.multiple))
        x = pad_to_multiple(x, (ph, pw), (2, 3))
        if len(hs) == 1 and len(ws) == 1:
            out = np.asarray(self.predict(x))
            s = out.shape[-3] // ph
            return out[..., :h * s, :w * s, :]
        total = weights_h = weights_w = dtype = None
        for i, y0 in enumerate(hs):
            for j, x0 in enumerate(ws):
                out = np.asarray(self.predict(x[:, :, y0:y0 + th, x0:x0 + tw]))
                s = out.shape[-3] // th
                if out.shape[-3] != s * th or out.shape[-2] != s * tw:
                    raise ValueError(f'a tile of {th}x{tw} gave an output of '
                                     f'{out.shape[-3]}x{out.shape[-2]}: not a whole scale')
                if total is None:
                    dtype = out.dtype
                    total = np.zeros(out.shape[:-3] + (ph * s, pw * s, out.shape[-1]), np.float32)
                    weights_h = np.zeros((ph * s,), np.float32)
                    weights_w = np.zeros((pw * s,), np.float32)
                mh = _keep_mask(th * s, i == 0, i == len(hs) - 1, self.overlap[0])
                mw = _keep_mask(tw * s, j == 0, j == len(ws) - 1, self.overlap[1])
                total[..., y0 * s:(y0 + th) * s, x0 * s:(x0 + tw) * s, :] += (
                    out * mh[:, None, None] * mw[None, :, None])
                if i == 0:
                    weights_w[x0 * s:(x0 + tw) * s] += mw
            weights_h[y0 * s:(y0 + th) * s] += mh
        # every tile of a row has the same height mask, of a column the same width mask
        out = (total / (weights_h[:, None, None] * weights_w[None, :, None]))[..., :h * s, :w * s, :]
        return _mean_as(out, dtype)


def fixed_batch(predict, batch):
    """``predict`` for any batch when it takes exactly ``batch`` items (a graph frozen with a
    static batch): a partial batch is filled with copies of its last item, a larger one split,
    and the outputs of the filler dropped."""
    batch = int(batch)

    def call(x):
        x = np.asarray(x)
        outs = []
        for i in range(0, len(x), batch):
            part = x[i:i + batch]
            n = len(part)
            if n < batch:
                part = np.concatenate([part, np.repeat(part[-1:], batch - n, axis=0)])
            outs.append(np.asarray(predict(part))[:n])
        return np.concatenate(outs)
    return call
