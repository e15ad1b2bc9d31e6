#!/usr/bin/env python3
"""Build the toolkit's REDS layout from the (regrouped) raw REDS folders.

    python scripts/make_reds_dataset.py --raw data/REDS_raw --out data/reds [--link]

Input (after ``download_REDS.py`` and ``regroup_reds_dataset.py``):

    <raw>/train_sharp/<clip>/%08d.png              ground truth, 720x1280
    <raw>/train_sharp_bicubic/X4/<clip>/%08d.png   x4 bicubic input, 180x320

Output (what ``data.dataset_type: reds`` reads; ``data.gt_subdir`` / ``data.lr_subdir``):

    <out>/images/<clip>/truth/%08d.png
    <out>/images/<clip>/blur4/%08d.png
    <out>/sets/train.json   all clips except the validation clips
    <out>/sets/val.json     REDS4: ["000", "011", "015", "020"]

Each clip folder is copied, or symlinked with ``--link`` (no extra disk space; the raw folder
must then stay where it is).  Before anything is written, every clip is checked: the GT and LR
folders must hold the same frame file names, and the first LR frame times ``--scale`` must be
the size of the first GT frame; errors name the clip and the file.  Re-running skips clips that
are already in place (copies are written to a temporary folder and renamed, so a present
folder is complete).  Exit code: 0 on success, 1 on errors.
"""
import argparse
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ascendcv.utils.fileio import atomic_write_json, atomic_write_via  # noqa: E402
from ascendcv.utils.video_io import IMAGE_EXTENSIONS  # noqa: E402

REDS4 = ('000', '011', '015', '020')
GT_REL = 'train_sharp'
LR_REL = os.path.join('train_sharp_bicubic', 'X4')


class DatasetError(RuntimeError):
    """The raw REDS tree is incomplete or inconsistent; the message names the clip / file."""


def _locate(root, rel):
    split = rel.split('_', 1)[0]
    tried = [os.path.join(root, rel), os.path.join(root, split, rel)]
    for path in tried:
        if os.path.isdir(path):
            return path
    raise DatasetError(f'Raw REDS folder not found: tried {tried}; run '
                       f'scripts/download_REDS.py and scripts/regroup_reds_dataset.py first '
                       f'(or scripts/prepare_reds_dataset.sh)')


def _clips(folder):
    return sorted(name for name in os.listdir(folder)
                  if not name.startswith('.') and os.path.isdir(os.path.join(folder, name)))


def _frames(folder):
    return sorted(name for name in os.listdir(folder) if not name.startswith('.')
                  and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS)


def _image_size(path):
    """(H, W) from the image header."""
    from PIL import Image
    try:
        with Image.open(path) as img:
            width, height = img.size
    except Exception as exc:
        raise DatasetError(f'Cannot read image {path!r}: {exc}') from exc
    return height, width


def check_raw(gt_root, lr_root, scale=4):
    """Validate the GT / LR clip folders; returns ``{clip: (gt_hw, lr_hw, num_frames)}``."""
    gt_clips, lr_clips = _clips(gt_root), _clips(lr_root)
    if not gt_clips:
        raise DatasetError(f'No clip folders in {gt_root!r}')
    only_gt = sorted(set(gt_clips) - set(lr_clips))
    only_lr = sorted(set(lr_clips) - set(gt_clips))
    if only_gt:
        raise DatasetError(f'Clips {only_gt} are in {gt_root!r} but have no LR folder in '
                           f'{lr_root!r}')
    if only_lr:
        raise DatasetError(f'Clips {only_lr} are in {lr_root!r} but have no GT folder in '
                           f'{gt_root!r}')
    info = {}
    for clip in gt_clips:
        gt_dir, lr_dir = os.path.join(gt_root, clip), os.path.join(lr_root, clip)
        gt_files, lr_files = _frames(gt_dir), _frames(lr_dir)
        if not gt_files:
            raise DatasetError(f'Clip {clip}: no frames in {gt_dir!r}')
        if gt_files != lr_files:
            missing_lr = sorted(set(gt_files) - set(lr_files))
            missing_gt = sorted(set(lr_files) - set(gt_files))
            detail = [f'{os.path.join(folder, missing[0])} is missing'
                      + (f' (and {len(missing) - 1} more)' if len(missing) > 1 else '')
                      for folder, missing in ((lr_dir, missing_lr), (gt_dir, missing_gt))
                      if missing]
            raise DatasetError(f'Clip {clip}: GT and LR frame lists differ '
                               f'({len(gt_files)} GT vs {len(lr_files)} LR frames): '
                               + '; '.join(detail))
        gt_file, lr_file = os.path.join(gt_dir, gt_files[0]), os.path.join(lr_dir, lr_files[0])
        gt_hw, lr_hw = _image_size(gt_file), _image_size(lr_file)
        if (lr_hw[0] * scale, lr_hw[1] * scale) != gt_hw:
            raise DatasetError(
                f'Clip {clip}: size mismatch: LR frame {lr_file!r} is {lr_hw[0]}x{lr_hw[1]} (HxW), '
                f'x{scale} = {lr_hw[0] * scale}x{lr_hw[1] * scale}, but GT frame {gt_file!r} is '
                f'{gt_hw[0]}x{gt_hw[1]}')
        info[clip] = (gt_hw, lr_hw, len(gt_files))
    return info


