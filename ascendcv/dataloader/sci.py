"""Video snapshot compressive imaging (SCI) data: .mat benchmarks, masks, the benchmark dataset,
training clips.

The measurement physics (forward model, normalisation, frame grouping, Bayer filter) is in
:mod:`ascendcv.utils.sci_physics`, shared with the models; this module reads files and builds
datasets on top of it. (The physics names are still importable from here.)

Layouts: a grayscale video is ``[..., H, W, B]`` with the ``B`` frames of one measurement on the
last axis (colour ``[..., H, W, 3, B]``); a mask is ``[H, W, B]``; a measurement is
``[..., H, W]``.

Data scale
    Frames are in ``[0, 1]``: 8-bit data is divided by 255 (``sci.max_value``), measurements
    too, so ``measure(orig / 255, mask) == meas / 255``.

Benchmark files (:func:`load_mat`)
    MATLAB ``.mat`` v5/v7 (``scipy.io.loadmat``) or v7.3 (HDF5, read with ``h5py``; MATLAB stores
    arrays column-major, so an ``H x W x N`` variable appears as an ``N x W x H`` dataset and is
    transposed back). Variables ``orig`` (``H x W x N`` ground truth, ``N = M * B``; colour
    ``H x W x 3 x N``, measured through an RGGB Bayer filter), ``mask`` (``H x W x B``) and
    ``meas`` (``H x W x M``); real-measurement files hold only ``meas`` (the mask then comes from
    :func:`load_mask`, ``sci.mask_file``).

Benchmark dataset (:class:`SciBenchmarkDataset`, :func:`list_sci_files`)
    The ``.mat`` files of a folder in the papers' order, each paired with its mask and read into
    an :class:`SciItem`: measurements on the frames' scale, ground truth when present, and how
    many measurements to reconstruct and score.

Training clips (:class:`SciClipDataset`, :func:`build_sci_train_pipeline`)
    Grayscale (ITU-R BT.601 luma) clips of ``B`` consecutive frames with random crops and flips;
    sample ``i`` is a pure function of ``(seed, i)`` as in :mod:`ascendcv.dataloader.pipeline`.
"""
import os
from dataclasses import dataclass
from typing import Optional

import numpy as np

from ascendcv.dataloader.pipeline import (_check_int, check_pipeline_args,
                                          sample_index_pipeline)
from ascendcv.dataloader.frame_clips import DatasetError, image_size
from ascendcv.utils.sci_physics import (is_color, measure, measure_bayer, normalize_measurement,
                                        rgb_to_luma, split_frames)

__all__ = ['SciDataError', 'load_mat', 'load_mask', 'random_mask', 'SciItem', 'dataset_name',
           'SciBenchmarkDataset', 'list_sci_files', 'BENCHMARK_ORDER', 'SciClipDataset',
           'build_sci_dataset', 'load_sci_training_sample', 'build_sci_train_pipeline',
           'training_mask', 'MAT_KEYS', 'simulate_benchmark', 'save_mat']

MAT_KEYS = ('orig', 'mask', 'meas')
"""Variables :func:`load_mat` looks for."""

BENCHMARK_ORDER = ('kobe', 'traffic', 'runner', 'drop', 'crash', 'aerial')
"""The six grayscale benchmarks in the order of the papers' tables (others follow by name)."""


class SciDataError(DatasetError):
    """An SCI data file or array is missing, unreadable or inconsistent; the message names the
    file (or the argument) and what was expected."""


# ============================================================================ .mat files

FETCH_HINT = ('the public benchmarks and official masks ship in data/sci/ (see data/sci/README.md); '
              'restore them with: bash scripts/get_sci_data.sh [SRC]')


