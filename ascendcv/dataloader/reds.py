"""REDS-layout frame-folder dataset (and the clip-dataset base class shared with Vimeo90K).

Layout (``data.dataset_type = 'reds'``)::

    <data_dir>/images/<clip>/<gt_subdir>/00000000.png ...   ground truth, H x W
    <data_dir>/images/<clip>/<lr_subdir>/00000000.png ...   low resolution, H/scale x W/scale
    <data_dir>/<set_file>                                   JSON list of clip names: ["000", ...]

Everything that can be checked without decoding pixels is checked when the dataset is built
(missing folders, GT/LR frame lists that differ, frame sizes read from the image headers), so a
bad dataset fails before training starts, with a :class:`DatasetError` naming the path. Pixels are
decoded lazily (:meth:`FrameClipDataset.load_clip`, :meth:`FrameClipDataset.training_sample`);
a corrupt image raises :class:`DatasetError` naming the file.

Training samples follow BasicSR's ``REDSDataset``: random clip, random interval from
``interval_list``, random centre frame such that the whole temporal window fits in the clip,
optional random reversal of the frame order, and an aligned random crop (LR crop at ``(y, x)``
<-> GT crop at ``(y * scale, x * scale)``). All randomness comes from the ``numpy.random.Generator``
passed in, so a sample is a pure function of the generator state (see
:func:`ascendcv.dataloader.pipeline.build_train_pipeline`).
"""
import json
import os
import re
import struct
from dataclasses import dataclass

import numpy as np

__all__ = ['DatasetError', 'ClipInfo', 'FrameClipDataset', 'RedsDataset', 'IMAGE_EXTENSIONS',
           'read_image', 'image_size', 'list_image_files', 'toy_lr_frame', 'toy_gt_frame',
           'write_toy_reds']

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp')
_PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'


class DatasetError(ValueError):
    """A dataset on disk is missing, incomplete, inconsistent or corrupt; the message names
    the path (and the sizes or names involved)."""


# --------------------------------------------------------------------------- image helpers

def _natural_key(name):
    return [(0, int(part), part) if part.isdigit() else (1, 0, part.lower())
            for part in re.split(r'(\d+)', name)]


def list_image_files(folder):
    """Names (not paths) of the image files directly inside ``folder``, natural order.

    Hidden files (e.g. ``.tmp-*`` files of an interrupted atomic write) are skipped.
    """
    names = [n for n in os.listdir(folder)
             if not n.startswith('.') and os.path.splitext(n)[1].lower() in IMAGE_EXTENSIONS
             and os.path.isfile(os.path.join(folder, n))]
    return sorted(names, key=_natural_key)


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
    """Decode an image file into ``uint8 [H, W, 3]`` RGB (gray replicated, alpha dropped).

    Raises:
        DatasetError: missing, unreadable or corrupt file (names the file).
    """
    from PIL import Image
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode.startswith('I'):  # 16/32-bit gray -> 8 bits
                gray = np.asarray(img).astype(np.float64)
                gray = np.clip(np.rint(gray / 257.0), 0, 255).astype(np.uint8)
                return np.repeat(gray[:, :, None], 3, axis=2)
            if img.mode != 'RGB':
                img = img.convert('RGB')
            return np.asarray(img, dtype=np.uint8)
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        reason = reason.replace(f" '{path}'", '')  # PIL repeats the path
        raise DatasetError(f'Cannot read image {path!r} (unreadable or corrupt): '
                           f'{reason}') from exc


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
            only_gt = sorted(set(gt_names) - set(lr_names), key=_natural_key)
            only_lr = sorted(set(lr_names) - set(gt_names), key=_natural_key)
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
        _check_training_args(num_frame, crop_size, interval_list)
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
        _check_training_args(num_frame, crop_size, interval_list)
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


def _check_training_args(num_frame, crop_size, interval_list):
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


def _resolve(data_dir, path):
    path = os.fspath(path)
    return path if os.path.isabs(path) else os.path.join(data_dir, path)


# --------------------------------------------------------------------------- REDS