def _place(src, dst, link, overwrite):
    """Symlink or copy folder ``src`` to ``dst`` (atomically). Returns False if already there."""
    if os.path.lexists(dst):
        if link and os.path.islink(dst) and os.path.realpath(dst) == os.path.realpath(src):
            return False
        if not link and not os.path.islink(dst) and os.path.isdir(dst) \
                and _frames(dst) == _frames(src):
            return False
        if not overwrite:
            raise DatasetError(f'{dst!r} already exists and differs from {src!r}; pass '
                               f'--overwrite to replace it')
        if os.path.islink(dst) or not os.path.isdir(dst):
            os.remove(dst)
        else:
            shutil.rmtree(dst)

    def write(tmp):
        if link:
            os.symlink(os.path.abspath(src), tmp, target_is_directory=True)
        else:
            shutil.copytree(src, tmp)

    atomic_write_via(dst, write)
    return True


def make_reds_dataset(raw, out, link=False, val_clips=REDS4, scale=4, gt_subdir='truth',
                      lr_subdir='blur4', overwrite=False, progress=True, log=print):
    """Build ``out`` (REDS layout) from the raw folders; returns a summary dict."""
    gt_root, lr_root = _locate(raw, GT_REL), _locate(raw, LR_REL)
    info = check_raw(gt_root, lr_root, scale=scale)
    clips = sorted(info)
    missing_val = [c for c in val_clips if c not in info]
    if missing_val:
        raise DatasetError(f'Validation clips {missing_val} not found in {gt_root!r}')
    val_set = set(val_clips)
    train = [c for c in clips if c not in val_set]
    if not train:
        raise DatasetError(f'No training clips left in {gt_root!r} after removing the '
                           f'validation clips {list(val_clips)}')
    if not any(c.isdigit() and int(c) >= 240 for c in clips):
        log(f'note: no clips 240-269 in {gt_root}; run scripts/regroup_reds_dataset.py to add '
            f'the REDS validation clips to the training set')

    iterator = clips
    if progress:
        from tqdm import tqdm
        iterator = tqdm(clips, desc='linking clips' if link else 'copying clips', unit='clip',
                        dynamic_ncols=True)
    placed = 0
    for clip in iterator:
        for src_root, sub in ((gt_root, gt_subdir), (lr_root, lr_subdir)):
            placed += _place(os.path.join(src_root, clip),
                             os.path.join(out, 'images', clip, sub), link, overwrite)
    atomic_write_json(os.path.join(out, 'sets', 'train.json'), train)
    atomic_write_json(os.path.join(out, 'sets', 'val.json'), list(val_clips))
    frames = sum(n for _, _, n in info.values())
    log(f'{out}: {len(clips)} clips ({len(train)} train, {len(val_clips)} val), {frames} frames '
        f'per resolution, {placed} folders {"linked" if link else "copied"}, '
        f'{2 * len(clips) - placed} already in place')
    return {'clips': clips, 'train': train, 'val': list(val_clips), 'frames': frames,
            'placed': placed}


def main(argv=None):
    parser = argparse.ArgumentParser(
        description='Build <out>/images/<clip>/{truth,blur4} + sets/{train,val}.json from '
                    'the regrouped raw REDS folders.')
    parser.add_argument('--raw', default='data/REDS_raw',
                        help='raw REDS root with train_sharp and train_sharp_bicubic/X4 '
                             '(default: %(default)s)')
    parser.add_argument('--out', default='data/reds', help='output root (default: %(default)s)')
    parser.add_argument('--link', action='store_true',
                        help='symlink the clip folders instead of copying them')
    parser.add_argument('--val-clips', nargs='+', default=list(REDS4), metavar='CLIP',
                        help='validation clips (default: REDS4 %(default)s)')
    parser.add_argument('--scale', type=int, default=4, help='GT / LR size ratio (default: 4)')
    parser.add_argument('--gt-subdir', default='truth', help='GT folder name (data.gt_subdir)')
    parser.add_argument('--lr-subdir', default='blur4', help='LR folder name (data.lr_subdir)')
    parser.add_argument('--overwrite', action='store_true',
                        help='replace clip folders in --out that differ from the raw ones')
    parser.add_argument('--quiet', action='store_true', help='no progress bar')
    args = parser.parse_args(argv)
    try:
        make_reds_dataset(args.raw, args.out, link=args.link, val_clips=tuple(args.val_clips),
                          scale=args.scale, gt_subdir=args.gt_subdir, lr_subdir=args.lr_subdir,
                          overwrite=args.overwrite, progress=not args.quiet)
    except (DatasetError, OSError) as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
