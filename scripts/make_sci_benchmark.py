"""Simulate an SCI benchmark file (orig / mask / meas, the ``*_cacti.mat`` layout) from a video.

    python scripts/make_sci_benchmark.py --source carphone --mask data/sci/masks/revsci_train_mask.mat \
        --frames 16 --size 128 128 --color --out data/sci_color/carphone_color.mat

``--source``: a video file, a frame folder or a bundled sample clip (bikes, carphone,
bigbuckbunny). The first ``--frames`` frames (a multiple of the mask's B), centre-cropped to
``--size`` (default: the mask's size), become ``orig`` (grayscale BT.601 luma, or RGB with
``--color``, then measured through an RGGB Bayer filter); the mask is the top-left crop of
``--mask``. Evaluate with ``tools/main.py --mode eval sci.data_dir=<folder of --out>``.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from ascendcv.dataloader.sci import (SciDataError, load_mask, save_mat,  # noqa: E402
                                     simulate_benchmark)
from ascendcv.utils.sci_physics import rgb_to_luma  # noqa: E402
from ascendcv.utils.video_io import VideoError, read_frames, resolve_source  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--source', required=True)
    ap.add_argument('--mask', required=True, help='.mat/.npy/.npz mask H x W x B')
    ap.add_argument('--frames', type=int, default=None, help='frames to use (default: 2 x B)')
    ap.add_argument('--size', type=int, nargs=2, default=None, metavar=('H', 'W'))
    ap.add_argument('--color', action='store_true', help='RGB orig, Bayer (RGGB) measurement')
    ap.add_argument('--out', required=True, help='output .mat path')
    args = ap.parse_args(argv)
    try:
        mask = load_mask(args.mask)
        b = mask.shape[-1]
        n = args.frames or 2 * b
        frames = read_frames(resolve_source(args.source), max_frames=n)
        if len(frames) < n:
            raise SciDataError(f'{args.source!r} has {len(frames)} frames, fewer than --frames {n}')
        h, w = args.size or mask.shape[:2]
        if h > min(frames.shape[1], mask.shape[0]) or w > min(frames.shape[2], mask.shape[1]):
            raise SciDataError(f'--size {h}x{w} is larger than the frames '
                               f'{frames.shape[1]}x{frames.shape[2]} or the mask '
                               f'{mask.shape[0]}x{mask.shape[1]}')
        top, left = (frames.shape[1] - h) // 2, (frames.shape[2] - w) // 2
        frames = frames[:, top:top + h, left:left + w]
        frames = frames if args.color else rgb_to_luma(frames)
        mask = mask[:h, :w]
        if np.array_equal(mask, np.round(mask)) and 0 <= mask.min() and mask.max() <= 255:
            mask = mask.astype(np.uint8)  # binary / integer masks stay integers, as the files
        data = simulate_benchmark(frames, mask)
    except (SciDataError, VideoError, OSError, KeyError, ValueError) as err:
        print(f'Error: {err}', file=sys.stderr)
        return 1
    save_mat(args.out, data)
    print(f'{args.out}: orig {data["orig"].shape}, mask {data["mask"].shape}, meas '
          f'{data["meas"].shape} ({"colour, Bayer RGGB" if args.color else "grayscale"})')
    return 0


if __name__ == '__main__':
    sys.exit(main())
