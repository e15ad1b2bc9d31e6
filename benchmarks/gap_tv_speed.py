"""GAP-TV speed (TensorFlow vs the numpy reference) and quality on the SCI benchmarks; one JSON.

Speed: seconds per 256x256x8 measurement (100 iterations, PnP-SCI settings) of
* ``tf``: :class:`GapTV` on one measurement (the default loop-over-measurements graph),
* ``tf_batch6``: the same on Traffic's 6 measurements in one call (time / 6),
* ``tf_vectorised_batch6``: ``per_measurement=False`` (all 6 as one tensor), time / 6,
* ``numpy``: :func:`gap_tv_numpy` (float32) on one measurement,
each the median and minimum of ``--repeats`` runs after a warm-up, the cases interleaved so that
load from other processes hits them alike (the load average is reported too).

Quality: per dataset, PSNR/SSIM in the PnP-SCI convention (peak = ground-truth frame max; Runner
and Drop on measurement 1) and the cacti one (peak 255), next to the published GAP-TV numbers.

    python benchmarks/gap_tv_speed.py [--data-dir ../shared/data/sci] [--repeats 3] [--no-numpy]
"""
import argparse
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

PUBLISHED = {'traffic48': (20.89, 0.715), 'runner40': (28.52, 0.909), 'drop40': (34.63, 0.970)}


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--data-dir', default=os.path.join(ROOT, '..', 'shared', 'data', 'sci'))
    ap.add_argument('--repeats', type=int, default=3)
    ap.add_argument('--no-numpy', action='store_true', help='skip the (slow) numpy reference')
    args = ap.parse_args()

    import numpy as np
    import tensorflow as tf

    from ascendcv.dataloader.sci import list_sci_files, load_mat
    from ascendcv.utils.metrics import psnr_sci, ssim_matlab
    from ascendcv.utils.sci_physics import split_frames
    from ascendvsr.models.gap_tv import GapTV, gap_tv_numpy

    files = list_sci_files(args.data_dir)
    out = dict(data_dir=os.path.abspath(args.data_dir), settings=GapTV().get_config(),
               intra_op_threads=tf.config.threading.get_intra_op_parallelism_threads(),
               cpu_count=os.cpu_count(), load_average_start=os.getloadavg())

    # ------------------------------------------------------------------ speed
    data = load_mat(files[0])
    meas = np.moveaxis(data['meas'], -1, 0) / np.float32(255)
    mask = data['mask']
    loop, vec = GapTV(), GapTV(per_measurement=False)
    cases = {'tf': lambda: loop(meas[:1], mask).numpy(),
             'tf_batch6': lambda: loop(meas[:6], mask).numpy(),
             'tf_vectorised_batch6': lambda: vec(meas[:6], mask).numpy()}
    per = {'tf': 1, 'tf_batch6': min(6, len(meas)), 'tf_vectorised_batch6': min(6, len(meas)),
           'numpy': 1}
    if not args.no_numpy:
        cases['numpy'] = lambda: gap_tv_numpy(meas[0], mask)
    for fn in cases.values():  # warm-up: tracing, allocations
        if fn is not cases.get('numpy'):
            fn()
    times = {k: [] for k in cases}
    for _ in range(args.repeats):
        for name, fn in cases.items():
            t0 = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - t0) / per[name])
    out['file'] = os.path.basename(files[0])
    out['seconds_per_measurement'] = {
        k: dict(median=float(np.median(v)), min=float(np.min(v))) for k, v in times.items()}
    if 'numpy' in times:
        out['speedup_vs_numpy'] = float(np.median(times['numpy']) / np.median(times['tf']))
    out['load_average_end'] = os.getloadavg()

    # ------------------------------------------------------------------ quality
    table = {}
    for path in files:
        data = load_mat(path)
        if 'orig' not in data:
            continue
        name = os.path.splitext(os.path.basename(path))[0].replace('_cacti', '')
        b = data['mask'].shape[-1]
        gt = split_frames(data['orig'], b) / 255.0
        count = 1 if name.startswith(('runner', 'drop')) else len(gt)
        meas = np.moveaxis(data['meas'], -1, 0)[:count] / np.float32(255)
        t0 = time.perf_counter()
        rec = loop(meas, data['mask']).numpy()
        seconds = (time.perf_counter() - t0) / count
        frames = [(gt[m, ..., t], rec[m, ..., t]) for m in range(count) for t in range(b)]
        row = dict(measurements=count,
                   psnr_pnp=float(np.mean([psnr_sci(g, r) for g, r in frames])),
                   psnr_cacti=float(np.mean([psnr_sci(g, r, 1.0) for g, r in frames])),
                   ssim=float(np.mean([ssim_matlab(r, g) for g, r in frames])),
                   seconds_per_measurement=seconds)
        if name in PUBLISHED:
            row['published_psnr'], row['published_ssim'] = PUBLISHED[name]
        table[name] = row
    out['quality'] = table
    print(json.dumps(out, indent=1))


if __name__ == '__main__':
    main()
