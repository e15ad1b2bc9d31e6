"""Video snapshot compressive imaging (SCI): forward model, .mat benchmarks, masks, training clips.

Layouts (as in the MATLAB benchmark files and the official masks): a grayscale video is
``[..., H, W, B]`` with the ``B`` frames of one measurement on the last axis; a mask is
``[H, W, B]``; a measurement is ``[..., H, W]``. ``B`` is the compression ratio (8 for every
public benchmark and official mask).

Forward model
    ``y = sum_t mask_t * x_t`` (:func:`measure`, :func:`measure_tf`); its adjoint
    ``x = y * mask`` (:func:`adjoint`).

Network input normalisation (RevSCI / EfficientSCI official code)
    ``mask_s = sum_t mask_t`` with zeros replaced by 1, ``meas_re = meas / mask_s``
    (:func:`mask_sum`, :func:`normalize_measurement`). A pixel that no mask ever samples has
    ``meas = 0`` and ``mask_s = 0 -> 1``, so ``meas_re = 0`` there: defined, finite, no
    division by zero. (The public benchmark mask has 235 such pixels out of 65536.)

Data scale
    Frames are in ``[0, 1]``: 8-bit data is divided by 255 (``sci.max_value``), measurements
    too, so ``measure(orig / 255, mask) == meas / 255``.

Benchmark files (:func:`load_mat`)
    MATLAB ``.mat`` v5/v7 (``scipy.io.loadmat``) or v7.3 (HDF5, read with ``h5py``; MATLAB stores
    arrays column-major, so an ``H x W x N`` variable appears as an ``N x W x H`` dataset and is
    transposed back). Variables ``orig`` (``H x W x N`` ground truth, ``N = M * B``), ``mask``
    (``H x W x B``) and ``meas`` (``H x W x M``); real-measurement files hold only ``meas``
    (the mask then comes from :func:`load_mask`).

Bayer (RGGB)
    :func:`bayer_mosaic` samples an RGB frame into a raw frame: R at (0, 0), G at (0, 1) and
    (1, 0), B at (1, 1) of every 2x2 block (row, column); :func:`measure_bayer` measures raw
    frames; :func:`bayer_split` / :func:`bayer_merge` convert a raw frame to / from its four
    half-resolution planes (R, G1, G2, B), the layout PnP-SCI's colour GAP works on.

Training clips (:class:`SciClipDataset`, :func:`build_sci_train_pipeline`)
    Grayscale (ITU-R BT.601 luma) clips of ``B`` consecutive frames with random crops and flips;
    sample ``i`` is a pure function of ``(seed, i)`` as in :mod:`ascendcv.dataloader.pipeline`.
"""
import os

import numpy as np

from ascendcv.dataloader.pipeline import (_check_int, check_pipeline_args,
                                          sample_index_pipeline)
from ascendcv.dataloader.reds import DatasetError, image_size

__all__ = ['SciDataError', 'measure', 'measure_tf', 'is_color', 'adjoint', 'mask_sum', 'mask_sum_tf',
           'normalize_measurement', 'normalize_measurement_tf', 'split_frames', 'load_mat',
           'load_mask', 'random_mask', 'rgb_to_luma', 'bayer_mosaic', 'bayer_split',
           'bayer_merge', 'measure_bayer', 'SciClipDataset', 'build_sci_dataset',
           'load_sci_training_sample', 'build_sci_train_pipeline', 'training_mask',
           'BAYER_OFFSETS', 'MAT_KEYS', 'simulate_benchmark', 'save_mat']

MAT_KEYS = ('orig', 'mask', 'meas')
"""Variables :func:`load_mat` looks for."""

BAYER_OFFSETS = {'R': (0, 0), 'G1': (0, 1), 'G2': (1, 0), 'B': (1, 1)}
"""RGGB: (row, column) of each colour inside a 2x2 block."""

_LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R BT.601 luma (OpenCV RGB2GRAY / YCrCb Y)


