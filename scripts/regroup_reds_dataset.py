#!/usr/bin/env python3
"""Merge the REDS validation clips into the training folders, as BasicSR does.

    python scripts/regroup_reds_dataset.py --root data/REDS_raw [--copy]

REDS has 240 training clips (000-239) and 30 validation clips (000-029).  Like BasicSR's
``scripts/data_preparation/regroup_reds_dataset.py``, the validation clips are renamed
240-269 and put next to the training clips, in both the sharp (ground truth) and the x4
bicubic (input) folders:

    <root>/val_sharp/000             -> <root>/train_sharp/240
    <root>/val_sharp_bicubic/X4/000  -> <root>/train_sharp_bicubic/X4/240

(``<root>/train/train_sharp`` etc., the layout inside the REDS zips, are found as well.)
Validation then uses the REDS4 clips 000, 011, 015, 020 (see ``make_reds_dataset.py``).

Clips are moved (a rename; ``--copy`` copies them instead, as BasicSR does).  The script is
idempotent: a clip already in place with the same frame files is skipped, and running it again
after the val folders were emptied is a no-op.  Exit code: 0 on success, 1 on errors.
"""
import argparse
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ascendcv.utils.fileio import atomic_write_via  # noqa: E402

VAL_OFFSET = 240
# (validation folder, training folder), relative to the root
PAIRS = (('val_sharp', 'train_sharp'),
         (os.path.join('val_sharp_bicubic', 'X4'), os.path.join('train_sharp_bicubic', 'X4')))


class RegroupError(RuntimeError):
    """The raw REDS tree is missing a folder or is inconsistent; the message names it."""


def candidates(root, rel):
    """Where ``rel`` (e.g. ``train_sharp``) may live: ``root/rel`` or ``root/<split>/rel``."""
    split = rel.split('_', 1)[0]
    return [os.path.join(root, rel), os.path.join(root, split, rel)]


def locate(root, rel):
    for path in candidates(root, rel):
        if os.path.isdir(path):
            return path
    return None


def list_clips(folder):
    return sorted(name for name in os.listdir(folder)
                  if not name.startswith('.') and os.path.isdir(os.path.join(folder, name)))


def list_files(folder):
    return sorted(name for name in os.listdir(folder) if not name.startswith('.'))


def _copy_atomic(src, dst):
    atomic_write_via(dst, lambda tmp: shutil.copytree(src, tmp))


def regroup_folder(val_dir, train_dir, copy=False, log=print):
    """Move (or copy) every clip ``val_dir/NNN`` to ``train_dir/<NNN + 240>``.

    Returns:
        ``(done, skipped)``: clips moved/copied now and clips already in place.
    """
    done = skipped = 0
    for name in list_clips(val_dir):
        if not name.isdigit():
            raise RegroupError(f'Unexpected validation clip folder '
                               f'{os.path.join(val_dir, name)!r}: REDS clip names are '
                               f'numbers such as 000')
        src = os.path.join(val_dir, name)
        dst = os.path.join(train_dir, f'{int(name) + VAL_OFFSET:03d}')
        if os.path.exists(dst):
            if os.path.isdir(dst) and list_files(dst) == list_files(src):
                skipped += 1
                continue
            raise RegroupError(f'Cannot move {src!r} to {dst!r}: the target exists with '
                               f'different files; remove one of them and run again')
        if copy:
            _copy_atomic(src, dst)
        else:
            shutil.move(src, dst)  # a rename on the same file system
        done += 1
    log(f'{val_dir} -> {train_dir}: {done} clips {"copied" if copy else "moved"}, '
        f'{skipped} already in place')
    return done, skipped


def regroup(root, copy=False, log=print):
    """Regroup both REDS folder pairs under ``root``; returns ``{train_dir: (done, skipped)}``."""
    if not os.path.isdir(root):
        raise RegroupError(f'REDS root folder not found: {root!r}; download REDS first: '
                           f'python scripts/download_REDS.py --root {root}')
    plan = []
    for val_rel, train_rel in PAIRS:
        train_dir = locate(root, train_rel)
        if train_dir is None:
            part = train_rel.split(os.sep)[0]
            raise RegroupError(
                f'Training folder not found: tried {candidates(root, train_rel)}; download it '
                f'with: python scripts/download_REDS.py --root {root} --parts {part}')
        val_dir = locate(root, val_rel)
        if val_dir is None:
            if any(c.isdigit() and int(c) >= VAL_OFFSET for c in list_clips(train_dir)):
                log(f'{train_dir}: validation clips already regrouped ({val_rel} is gone)')
                continue
            part = val_rel.split(os.sep)[0]
            raise RegroupError(
                f'Validation folder not found: tried {candidates(root, val_rel)}; download it '
                f'with: python scripts/download_REDS.py --root {root} --parts {part}')
        plan.append((val_dir, train_dir))
    return {train_dir: regroup_folder(val_dir, train_dir, copy=copy, log=log)
            for val_dir, train_dir in plan}


def main(argv=None):
    parser = argparse.ArgumentParser(
        description='Rename the REDS validation clips 000-029 to 240-269 and move them into '
                    'train_sharp and train_sharp_bicubic/X4 (BasicSR regrouping).')
    parser.add_argument('--root', default='data/REDS_raw',
                        help='folder holding train_sharp, val_sharp, ... (default: %(default)s)')
    parser.add_argument('--copy', action='store_true',
                        help='copy the validation clips instead of moving them')
    args = parser.parse_args(argv)
    try:
        regroup(args.root, copy=args.copy)
    except (RegroupError, OSError) as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
