"""Clips of paired LR / GT frame files on disk: the base class of the REDS and Vimeo90K datasets.

:class:`FrameClipDataset` indexes clips (subclasses only list their frame files,
:meth:`FrameClipDataset._scan`) and checks everything that can be checked without decoding
pixels when the dataset is built (missing folders, GT/LR frame lists that differ, frame sizes
read from the image headers), so a bad dataset fails before training starts, with a
:class:`DatasetError` naming the path. Pixels are decoded lazily
(:meth:`FrameClipDataset.load_clip`, :meth:`FrameClipDataset.training_sample`); a corrupt image
raises :class:`DatasetError` naming the file.

Training samples follow BasicSR's ``REDSDataset``: random clip, random interval from
``interval_list``, random centre frame such that the whole temporal window fits in the clip,
optional random reversal of the frame order, and an aligned random crop (LR crop at ``(y, x)``
<-> GT crop at ``(y * scale, x * scale)``). All randomness comes from the ``numpy.random.Generator``
passed in, so a sample is a pure function of the generator state (see
:func:`ascendcv.dataloader.pipeline.build_train_pipeline`).
"""
import os
import struct
from dataclasses import dataclass

import numpy as np

from ascendcv.utils.video_io import IMAGE_EXTENSIONS, VideoError, list_frame_files, natural_key
from ascendcv.utils.video_io import read_image as video_io_read_image

__all__ = ['DatasetError', 'ClipInfo', 'FrameClipDataset', 'read_image', 'image_size',
           'list_image_files', 'check_training_args', 'resolve_path']

_PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'


class DatasetError(ValueError):
    """A dataset on disk is missing, incomplete, inconsistent or corrupt; the message names
    the path (and the sizes or names involved)."""


# --------------------------------------------------------------------------- image helpers

def list_image_files(folder):
    """Names (not paths) of the image files directly inside ``folder``, natural order
    (:func:`ascendcv.utils.video_io.list_frame_files`: hidden files such as the ``.tmp-*``
    files of an interrupted atomic write are skipped)."""
    try:
        return [os.path.basename(p) for p in list_frame_files(folder)]
    except VideoError as exc:
        raise DatasetError(str(exc)) from exc


def image_size(path):
    """``(height, width)`` of an image from its header, without decoding pixels.

    PNG headers are parsed directly (24 bytes); other formats go through ``PIL.Image.open``.

    Raises:
        DatasetError: the file is missing or its header is unreadable (names the file).
    """
    try:
        with open(path, 'rb') as f:
            head = f.read(24)
    except OSError as exc:
        raise DatasetError(f'Cannot open image {path!r}: {exc.strerror or exc}') from exc
    if len(head) == 24 and head[:8] == _PNG_SIGNATURE and head[12:16] == b'IHDR':
        width, height = struct.unpack('>II', head[16:24])
        if width > 0 and height > 0:
            return int(height), int(width)
    from PIL import Image
    try:
        with Image.open(path) as img:
            width, height = img.size
    except Exception as exc:  # PIL raises OSError / SyntaxError / ValueError on bad headers
        raise DatasetError(f'Cannot read image header of {path!r} (unreadable or corrupt): '
                           f'{exc}') from exc
    return int(height), int(width)


def read_image(path):
    """Decode an image file into ``uint8 [H, W, 3]`` RGB (gray replicated, alpha dropped;
    :func:`ascendcv.utils.video_io.read_image`).

    Raises:
        DatasetError: missing, unreadable or corrupt file (names the file).
    """
    try:
        return video_io_read_image(path)
    except VideoError as exc:
        raise DatasetError(str(exc)) from exc


def _fmt(size):
    return f'{size[0]}x{size[1]} (HxW)'


# --------------------------------------------------------------------------- base class

@dataclass(frozen=True)
class ClipInfo:
    """One indexed clip: frame paths (LR and GT, same order) and frame sizes ``(h, w)``."""
    name: str
    lr_paths: tuple
    gt_paths: tuple
    lr_size: tuple
    gt_size: tuple

    @property
    def num_frames(self):
        return len(self.lr_paths)