class SciDataError(DatasetError):
    """An SCI data file or array is missing, unreadable or inconsistent; the message names the
    file (or the argument) and what was expected."""


# ============================================================================ forward model

def _check_video_mask(video_shape, mask_shape, what='video'):
    if len(mask_shape) != 3:
        raise ValueError(f'mask must be [H, W, B], got shape {tuple(mask_shape)}')
    if len(video_shape) < 3 or tuple(video_shape[-3:]) != tuple(mask_shape):
        raise ValueError(f'{what} must be [..., H, W, B] matching the mask {tuple(mask_shape)}, '
                         f'got shape {tuple(video_shape)}')


def _float(*arrays):
    dtype = np.result_type(*[a.dtype for a in arrays], np.float32)
    return np.float64 if dtype == np.float64 else np.float32


def measure(video, mask):
    """Snapshot measurement ``y = sum_t mask_t * x_t`` (numpy).

    Args:
        video: ``[..., H, W, B]`` frames (any real dtype).
        mask: ``[H, W, B]``.

    Returns:
        ``[..., H, W]``, float64 if an input is float64, else float32.
    """
    video, mask = np.asarray(video), np.asarray(mask)
    _check_video_mask(video.shape, mask.shape)
    dtype = _float(video, mask)
    return np.einsum('...hwb,hwb->...hw', video.astype(dtype, copy=False),
                     mask.astype(dtype, copy=False))


def measure_tf(video, mask):
    """TensorFlow :func:`measure`: ``[..., H, W, B]`` x ``[H, W, B]`` -> float32 ``[..., H, W]``.

    ``mask`` may also be ``[..., H, W, B]`` (one mask per sample; broadcast)."""
    import tensorflow as tf
    video = tf.cast(video, tf.float32)
    mask = tf.cast(mask, tf.float32)
    return tf.reduce_sum(video * mask, axis=-1)


def adjoint(meas, mask):
    """Adjoint of the forward model, ``x_t = mask_t * y``: ``[..., H, W]`` -> ``[..., H, W, B]``."""
    meas, mask = np.asarray(meas), np.asarray(mask)
    if mask.ndim != 3 or tuple(meas.shape[-2:]) != mask.shape[:2]:
        raise ValueError(f'meas [..., H, W] must match mask [H, W, B]; got {meas.shape} and '
                         f'{mask.shape}')
    dtype = _float(meas, mask)
    return meas.astype(dtype, copy=False)[..., None] * mask.astype(dtype, copy=False)


def mask_sum(mask):
    """``sum_t mask_t`` (float32 ``[..., H, W]``) with zeros replaced by 1 (pixels never sampled),
    the normaliser of the official RevSCI / EfficientSCI input."""
    s = np.asarray(mask, np.float32).sum(-1)
    s[s == 0] = 1
    return s


def mask_sum_tf(mask):
    """TensorFlow :func:`mask_sum`."""
    import tensorflow as tf
    s = tf.reduce_sum(tf.cast(mask, tf.float32), axis=-1)
    return tf.where(s == 0, tf.ones_like(s), s)


def normalize_measurement(meas, mask):
    """``meas_re = meas / mask_sum(mask)`` (float32): ``[..., H, W]`` with ``mask [H, W, B]``
    (or one mask per measurement ``[..., H, W, B]``). 0 where no frame is sampled."""
    meas = np.asarray(meas, np.float32)
    s = mask_sum(mask)
    if tuple(meas.shape[-2:]) != tuple(s.shape[-2:]):
        raise ValueError(f'meas [..., H, W] must match mask [H, W, B]; got {meas.shape} and '
                         f'{np.shape(mask)}')
    return meas / s


def normalize_measurement_tf(meas, mask):
    """TensorFlow :func:`normalize_measurement` (float32)."""
    import tensorflow as tf
    return tf.cast(meas, tf.float32) / mask_sum_tf(mask)