class RedsDataset(FrameClipDataset):
    """REDS layout: ``images/<clip>/{gt_subdir,lr_subdir}/%08d.png`` + a JSON clip list.

    Args:
        data_dir: dataset root (``data.data_dir``).
        split: label used in messages and logs ('train', 'val').
        gt_subdir / lr_subdir: frame folders inside each clip (``data.gt_subdir`` /
            ``data.lr_subdir``).
        set_file: JSON list of clip names, relative to ``data_dir`` or absolute
            (``data.train_set`` / ``data.val_set``).
        scale: GT size / LR size (``model.scale``).
        check_sizes: read every frame header at construction (all frames of a clip must
            have one size); ``False`` reads only the first frame of each folder.

    Raises:
        DatasetError: missing data_dir, set file or clip folder; unreadable set file; GT and LR
            frame lists that differ; frames of different sizes; LR size * scale != GT size.
    """

    kind = 'REDS'

    def __init__(self, data_dir, split, gt_subdir='truth', lr_subdir='blur4',
                 set_file='sets/train.json', scale=4, check_sizes=True):
        self.gt_subdir = gt_subdir
        self.lr_subdir = lr_subdir
        self.set_file = _resolve(os.fspath(data_dir), set_file)
        super().__init__(data_dir, split, scale, check_sizes)

    def _read_set(self):
        if not os.path.isfile(self.set_file):
            raise DatasetError(f'REDS {self.split} set file not found: {self.set_file!r} '
                               f'(a JSON list of clip names, e.g. ["000", "011"])')
        try:
            with open(self.set_file, encoding='utf-8') as f:
                names = json.load(f)
        except (OSError, ValueError) as exc:
            raise DatasetError(f'Cannot read REDS set file {self.set_file!r} (expected a JSON '
                               f'list of clip names): {exc}') from exc
        if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
            raise DatasetError(f'REDS set file {self.set_file!r} must hold a JSON list of clip '
                               f'names (strings), e.g. ["000", "011"]')
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise DatasetError(f'REDS set file {self.set_file!r} lists clips more than once: '
                               f'{dup[:5]}')
        return names

    def _scan(self):
        images = os.path.join(self.data_dir, 'images')
        for name in self._read_set():
            clip_dir = os.path.join(images, name)
            if not os.path.isdir(clip_dir):
                raise DatasetError(f'Clip {name!r} listed in {self.set_file!r} not found: '
                                   f'{clip_dir!r}')
            lr_paths, gt_paths = self._paired_frames(name, os.path.join(clip_dir, self.lr_subdir),
                                                     os.path.join(clip_dir, self.gt_subdir))
            yield name, lr_paths, gt_paths


# --------------------------------------------------------------------------- toy data

def toy_lr_frame(clip_index, t, height, width):
    """Deterministic LR frame ``uint8 [height, width, 3]`` of the toy datasets.

    Channel 0 encodes the pixel position (``(y * width + x) % 256``), channel 1 the clip and
    frame (``(17 * t + 101 * clip_index) % 256``), channel 2 a mix of both; the matching GT frame
    is its nearest-neighbour upscaling (``np.repeat`` by ``scale`` on both axes), so an aligned
    GT crop is exactly the upscaled LR crop.
    """
    y, x = np.mgrid[0:height, 0:width]
    frame = np.empty((height, width, 3), np.uint8)
    frame[..., 0] = (y * width + x) % 256
    frame[..., 1] = (17 * t + 101 * clip_index) % 256
    frame[..., 2] = (7 * x + 3 * y + 5 * t + 11 * clip_index) % 256
    return frame


def toy_gt_frame(clip_index, t, height, width, scale):
    """GT of :func:`toy_lr_frame`: ``uint8 [height*scale, width*scale, 3]``."""
    lr = toy_lr_frame(clip_index, t, height, width)
    return np.repeat(np.repeat(lr, scale, axis=0), scale, axis=1)


def write_toy_reds(data_dir, num_clips=2, num_frames=8, lr_size=(12, 16), scale=4,
                   gt_subdir='truth', lr_subdir='blur4', train_set='sets/train.json',
                   val_set='sets/val.json'):
    """Write a tiny REDS-layout dataset (for tests and smoke runs); returns the clip names.

    Clips ``'000', '001', ...`` of :func:`toy_lr_frame` / :func:`toy_gt_frame` PNGs; every clip
    is listed in both set files.
    """
    from ascendcv.utils.video_io import write_png

    data_dir = os.fspath(data_dir)
    names = [f'{c:03d}' for c in range(num_clips)]
    h, w = lr_size
    for c, name in enumerate(names):
        for t in range(num_frames):
            write_png(os.path.join(data_dir, 'images', name, lr_subdir, f'{t:08d}.png'),
                      toy_lr_frame(c, t, h, w))
            write_png(os.path.join(data_dir, 'images', name, gt_subdir, f'{t:08d}.png'),
                      toy_gt_frame(c, t, h, w, scale))
    for set_file in (train_set, val_set):
        path = _resolve(data_dir, set_file)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, 'w', encoding='utf-8') as f:
            json.dump(names, f)
    return names