class FrameClipDataset:
    """Clips of paired LR / GT frames on disk; subclasses only index them (:meth:`_scan`).

    Attributes:
        data_dir: dataset root. split: label ('train', 'val', ...). scale: GT size / LR size.
        clips: tuple of clip names, in the order of the list file.
    """

    kind = 'frames'

    def __init__(self, data_dir, split, scale, check_sizes=True):
        if isinstance(scale, bool) or not isinstance(scale, (int, np.integer)) or scale < 1:
            raise ValueError(f'scale must be a positive int, got {scale!r}')
        self.data_dir = os.fspath(data_dir)
        self.split = split
        self.scale = int(scale)
        if not os.path.isdir(self.data_dir):
            raise DatasetError(f'{self.kind} data_dir not found (or not a folder): '
                               f'{self.data_dir!r} (set data.data_dir)')
        self._info = {}
        for name, lr_paths, gt_paths in self._scan():
            self._info[name] = self._make_info(name, lr_paths, gt_paths, check_sizes)
        if not self._info:
            raise DatasetError(f'{self.kind} {split} set at {self.data_dir!r} lists no clips')
        self.clips = tuple(self._info)

    # -- to implement
    def _scan(self):
        """Yield ``(clip_name, lr_paths, gt_paths)``; raise DatasetError for missing files."""
        raise NotImplementedError

    def center_range(self, clip, half_span):
        """Inclusive ``(lo, hi)`` range of training centre frames whose window of
        ``centre +- half_span`` frames fits in ``clip`` (``lo > hi``: none fits)."""
        return half_span, self.num_frames(clip) - 1 - half_span

    def eval_centers(self, clip):
        """Frame indices to restore and score when evaluating ``clip`` (all frames)."""
        return list(range(self.num_frames(clip)))

    # -- indexing
    def _make_info(self, name, lr_paths, gt_paths, check_sizes):
        lr_paths, gt_paths = tuple(lr_paths), tuple(gt_paths)
        if len(lr_paths) != len(gt_paths):  # pragma: no cover - subclasses pair them
            raise DatasetError(f'Clip {name!r}: {len(lr_paths)} LR frames but {len(gt_paths)} '
                               f'GT frames')
        if not lr_paths:
            raise DatasetError(f'Clip {name!r} has no frames')
        lr_size = self._common_size(name, lr_paths, check_sizes)
        gt_size = self._common_size(name, gt_paths, check_sizes)
        expected = (lr_size[0] * self.scale, lr_size[1] * self.scale)
        if gt_size != expected:
            raise DatasetError(
                f'LR/GT size mismatch in clip {name!r}: LR frame {lr_paths[0]!r} is '
                f'{_fmt(lr_size)}, GT frame {gt_paths[0]!r} is {_fmt(gt_size)}; with scale '
                f'{self.scale} the GT should be {_fmt(expected)} (check model.scale and the '
                f'LR folder)')
        return ClipInfo(name, lr_paths, gt_paths, lr_size, gt_size)

    @staticmethod
    def _common_size(name, paths, check_sizes):
        first = image_size(paths[0])
        if check_sizes:
            for path in paths[1:]:
                size = image_size(path)
                if size != first:
                    raise DatasetError(f'Frame size mismatch in clip {name!r}: {path!r} is '
                                       f'{_fmt(size)} but {paths[0]!r} is {_fmt(first)}')
        return first

    @staticmethod
    def _paired_frames(name, lr_dir, gt_dir):
        """Frame paths of an LR and a GT folder holding the same file names."""
        for folder in (gt_dir, lr_dir):
            if not os.path.isdir(folder):
                raise DatasetError(f'Frame folder of clip {name!r} not found: {folder!r}')
        lr_names, gt_names = list_image_files(lr_dir), list_image_files(gt_dir)
        if lr_names != gt_names:
            only_gt = sorted(set(gt_names) - set(lr_names), key=natural_key)
            only_lr = sorted(set(lr_names) - set(gt_names), key=natural_key)
            raise DatasetError(
                f'GT and LR frames of clip {name!r} differ: {gt_dir!r} has {len(gt_names)} '
                f'images, {lr_dir!r} has {len(lr_names)}; only in GT: {only_gt[:5]}'
                f'{" ..." if len(only_gt) > 5 else ""}, only in LR: {only_lr[:5]}'
                f'{" ..." if len(only_lr) > 5 else ""}')
        if not gt_names:
            raise DatasetError(f'No image files ({"/".join(IMAGE_EXTENSIONS)}) in {gt_dir!r} '
                               f'(clip {name!r})')
        return ([os.path.join(lr_dir, n) for n in lr_names],
                [os.path.join(gt_dir, n) for n in gt_names])

    # -- queries
    def __len__(self):
        return len(self.clips)

    def clip_info(self, clip):
        try:
            return self._info[clip]
        except KeyError:
            raise KeyError(f'Unknown clip {clip!r} in {self.kind} {self.split} set '
                           f'(clips: {list(self.clips)[:10]}'
                           f'{" ..." if len(self.clips) > 10 else ""})') from None

    def num_frames(self, clip):
        return self.clip_info(clip).num_frames

    def frame_paths(self, clip):
        """``(lr_paths, gt_paths)``: lists of frame files of ``clip``, in frame order."""
        info = self.clip_info(clip)
        return list(info.lr_paths), list(info.gt_paths)

    def lr_size(self, clip):
        return self.clip_info(clip).lr_size

    def gt_size(self, clip):
        return self.clip_info(clip).gt_size

    @property
    def total_frames(self):
        return sum(info.num_frames for info in self._info.values())

    def load_clip(self, clip, max_frames=None):
        """Decode a clip: ``(lr uint8 [N, h, w, 3], gt uint8 [N, H, W, 3])``.

        ``max_frames`` (``None`` or < 1: all) keeps the first frames only.
        """
        info = self.clip_info(clip)
        n = info.num_frames
        if max_frames is not None and max_frames > 0:
            n = min(n, int(max_frames))
        lr = np.empty((n,) + tuple(info.lr_size) + (3,), np.uint8)
        gt = np.empty((n,) + tuple(info.gt_size) + (3,), np.uint8)
        for i in range(n):
            lr[i] = self._read(info.lr_paths[i], info.lr_size, clip)
            gt[i] = self._read(info.gt_paths[i], info.gt_size, clip)
        return lr, gt

    @staticmethod
    def _read(path, size, clip):
        img = read_image(path)
        if img.shape[:2] != tuple(size):  # file replaced after indexing
            raise DatasetError(f'Frame {path!r} of clip {clip!r} is {_fmt(img.shape[:2])}, '
                               f'expected {_fmt(size)} (changed since the dataset was indexed?)')
        return img

    # -- training
    def check_training(self, num_frame, crop_size, interval_list):
        """Fail early if some clip cannot give a training sample with these settings."""
        check_training_args(num_frame, crop_size, interval_list)
        half = num_frame // 2
        for clip in self.clips:
            info = self._info[clip]
            h, w = info.lr_size
            if crop_size > h or crop_size > w:
                raise DatasetError(f'data.crop_size={crop_size} is larger than the LR frames of '
                                   f'clip {clip!r} ({_fmt(info.lr_size)}, e.g. '
                                   f'{info.lr_paths[0]!r})')
            for interval in interval_list:
                lo, hi = self.center_range(clip, half * interval)
                if lo > hi:
                    raise DatasetError(
                        f'Clip {clip!r} ({info.num_frames} frames, '
                        f'{os.path.dirname(info.lr_paths[0])!r}) '
                        f'is too short for num_frame={num_frame} with interval {interval} '
                        f'(data.interval_list={list(interval_list)})')

    def training_sample(self, rng, num_frame, crop_size, interval_list=(1,),
                        random_reverse=False):
        """One random training sample (BasicSR ``REDSDataset.__getitem__``).

        Draws, in this order from ``rng``: clip, interval, centre frame, reversal (only if
        ``random_reverse``), crop row, crop column.

        Returns:
            ``(lr float32 [num_frame, crop, crop, 3], gt float32 [crop*scale, crop*scale, 3])``
            in ``[0, 1]``; ``gt`` is the centre frame of the window.
        """
        check_training_args(num_frame, crop_size, interval_list)
        clip = self.clips[int(rng.integers(len(self.clips)))]
        info = self._info[clip]
        interval = int(interval_list[int(rng.integers(len(interval_list)))])
        half = num_frame // 2
        lo, hi = self.center_range(clip, half * interval)
        if lo > hi:
            raise DatasetError(f'Clip {clip!r} ({info.num_frames} frames) is too short for '
                               f'num_frame={num_frame} with interval {interval}')
        center = int(rng.integers(lo, hi + 1))
        neighbors = [center + k * interval for k in range(-half, half + 1)]
        if random_reverse and rng.random() < 0.5:
            neighbors.reverse()

        h, w = info.lr_size
        if crop_size > h or crop_size > w:
            raise DatasetError(f'crop_size={crop_size} is larger than the LR frames of clip '
                               f'{clip!r} ({_fmt(info.lr_size)})')
        y = int(rng.integers(0, h - crop_size + 1))
        x = int(rng.integers(0, w - crop_size + 1))
        s = self.scale
        lr = np.empty((num_frame, crop_size, crop_size, 3), np.float32)
        for t, idx in enumerate(neighbors):
            frame = self._read(info.lr_paths[idx], info.lr_size, clip)
            lr[t] = frame[y:y + crop_size, x:x + crop_size]
        gt_frame = self._read(info.gt_paths[center], info.gt_size, clip)
        gt = gt_frame[y * s:(y + crop_size) * s, x * s:(x + crop_size) * s].astype(np.float32)
        lr *= 1.0 / 255.0
        gt *= 1.0 / 255.0
        return lr, gt

    # -- logging
    def describe(self):
        sizes = sorted({(i.lr_size, i.gt_size) for i in self._info.values()})
        size_txt = ', '.join(f'LR {_fmt(a)} -> GT {_fmt(b)}' for a, b in sizes[:3])
        if len(sizes) > 3:
            size_txt += f', ... ({len(sizes)} sizes)'
        return (f'{self.kind} {self.split}: {len(self.clips)} clips, {self.total_frames} frames, '
                f'{size_txt}, x{self.scale}, at {self.data_dir}')

    def __repr__(self):
        return f'<{type(self).__name__} {self.describe()}>'


def check_training_args(num_frame, crop_size, interval_list):
    """ValueError unless ``num_frame`` is a positive odd int, ``crop_size`` a positive int and
    ``interval_list`` a non-empty list of positive ints."""
    if isinstance(num_frame, bool) or not isinstance(num_frame, (int, np.integer)) \
            or num_frame < 1 or num_frame % 2 == 0:
        raise ValueError(f'num_frame must be a positive odd int, got {num_frame!r}')
    if isinstance(crop_size, bool) or not isinstance(crop_size, (int, np.integer)) \
            or crop_size < 1:
        raise ValueError(f'data.crop_size must be a positive int, got {crop_size!r}')
    if not len(interval_list) or any(
            isinstance(i, bool) or not isinstance(i, (int, np.integer)) or i < 1
            for i in interval_list):
        raise ValueError(f'data.interval_list must be a non-empty list of positive ints, got '
                         f'{list(interval_list)!r}')


def resolve_path(data_dir, path):
    """``path`` (str or path-like) inside ``data_dir`` unless it is absolute."""
    path = os.fspath(path)
    return path if os.path.isabs(path) else os.path.join(data_dir, path)