def split_frames(orig, b):
    """``orig [H, W, N]`` -> ``[N // b, H, W, b]``: the ``b`` frames of each measurement; colour
    ``orig [H, W, 3, N]`` -> ``[N // b, H, W, 3, b]``."""
    orig = np.asarray(orig)
    color = orig.ndim == 4 and orig.shape[2] == 3
    if (orig.ndim != 3 and not color) or orig.shape[-1] % b:
        raise ValueError(f'orig must be [H, W, N] (or colour [H, W, 3, N]) with N divisible by '
                         f'{b}, got {orig.shape}')
    n = orig.shape[-1]
    split = orig.reshape(orig.shape[:-1] + (n // b, b))
    return np.ascontiguousarray(np.moveaxis(split, -2, 0))


def is_color(orig):
    """True for colour frames ``[..., H, W, 3, B]`` / ``orig [H, W, 3, N]`` (``ndim >= 4``, 3 on
    the axis before the frames)."""
    return np.ndim(orig) >= 4 and np.shape(orig)[-2] == 3


# ============================================================================ .mat files

def _read_mat_variables(path):
    """All numeric variables of a .mat file -> ``{name: ndarray}`` in MATLAB's ``H x W x ...``
    order, plus the format (``'v5'`` or ``'v7.3'``)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise SciDataError(f'SCI data file not found: {path!r}')
    import h5py
    if h5py.is_hdf5(path):
        out = {}
        try:
            with h5py.File(path, 'r') as f:
                for name, item in f.items():
                    if isinstance(item, h5py.Dataset) and item.dtype.kind in 'biuf':
                        out[name] = np.asarray(item).T  # column-major MATLAB -> H x W x ...
        except OSError as exc:
            raise SciDataError(f'Cannot read MATLAB v7.3 (HDF5) file {path!r}: {exc}') from exc
        return out, 'v7.3'
    import scipy.io
    try:
        raw = scipy.io.loadmat(path)
    except Exception as exc:  # scipy raises ValueError / TypeError / OSError on bad files
        raise SciDataError(f'Cannot read MATLAB file {path!r} (not a .mat v5/v7 or v7.3 file, '
                           f'or corrupt): {exc}') from exc
    out = {k: v for k, v in raw.items()
           if not k.startswith('__') and isinstance(v, np.ndarray) and v.dtype.kind in 'biuf'}
    return out, 'v5'


def load_mat(path, require=()):
    """Read an SCI benchmark or real-measurement ``.mat`` file (v5/v7 or v7.3).

    Args:
        path: the file.
        require: variables that must be present (subset of ``('orig', 'mask', 'meas')``);
            at least one of them is always required.

    Returns:
        dict with the present variables as float32: ``orig [H, W, N]``, ``mask [H, W, B]``,
        ``meas [H, W, M]`` (a 2-D ``meas`` becomes ``[H, W, 1]``); a colour benchmark's
        ``orig`` is ``[H, W, 3, N]`` (RGB, measured through an RGGB Bayer filter); plus ``'format'``
        (``'v5'`` / ``'v7.3'``) and ``'path'``.

    Raises:
        SciDataError: missing/unreadable file, missing variables (named, with the variables the
            file has), wrong ranks, mask and frame sizes that differ, ``N`` not divisible by
            ``B``, or ``meas`` with another count than ``N / B``.
    """
    path = os.fspath(path)
    variables, fmt = _read_mat_variables(path)
    missing = [k for k in require if k not in variables]
    if missing or not any(k in variables for k in MAT_KEYS):
        missing = missing or list(MAT_KEYS)
        raise SciDataError(f'{path!r} has no variable(s) {missing} (SCI files hold '
                           f"'orig' [H,W,N], 'mask' [H,W,B], 'meas' [H,W,M]); it has "
                           f'{sorted(variables) or "no numeric variables"}')
    out = {'format': fmt, 'path': path}
    for key in MAT_KEYS:
        if key in variables:
            arr = np.asarray(variables[key], np.float32)
            if key == 'meas' and arr.ndim == 2:
                arr = arr[..., None]
            if arr.ndim != 3 and not (key == 'orig' and arr.ndim == 4 and arr.shape[2] == 3):
                raise SciDataError(f'{path!r}: {key!r} must be 3-D (H x W x ...; orig may be '
                                   f'colour H x W x 3 x N), got shape {arr.shape}')
            out[key] = arr
    sizes = {k: out[k].shape[:2] for k in MAT_KEYS if k in out}
    if len(set(sizes.values())) > 1:
        raise SciDataError(f'{path!r}: frame sizes differ: '
                           + ', '.join(f'{k} {v[0]}x{v[1]}' for k, v in sizes.items()))
    if 'orig' in out and 'mask' in out:
        n, b = out['orig'].shape[-1], out['mask'].shape[2]
        if n % b:
            raise SciDataError(f'{path!r}: orig has {n} frames, not a multiple of the {b} mask '
                               f'frames (compression ratio)')
        if 'meas' in out and out['meas'].shape[2] != n // b:
            raise SciDataError(f'{path!r}: meas has {out["meas"].shape[2]} measurements but '
                               f'orig/mask give {n} / {b} = {n // b}')
    return out


def load_mask(path, key='mask'):
    """Sensing mask ``[H, W, B]`` float32 from a ``.mat`` (v5/v7.3), ``.npy`` or ``.npz`` file:
    variable ``key``, else the only / first 3-D array.

    The official training masks (``../shared/data/sci/masks``) all hold ``mask`` 256x256x8
    in {0, 1} (uint8 for RevSCI/cacti, float32 for EfficientSCI/Q-SCI).
    """
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    if ext in ('.npy', '.npz'):
        if not os.path.isfile(path):
            raise SciDataError(f'mask file not found: {path!r}')
        data = np.load(path)
        variables = {'mask': data} if ext == '.npy' else {k: data[k] for k in data.files}
    else:
        variables, _ = _read_mat_variables(path)
    if key in variables:
        mask = variables[key]
    else:
        three_d = [k for k in variables if np.ndim(variables[k]) == 3]
        if not three_d:
            raise SciDataError(f'{path!r} has no variable {key!r} and no 3-D array to use as '
                               f'the mask [H, W, B]; it has '
                               f'{ {k: np.shape(v) for k, v in variables.items()} }')
        mask = variables[three_d[0]]
    mask = np.asarray(mask, np.float32)
    if mask.ndim != 3:
        raise SciDataError(f'{path!r}: mask must be [H, W, B], got shape {mask.shape}')
    return mask


def random_mask(h, w, b=8, seed=0, density=0.5):
    """Binary float32 mask ``[h, w, b]``: each entry 1 with probability ``density``, drawn from
    ``numpy.random.default_rng(seed)`` (so a seed gives the same mask everywhere)."""
    for name, v in (('h', h), ('w', w), ('b', b)):
        _check_int(name, v, 1)
    if not 0.0 <= density <= 1.0:
        raise ValueError(f'density must be in [0, 1], got {density}')
    rng = np.random.default_rng(seed)
    return (rng.random((h, w, b)) < density).astype(np.float32)


# ============================================================================ colour

def rgb_to_luma(rgb):
    """ITU-R BT.601 luma ``Y = 0.299 R + 0.587 G + 0.114 B`` of ``[..., 3]`` frames.

    uint8 in -> uint8 out (rounded, as OpenCV's ``cvtColor(..., RGB2GRAY)``); float in -> float
    out (same scale, not rounded).
    """
    rgb = np.asarray(rgb)
    if rgb.ndim < 1 or rgb.shape[-1] != 3:
        raise ValueError(f'rgb_to_luma expects [..., 3] RGB, got shape {rgb.shape}')
    y = rgb.astype(np.float64) @ _LUMA
    if rgb.dtype == np.uint8:
        return np.clip(np.rint(y), 0, 255).astype(np.uint8)
    return y.astype(rgb.dtype if np.issubdtype(rgb.dtype, np.floating) else np.float32)


def bayer_mosaic(rgb):
    """RGGB raw frames from RGB frames: ``[..., H, W, 3]`` -> ``[..., H, W]`` (same dtype).

    Pixel ``(i, j)`` keeps R when ``i, j`` are both even, B when both odd, G otherwise
    (see :data:`BAYER_OFFSETS`). Odd sizes are allowed (the pattern is just cut).
    """
    rgb = np.asarray(rgb)
    if rgb.ndim < 3 or rgb.shape[-1] != 3:
        raise ValueError(f'bayer_mosaic expects RGB frames [..., H, W, 3], got shape {rgb.shape}')
    raw = rgb[..., 1].copy()  # green everywhere, then R and B sites
    raw[..., 0::2, 0::2] = rgb[..., 0::2, 0::2, 0]
    raw[..., 1::2, 1::2] = rgb[..., 1::2, 1::2, 2]
    return raw


def bayer_split(raw):
    """``[..., H, W]`` RGGB raw (H, W even) -> ``[..., H/2, W/2, 4]`` planes (R, G1, G2, B)."""
    raw = np.asarray(raw)
    if raw.ndim < 2 or raw.shape[-1] % 2 or raw.shape[-2] % 2:
        raise ValueError(f'bayer_split expects [..., H, W] with even H and W, got {raw.shape}')
    return np.stack([raw[..., r::2, c::2] for r, c in BAYER_OFFSETS.values()], axis=-1)


def bayer_merge(planes):
    """Inverse of :func:`bayer_split`: ``[..., h, w, 4]`` -> ``[..., 2h, 2w]``."""
    planes = np.asarray(planes)
    if planes.ndim < 3 or planes.shape[-1] != 4:
        raise ValueError(f'bayer_merge expects [..., h, w, 4], got shape {planes.shape}')
    h, w = planes.shape[-3:-1]
    raw = np.empty(planes.shape[:-3] + (2 * h, 2 * w), planes.dtype)
    for k, (r, c) in enumerate(BAYER_OFFSETS.values()):
        raw[..., r::2, c::2] = planes[..., k]
    return raw


def measure_bayer(rgb_frames, mask):
    """Colour (Bayer) SCI measurement: the ``B`` RGB frames ``[..., B, H, W, 3]`` are mosaicked
    (RGGB) and measured with ``mask [H, W, B]``: returns ``[..., H, W]`` (float32/float64)."""
    raw = bayer_mosaic(rgb_frames)  # [..., B, H, W]
    return measure(np.moveaxis(raw, -3, -1), mask)


# ============================================================================ training clips

class _Clip:
    """One training clip: an in-memory array (luma ``[T, H, W]`` or RGB ``[T, H, W, 3]``) or a
    lazily read frame folder."""

    def __init__(self, name, frames=None, files=None, size=None, color=False):
        self.name, self.frames, self.files, self.color = name, frames, files, color
        if frames is not None:
            self.num_frames, self.size = frames.shape[0], frames.shape[1:3]
        else:
            self.num_frames, self.size = len(files), size

    def window(self, start, length, top, left, crop):
        """uint8 ``[length, crop, crop]`` luma (or ``[length, crop, crop, 3]`` RGB) from ``start``."""
        if self.frames is not None:
            return self.frames[start:start + length, top:top + crop, left:left + crop]
        from ascendcv.utils.video_io import VideoError, read_frame_folder
        folder = os.path.dirname(self.files[0])
        try:
            rgb = read_frame_folder(folder, max_frames=length, start=start)
        except VideoError as exc:
            raise SciDataError(str(exc)) from None
        if rgb.shape[1:3] != tuple(self.size):
            raise SciDataError(f'frames of {folder!r} from index {start} are '
                               f'{rgb.shape[1]}x{rgb.shape[2]}, the first frame is '
                               f'{self.size[0]}x{self.size[1]}')
        rgb = rgb[:, top:top + crop, left:left + crop]
        return rgb if self.color else rgb_to_luma(rgb)


def _as_clip_frames(frames, name, color=False):
    frames = np.asarray(frames)
    if frames.dtype != np.uint8:
        raise SciDataError(f'{name}: frames must be uint8, got {frames.dtype}')
    if color:
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise SciDataError(f'{name}: colour SCI training needs RGB frames [T, H, W, 3], got '
                               f'shape {frames.shape}')
        return frames
    if frames.ndim == 4 and frames.shape[-1] == 3:
        return rgb_to_luma(frames)
    if frames.ndim == 4 and frames.shape[-1] == 1:
        return frames[..., 0]
    if frames.ndim != 3:
        raise SciDataError(f'{name}: frames must be [T, H, W] (gray) or [T, H, W, 3] (RGB), got '
                           f'shape {frames.shape}')
    return frames


class SciClipDataset:
    """Training clips for video SCI: grayscale, or RGB for colour (Bayer) SCI.

    Args:
        sources: one source or a list of them; a source is a uint8 array ``[T, H, W]`` (gray) or
            ``[T, H, W, 3]`` (RGB), a video file (decoded once, kept in memory as luma), a bundled
            sample clip by name (``'bikes'``, ``'carphone'``, ``'bigbuckbunny'``) or a folder of frames (read lazily, ``num_frames`` frames per sample). RGB becomes
            ITU-R BT.601 luma (:func:`rgb_to_luma`).
        crop_size (int): square crop side (the mask's size for the official settings, 256).
        num_frames (int): frames per sample = compression ratio ``B`` (8).
        use_flip (bool): random horizontal and vertical flips.
        max_frames (int | None): read at most this many frames of each video file.
        color (bool): keep RGB (samples ``[c, c, 3, B]``, for Bayer measurements) instead of
            converting to luma (samples ``[c, c, B]``).

    A sample (:meth:`training_sample`) draws, in this order from the generator: a clip
    (uniformly), a start frame, the crop's top and left, then (with ``use_flip``) a horizontal
    and a vertical flip, each with probability 1/2.
    """

    def __init__(self, sources, crop_size=256, num_frames=8, use_flip=True, max_frames=None,
                 color=False):
        self.color = bool(color)
        self.crop_size = _check_int('crop_size', crop_size, 1)
        self.num_frames = _check_int('num_frames', num_frames, 1)
        self.use_flip = bool(use_flip)
        if isinstance(sources, (str, os.PathLike, np.ndarray)):
            sources = [sources]
        sources = list(sources)
        if not sources:
            raise SciDataError('SciClipDataset needs at least one source (sci.train_sources is '
                               'empty?)')
        self.clips = [self._load(s, i, max_frames, self.color) for i, s in enumerate(sources)]
        for clip in self.clips:
            if clip.num_frames < self.num_frames:
                raise SciDataError(f'clip {clip.name!r} has {clip.num_frames} frames, fewer than '
                                   f'the {self.num_frames} of one measurement')
            if min(clip.size) < self.crop_size:
                raise SciDataError(f'clip {clip.name!r} is {clip.size[0]}x{clip.size[1]}, smaller '
                                   f'than the crop {self.crop_size}x{self.crop_size}')

    @staticmethod
    def _load(source, index, max_frames, color=False):
        if isinstance(source, np.ndarray):
            name = f'array{index}'
            return _Clip(name, frames=np.ascontiguousarray(_as_clip_frames(source, name, color)),
                         color=color)
        from ascendcv.dataloader.video_frames import resolve_source
        from ascendcv.utils.video_io import VideoError, list_frame_files, read_video
        source = os.fspath(source)
        try:
            if not os.path.exists(source):
                source = resolve_source(source)  # a bundled sample clip by name ('bikes', ...)
            if os.path.isdir(source):
                files = list_frame_files(source)
                if not files:
                    raise SciDataError(f'no image files in frame folder {source!r}')
                return _Clip(source, files=files, size=image_size(files[0]), color=color)
            if os.path.isfile(source):
                rgb = read_video(source, max_frames)
                return _Clip(source, frames=rgb if color else rgb_to_luma(rgb), color=color)
        except VideoError as exc:
            raise SciDataError(str(exc)) from None
        raise SciDataError(f'training source not found (expected a video file or a frame '
                           f'folder): {source!r}')

    def __len__(self):
        return len(self.clips)

    def describe(self):
        frames = sum(c.num_frames for c in self.clips)
        return (f'SCI training clips ({"RGB, Bayer measurements" if self.color else "luma"}): '
                f'{len(self.clips)} clips, {frames} frames, crop {self.crop_size}, '
                f'{self.num_frames} frames per measurement')

    def training_video(self, rng):
        """uint8 ``[crop, crop, B]`` frames (colour ``[crop, crop, 3, B]``; frames on the last
        axis) drawn with ``rng``."""
        clip = self.clips[int(rng.integers(len(self.clips)))]
        c, b = self.crop_size, self.num_frames
        start = int(rng.integers(clip.num_frames - b + 1))
        top = int(rng.integers(clip.size[0] - c + 1))
        left = int(rng.integers(clip.size[1] - c + 1))
        video = clip.window(start, b, top, left, c)  # [B, c, c] or [B, c, c, 3]
        if self.use_flip:
            if rng.random() < 0.5:
                video = video[:, :, ::-1]
            if rng.random() < 0.5:
                video = video[:, ::-1, :]
        return np.ascontiguousarray(np.moveaxis(video, 0, -1))


def build_sci_dataset(cfg, color=False):
    """:class:`SciClipDataset` from ``cfg.sci`` (``train_sources``, ``crop_size``,
    ``compression_ratio``, ``use_flip``); ``color`` for a colour (Bayer) model."""
    sci = cfg.sci
    return SciClipDataset(list(sci.train_sources), crop_size=sci.crop_size,
                          num_frames=sci.compression_ratio, use_flip=sci.use_flip, color=color)


def training_mask(cfg):
    """The training mask: ``sci.mask_file`` if set, else :func:`random_mask` of the crop size
    and compression ratio with ``cfg.seed``."""
    sci = cfg.sci
    if sci.mask_file:
        return load_mask(sci.mask_file)
    return random_mask(sci.crop_size, sci.crop_size, sci.compression_ratio, seed=cfg.seed)


def load_sci_training_sample(dataset, index, seed, mask):
    """Sample ``index`` for ``seed``: ``(meas_re [c, c], mask [c, c, B], video [c, c, B])``
    float32, video in [0, 1]; a colour dataset gives ``video [c, c, 3, B]`` and the RGGB Bayer
    measurement (:func:`measure_bayer`).

    ``mask`` is ``[Hm, Wm, B]`` with ``Hm, Wm >= c``; when larger, a ``c x c`` window is drawn
    with the same generator, after the video (default_rng([seed, index])).
    """
    rng = np.random.default_rng([int(seed), int(index)])
    video = dataset.training_video(rng).astype(np.float32) / np.float32(255)
    c = dataset.crop_size
    mh, mw = mask.shape[:2]
    if (mh, mw) != (c, c):
        top, left = int(rng.integers(mh - c + 1)), int(rng.integers(mw - c + 1))
        mask = mask[top:top + c, left:left + c]
    mask = np.ascontiguousarray(mask, np.float32)
    meas = measure_bayer(np.moveaxis(video, -1, 0), mask) if dataset.color else measure(video, mask)
    return normalize_measurement(meas, mask), mask, video


def build_sci_train_pipeline(cfg, dataset, mask, seed, start_step=0, rank=0, world_size=1):
    """Infinite deterministic ``tf.data.Dataset`` of SCI training batches.

    Yields ``((meas_re [N, c, c], mask [N, c, c, B]), video [N, c, c, B])`` (colour datasets:
    ``video [N, c, c, 3, B]``, Bayer measurements) float32 with
    ``N = data.batch_size``, ``c = dataset.crop_size``: the network input of the official
    RevSCI / EfficientSCI code (``meas / mask_s``), the mask of each sample and the target
    frames in [0, 1]. Sample numbering, sharding over ranks and resuming follow
    :mod:`ascendcv.dataloader.pipeline`: batch ``k`` of a pipeline started at ``start_step`` is
    batch ``start_step + k`` of one started at 0, for any ``data.num_threads``.

    Raises:
        ValueError / SciDataError: bad arguments, or a mask of another frame count than the
            dataset's or smaller than the crop.
    """
    import tensorflow as tf

    batch_size, seed, start_step, rank, world_size = check_pipeline_args(
        cfg, seed, start_step, rank, world_size)
    mask = np.asarray(mask, np.float32)
    c, b = dataset.crop_size, dataset.num_frames
    if mask.ndim != 3 or mask.shape[2] != b or min(mask.shape[:2]) < c:
        raise SciDataError(f'training mask must be [H, W, {b}] with H, W >= crop {c}, got shape '
                           f'{mask.shape}')

    def sample(index):
        index = int(index)
        try:
            return load_sci_training_sample(dataset, index, seed, mask)
        except DatasetError as exc:
            raise SciDataError(f'{exc} [training sample {index}, seed {seed}]') from None

    def to_tensors(index):
        meas_re, m, video = tf.numpy_function(sample, [index], (tf.float32,) * 3, stateful=False,
                                              name='load_sci_training_sample')
        meas_re.set_shape((c, c))
        m.set_shape((c, c, b))
        video.set_shape((c, c, 3, b) if dataset.color else (c, c, b))
        return (meas_re, m), video

    return sample_index_pipeline(cfg, to_tensors, batch_size, start_step, rank, world_size)


# ============================================================================ benchmark files

def simulate_benchmark(frames, mask):
    """A benchmark file's variables from uint8 frames: ``frames`` ``[N, H, W]`` (grayscale) or
    ``[N, H, W, 3]`` (RGB, measured through the RGGB Bayer filter), ``mask`` ``[H, W, B]`` with
    ``B`` dividing ``N``. Returns ``{'orig': [H, W, N] | [H, W, 3, N] uint8, 'mask': [H, W, B],
    'meas': [H, W, N / B] float64}`` (the layout of the ``*_cacti.mat`` files)."""
    frames, mask = np.asarray(frames), np.asarray(mask)
    color = frames.ndim == 4 and frames.shape[-1] == 3
    if frames.dtype != np.uint8 or (frames.ndim != 3 and not color):
        raise SciDataError(f'frames must be uint8 [N, H, W] or [N, H, W, 3], got {frames.dtype} '
                           f'{frames.shape}')
    if mask.ndim != 3 or mask.shape[:2] != frames.shape[1:3]:
        raise SciDataError(f'mask must be [H, W, B] of the frames\' size {frames.shape[1:3]}, got '
                           f'{mask.shape}')
    n, b = frames.shape[0], mask.shape[-1]
    if n % b:
        raise SciDataError(f'{n} frames are not a multiple of the compression ratio {b}')
    orig = np.moveaxis(frames, 0, -1)                          # [H, W, (3,) N]
    groups = split_frames(orig, b).astype(np.float64)          # [M, H, W, (3,) B]
    meas = (measure_bayer(np.moveaxis(groups, -1, 1), mask.astype(np.float64)) if color
            else measure(groups, mask.astype(np.float64)))     # [M, H, W]
    return {'orig': orig, 'mask': mask, 'meas': np.moveaxis(meas, 0, -1)}


def save_mat(path, variables):
    """Write ``variables`` to a MATLAB v5 ``.mat`` file atomically (temp file, then rename)."""
    import io

    import scipy.io

    from ascendcv.utils.fileio import atomic_write_bytes
    buf = io.BytesIO()
    scipy.io.savemat(buf, variables, do_compression=True)
    atomic_write_bytes(path, buf.getvalue())
    return path
