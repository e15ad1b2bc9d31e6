"""Vimeo90K septuplet dataset (BasicSR ``Vimeo90KDataset`` conventions).

Layout (``data.dataset_type = 'vimeo90k'``)::

    <data_dir>/<gt_dir>/00001/0001/im1.png ... im7.png    ground truth (data.vimeo_gt_dir)
    <data_dir>/<lr_dir>/00001/0001/im1.png ... im7.png    low resolution (data.vimeo_lr_dir)
    <data_dir>/<list_file>                                 one septuplet per line: 00001/0001

Each septuplet is a 7-frame clip named by its list entry (``'00001/0001'``). As in BasicSR the
ground truth of a training sample is always the centre frame ``im4`` and the LR window is
centred on it: ``im1..im7`` for ``num_frame=7``, ``im2..im6`` for ``num_frame=5``. Intervals
other than 1 only fit for ``num_frame=3`` (BasicSR ignores ``interval_list`` for Vimeo90K;
here an interval whose window does not fit is an error raised by ``check_training``).
Evaluation scores only ``im4`` (:meth:`Vimeo90KDataset.eval_centers`), as BasicSR's
``VideoTestVimeo90KDataset`` does.
"""
import os

from ascendcv.dataloader.frame_clips import DatasetError, FrameClipDataset, resolve_path

__all__ = ['Vimeo90KDataset', 'SEPTUPLET_FRAMES', 'write_toy_vimeo']

SEPTUPLET_FRAMES = tuple(f'im{i}.png' for i in range(1, 8))
_CENTER = 3  # im4


class Vimeo90KDataset(FrameClipDataset):
    """Vimeo90K septuplets; the same interface as :class:`~ascendcv.dataloader.reds.RedsDataset`.

    Args:
        data_dir: dataset root (``data.data_dir``).
        split: label used in messages and logs ('train', 'test').
        gt_dir / lr_dir: GT / LR septuplet folders relative to ``data_dir`` (or absolute).
        list_file: septuplet list relative to ``data_dir`` (or absolute).
        scale: GT size / LR size (``model.scale``).
        check_sizes: read all 14 frame headers of every septuplet at construction; ``False``
            reads only ``im1`` of each folder (faster for the 64k training septuplets).

    Raises:
        DatasetError: missing data_dir, list file, septuplet folder or frame; frames of
            different sizes; LR size * scale != GT size.
    """

    kind = 'Vimeo90K'

    def __init__(self, data_dir, split, gt_dir='sequences', lr_dir='sequences_lr',
                 list_file='sep_trainlist.txt', scale=4, check_sizes=True):
        data_dir = os.fspath(data_dir)
        self.gt_dir = resolve_path(data_dir, gt_dir)
        self.lr_dir = resolve_path(data_dir, lr_dir)
        self.list_file = resolve_path(data_dir, list_file)
        super().__init__(data_dir, split, scale, check_sizes)

    def _read_list(self):
        if not os.path.isfile(self.list_file):
            raise DatasetError(f'Vimeo90K {self.split} list not found: {self.list_file!r} '
                               f'(one septuplet per line, e.g. 00001/0001)')
        try:
            with open(self.list_file, encoding='utf-8') as f:
                lines = [line.strip() for line in f]
        except (OSError, ValueError) as exc:
            raise DatasetError(f'Cannot read Vimeo90K list {self.list_file!r}: {exc}') from exc
        names = [line.replace('\\', '/').strip('/') for line in lines if line]
        seen = set()
        for name in names:
            if name in seen:
                raise DatasetError(f'Vimeo90K list {self.list_file!r} lists {name!r} twice')
            seen.add(name)
        return names

    def _scan(self):
        for root in (self.gt_dir, self.lr_dir):
            if not os.path.isdir(root):
                raise DatasetError(f'Vimeo90K septuplet folder not found: {root!r} (set '
                                   f'data.vimeo_gt_dir / data.vimeo_lr_dir)')
        for name in self._read_list():
            gt_clip = os.path.join(self.gt_dir, *name.split('/'))
            lr_clip = os.path.join(self.lr_dir, *name.split('/'))
            for folder in (gt_clip, lr_clip):
                if not os.path.isdir(folder):
                    raise DatasetError(f'Septuplet {name!r} listed in {self.list_file!r} not '
                                       f'found: {folder!r}')
            gt_paths = [os.path.join(gt_clip, f) for f in SEPTUPLET_FRAMES]
            lr_paths = [os.path.join(lr_clip, f) for f in SEPTUPLET_FRAMES]
            for path in gt_paths + lr_paths:
                if not os.path.isfile(path):
                    raise DatasetError(f'Frame of septuplet {name!r} not found: {path!r} '
                                       f'(expected {SEPTUPLET_FRAMES[0]}..{SEPTUPLET_FRAMES[-1]} '
                                       f'in both {gt_clip!r} and {lr_clip!r})')
            yield name, lr_paths, gt_paths

    def center_range(self, clip, half_span):
        """The centre is always im4 (index 3); the window must fit inside im1..im7."""
        if half_span <= _CENTER:
            return _CENTER, _CENTER
        return _CENTER, _CENTER - 1

    def eval_centers(self, clip):
        """Only the centre frame im4 is restored and scored (BasicSR Vimeo90K test)."""
        return [_CENTER]


def write_toy_vimeo(data_dir, septuplets=('00001/0001', '00001/0002'), lr_size=(12, 16), scale=4,
                    gt_dir='sequences', lr_dir='sequences_lr', train_list='sep_trainlist.txt',
                    test_list='sep_testlist.txt'):
    """Write a tiny Vimeo90K-layout dataset (tests, smoke runs); returns the septuplet names.

    Frames are :func:`~ascendcv.dataloader.reds.toy_lr_frame` (clip index = position in
    ``septuplets``, t = 0..6 for im1..im7) and their nearest-neighbour upscaled GT.
    """
    from ascendcv.dataloader.reds import toy_gt_frame, toy_lr_frame
    from ascendcv.utils.video_io import write_png

    data_dir = os.fspath(data_dir)
    h, w = lr_size
    for c, name in enumerate(septuplets):
        for t, frame in enumerate(SEPTUPLET_FRAMES):
            write_png(os.path.join(resolve_path(data_dir, lr_dir), *name.split('/'), frame),
                      toy_lr_frame(c, t, h, w))
            write_png(os.path.join(resolve_path(data_dir, gt_dir), *name.split('/'), frame),
                      toy_gt_frame(c, t, h, w, scale))
    for list_file in (train_list, test_list):
        with open(resolve_path(data_dir, list_file), 'w', encoding='utf-8') as f:
            f.write(''.join(f'{name}\n' for name in septuplets))
    return list(septuplets)
