"""REDS-layout frame-folder dataset.

Layout (``data.dataset_type = 'reds'``)::

    <data_dir>/images/<clip>/<gt_subdir>/00000000.png ...   ground truth, H x W
    <data_dir>/images/<clip>/<lr_subdir>/00000000.png ...   low resolution, H/scale x W/scale
    <data_dir>/<set_file>                                   JSON list of clip names: ["000", ...]

Indexing, checks, lazy decoding and BasicSR's training samples come from
:class:`ascendcv.dataloader.frame_clips.FrameClipDataset`. :func:`write_toy_reds` writes a tiny
dataset of deterministic frames (:func:`toy_lr_frame`, :func:`toy_gt_frame`) for tests.
"""
import json
import os

import numpy as np

from ascendcv.dataloader.frame_clips import DatasetError, FrameClipDataset, resolve_path

__all__ = ['RedsDataset', 'toy_lr_frame', 'toy_gt_frame', 'write_toy_reds']


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
        self.set_file = resolve_path(os.fspath(data_dir), set_file)
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
        path = resolve_path(data_dir, set_file)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, 'w', encoding='utf-8') as f:
            json.dump(names, f)
    return names