def _read_mat_variables(path):
    """All numeric variables of a .mat file -> ``{name: ndarray}`` in MATLAB's ``H x W x ...``
    order, plus the format (``'v5'`` or ``'v7.3'``)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise SciDataError(f'SCI data file not found: {path!r} ({FETCH_HINT})')
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


def load_mask(path, key='mask', setting=None):
    """Sensing mask ``[H, W, B]`` float32 from a ``.mat`` (v5/v7.3), ``.npy`` or ``.npz`` file:
    variable ``key``, else the only / first 3-D array. The one place a mask file is read (the
    benchmark dataset, training and the SCI task all come here; models never read files).

    The official training masks (``../shared/data/sci/masks``) all hold ``mask`` 256x256x8
    in {0, 1} (uint8 for RevSCI/cacti, float32 for EfficientSCI/Q-SCI).

    Args:
        path: the file.
        key: variable name (``sci.mask_key``).
        setting: the config key that named the file (e.g. ``'sci.mask_file'``), added to the
            error messages.

    Raises:
        SciDataError: missing/unreadable file, no such variable and no 3-D array, or a mask that
            is not 3-D.
    """
    path = os.fspath(path)
    where = f' ({setting})' if setting else ''
    ext = os.path.splitext(path)[1].lower()
    if ext in ('.npy', '.npz'):
        if not os.path.isfile(path):
            raise SciDataError(f'mask file not found: {path!r}{where}; {FETCH_HINT}')
        try:
            if ext == '.npy':
                variables = {'mask': np.load(path)}
            else:
                with np.load(path) as data:
                    variables = {k: data[k] for k in data.files}
        except (OSError, ValueError) as exc:
            raise SciDataError(f'cannot read mask file {path!r}{where}: {exc}') from exc
    else:
        try:
            variables, _ = _read_mat_variables(path)
        except SciDataError as exc:
            raise SciDataError(f'{exc}{where}') from None
    if key in variables:
        mask = variables[key]
    else:
        three_d = [k for k in variables if np.ndim(variables[k]) == 3]
        if not three_d:
            raise SciDataError(f'{path!r}{where} has no variable {key!r} and no 3-D array to '
                               f'use as the mask [H, W, B]; it has '
                               f'{ {k: np.shape(v) for k, v in variables.items()} }')
        mask = variables[three_d[0]]
    mask = np.asarray(mask, np.float32)
    if mask.ndim != 3:
        raise SciDataError(f'{path!r}{where}: mask must be [H, W, B], got shape {mask.shape}')
    return check_finite_mask(mask, f'{path!r}{where}')


def check_finite_mask(mask, what):
    """Refuse a mask that cannot sense anything: non-finite values, or a frame ``t`` whose mask
    is all zero (that frame is never measured; e.g. an all-zero mask reconstructs nothing)."""
    if not np.all(np.isfinite(mask)):
        raise SciDataError(f'{what}: the mask holds NaN or infinite values')
    empty = [t for t in range(mask.shape[-1]) if not np.any(mask[..., t])]
    if empty:
        raise SciDataError(f'{what}: the mask of frame(s) {empty} (of {mask.shape[-1]}) is all '
                           f'zero, so those frames are never measured')
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


# ============================================================================ benchmark dataset

def dataset_name(path):
    """A benchmark's name: the file stem without ``_cacti`` (``drop40_cacti.mat`` -> ``drop40``)."""
    stem = os.path.splitext(os.path.basename(os.fspath(path)))[0]
    return stem[:-len('_cacti')] if stem.endswith('_cacti') else stem


_dataset_name = dataset_name


def _order_key(path):
    name = dataset_name(path).lower()
    for i, bench in enumerate(BENCHMARK_ORDER):
        if name.startswith(bench):
            return (i, name)
    return (len(BENCHMARK_ORDER), name)


def list_sci_files(folder, names=(), setting='sci.data_dir'):
    """The ``.mat`` files of ``folder`` in benchmark order (:data:`BENCHMARK_ORDER` first, then by
    name), restricted to ``names`` (file stems, with or without ``_cacti``) when given.
    ``setting`` names the config key of the folder in error messages."""
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise SciDataError(f'SCI data folder not found: {folder!r} ({setting}); {FETCH_HINT}')
    files = [os.path.join(folder, f) for f in os.listdir(folder)
             if f.lower().endswith('.mat') and not f.startswith('.')]
    if names:
        wanted = {str(n) for n in names}
        files = [f for f in files if dataset_name(f) in wanted
                 or os.path.splitext(os.path.basename(f))[0] in wanted]
        found = {dataset_name(f) for f in files} | {os.path.splitext(os.path.basename(f))[0]
                                                    for f in files}
        missing = sorted(wanted - found)
        if missing:
            raise SciDataError(f'sci.datasets {missing} not found in {folder!r}')
    if not files:
        raise SciDataError(f'no .mat files in {folder!r} ({setting}); {FETCH_HINT}')
    return sorted(files, key=_order_key)


@dataclass(frozen=True)
class SciItem:
    """One ``.mat`` file of a :class:`SciBenchmarkDataset`, read and paired with its mask.

    Attributes:
        name (str): the dataset name (file stem without ``_cacti``).
        path (str): the file.
        mask (ndarray): float32 ``[H, W, B]``, the file's own or ``sci.mask_file``.
        mask_source (str): ``'file'`` (the file's ``mask``) or the path of ``sci.mask_file``.
        meas (ndarray): float32 ``[M, H, W]``, every measurement on the frames' scale (file
            ``meas / max_value``; simulated from ``orig`` when the file has no ``meas``, through
            the RGGB Bayer filter for colour frames). Not divided by ``sum_t mask_t``: that
            normalisation is a network's input convention, applied by the model.
        gt (ndarray or None): float32 ``[M, H, W, B]`` (colour ``[M, H, W, 3, B]``) ground-truth
            frames in [0, 1] (``orig / max_value``); None for real data (no ``orig``).
        count (int): how many measurements to reconstruct (and score), the first ``count``:
            all, 1 for a benchmark named in ``first_measurement_only``, at most
            ``max_measurements`` (when > 0).
        simulated (bool): ``meas`` was computed from ``orig`` and ``mask``.
    """
    name: str
    path: str
    mask: np.ndarray
    mask_source: str
    meas: np.ndarray
    gt: Optional[np.ndarray]
    count: int
    simulated: bool = False

    @property
    def is_benchmark(self):
        """The file has ground truth (``orig``): scored; otherwise real data, only reconstructed."""
        return self.gt is not None

    @property
    def color(self):
        """Colour ground truth (``orig [H, W, 3, N]``); False for real data."""
        return self.gt is not None and is_color(self.gt)

    @property
    def compression_ratio(self):
        return int(self.mask.shape[-1])


class SciBenchmarkDataset:
    """The SCI ``.mat`` files of a folder (or one file), each read into an :class:`SciItem`.

    Files are listed in benchmark order (:func:`list_sci_files`) and read one at a time while
    iterating (``for item in dataset``) or by index (``dataset[i]``). Each file is paired with a
    mask: its own ``mask`` variable, else ``mask_file`` (``sci.mask_file``, read once), else a
    :class:`SciDataError` naming the file and the key.

    Args:
        source: a folder of ``.mat`` files or one ``.mat`` file.
        names: restrict a folder to these dataset names (``sci.datasets``; [] = all).
        mask_file (str): the mask of files without one (``sci.mask_file``; '' = none).
        mask_key (str): its variable (``sci.mask_key``).
        max_value (float): data scale (``sci.max_value``): frames and measurements are divided by
            it.
        first_measurement_only: name prefixes of benchmarks whose first measurement alone is
            scored (``sci.first_measurement_only``, PnP-SCI: runner, drop; case-insensitive).
        max_measurements (int): at most this many measurements per file (< 1 = all).
        setting (str): the config key of ``source``, for error messages.
    """

    def __init__(self, source, names=(), mask_file='', mask_key='mask', max_value=255.0,
                 first_measurement_only=(), max_measurements=-1, setting='sci.data_dir'):
        source = os.fspath(source)
        self.source, self.setting = source, setting
        if os.path.isdir(source):
            self.files = list_sci_files(source, list(names), setting)
        elif os.path.isfile(source):
            self.files = [source]
        else:
            raise SciDataError(f'SCI data not found: {source!r} ({setting}: a folder of .mat '
                               f'files or one .mat file); {FETCH_HINT}')
        self.max_value = float(max_value)
        if not self.max_value > 0:
            raise ValueError(f'sci.max_value must be > 0, got {max_value}')
        self.mask_file, self.mask_key = str(mask_file or ''), str(mask_key or 'mask')
        self.first_only = tuple(str(p).lower() for p in first_measurement_only)
        self.max_measurements = int(max_measurements)
        self._shared_mask = None

    @classmethod
    def from_config(cls, cfg, source=None, scoring=True):
        """The evaluation dataset (``scoring``: ``sci.data_dir`` restricted to ``sci.datasets``,
        ``sci.first_measurement_only`` applied) or the inference one (``source``, default
        ``inference.source`` or else ``sci.data_dir``; every measurement). Both honour
        ``sci.mask_file`` / ``sci.mask_key``, ``sci.max_value`` and ``sci.max_measurements``."""
        sci = cfg.sci
        if scoring:
            source, setting, names, first = sci.data_dir, 'sci.data_dir', list(sci.datasets), \
                list(sci.first_measurement_only)
        else:
            if source is None:
                source = cfg.inference.source or sci.data_dir
                setting = 'inference.source' if cfg.inference.source else 'sci.data_dir'
            else:
                setting = 'inference.source'
            names, first = (), ()
        return cls(source, names=names, mask_file=sci.mask_file, mask_key=sci.mask_key,
                   max_value=sci.max_value, first_measurement_only=first,
                   max_measurements=sci.max_measurements, setting=setting)

    def __len__(self):
        return len(self.files)

    @property
    def names(self):
        return [dataset_name(f) for f in self.files]

    def __iter__(self):
        for i in range(len(self.files)):
            yield self[i]

    def __getitem__(self, index):
        return self.load(self.files[index])

    def _mask(self, data, path):
        if 'mask' in data:
            return data['mask'], 'file'
        if self.mask_file:
            if self._shared_mask is None:
                self._shared_mask = load_mask(self.mask_file, self.mask_key,
                                              setting='sci.mask_file')
            return self._shared_mask, self.mask_file
        raise SciDataError(f'{path!r} has no mask; set sci.mask_file to the mask of these '
                           f'measurements')

    def load(self, path):
        """The :class:`SciItem` of ``path`` (see the class docstring)."""
        path = os.fspath(path)
        name = dataset_name(path)
        data = load_mat(path)
        mask, mask_source = self._mask(data, path)
        scale = np.float32(self.max_value)
        gt = None
        if 'orig' in data:
            b = mask.shape[-1]
            if data['orig'].shape[-1] % b:
                raise SciDataError(f'{path!r}: orig has {data["orig"].shape[-1]} frames, not a '
                                   f'multiple of the {b} frames of the mask ({mask_source})')
            gt = split_frames(data['orig'], b) / scale        # [M, H, W, (3,) B]
        if 'meas' in data:
            meas = np.ascontiguousarray(np.moveaxis(data['meas'], -1, 0)) / scale
        else:
            if tuple(gt.shape[1:3]) != tuple(mask.shape[:2]):
                raise SciDataError(f'{path!r}: frames are {gt.shape[1]}x{gt.shape[2]} but the '
                                   f'mask ({mask_source}) is {mask.shape[0]}x{mask.shape[1]}')
            # colour [M, H, W, 3, B]: the RGGB Bayer measurement of the RGB frames
            meas = (measure_bayer(np.moveaxis(gt, -1, 1), mask) if is_color(gt)
                    else measure(gt, mask))
        meas = np.asarray(meas, np.float32)
        check_finite_mask(mask, f'{path!r} ({mask_source} mask)')
        bad = int(np.size(meas) - np.count_nonzero(np.isfinite(meas)))
        if bad:
            raise SciDataError(f'{path!r}: {bad} measurement value(s) are NaN or infinite '
                               f'(meas must be finite)')
        if gt is not None and not np.all(np.isfinite(gt)):
            raise SciDataError(f'{path!r}: orig holds NaN or infinite values')
        if mask.shape[:2] != meas.shape[1:]:
            raise SciDataError(f'{path!r}: measurements are {meas.shape[1]}x{meas.shape[2]} but '
                               f'the mask is {mask.shape[0]}x{mask.shape[1]}')
        if gt is not None and len(gt) != len(meas):
            raise SciDataError(f'{path!r}: {len(meas)} measurements but orig gives {len(gt)} '
                               f'groups of {mask.shape[-1]} frames')
        count = len(meas)
        if gt is not None and name.lower().startswith(self.first_only):
            count = 1
        if self.max_measurements > 0:
            count = min(count, self.max_measurements)
        return SciItem(name=name, path=path, mask=np.ascontiguousarray(mask, np.float32),
                       mask_source=mask_source, meas=meas,
                       gt=None if gt is None else gt.astype(np.float32, copy=False),
                       count=count, simulated='meas' not in data)


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
            sample clip by name (``'bikes'``, ``'carphone'``, ``'bigbuckbunny'``) or a folder of
            frames (read lazily, ``num_frames`` frames per sample). RGB becomes
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
        from ascendcv.utils.video_io import VideoError, list_frame_files, read_video, resolve_source
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
        return load_mask(sci.mask_file, sci.mask_key, setting='sci.mask_file')
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
