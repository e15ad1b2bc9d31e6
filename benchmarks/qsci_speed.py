"""Q-SCI fake-quant forward speed and peak memory on one 8 x 256 x 256 measurement.

For every bit depth (default 8 and 4) a fresh Python process builds the S-size Q-SCI
(:class:`ascendvsr.models.qsci.QSCI` (32, 8, 2), random weights), calibrates its quantizers
with one eager training-mode forward on a 64 x 64 measurement (the official LSQ
initialisation, as the official timing did), wraps the SCI task's serve computation
(``meas / mask_s`` -> network -> frames last) in ``tf.function``, runs one warm-up call and
``--runs`` timed calls, and reports ``median_s`` / ``runs_s`` (wall time), ``cpu_s_per_core``
(process CPU time of the median call / 2 cores: roughly the quiet-machine wall time when the
machine is shared), ``warmup_s``, ``calibrate_s``, ``peak_rss_mib`` (``VmHWM``, TensorFlow
import included) and ``load_before`` (1-minute load average at start).

The official PyTorch code on this machine (quiet, 2 threads; ``../shared/fixtures/
qsci_params_timing.json``): 8-bit 31.1 s / 1367 MiB, 4-bit 35.3 s / 1870 MiB (torch import
~0.5 GB included). Targets: 8-bit <= 15.5 s, 4-bit <= 17.6 s, with no more memory.

Usage: ``python benchmarks/qsci_speed.py [--bits 8 4] [--runs 3] [--hw 256] [--out FILE]``;
prints JSON.
"""
import argparse
import json
import os
import subprocess
import sys
import time

from bench_common import emit, random_measurement

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OFFICIAL = {8: dict(median_s=31.13, peak_rss_mib=1367), 4: dict(median_s=35.31, peak_rss_mib=1870)}
TARGET_S = {8: 15.5, 4: 17.6}


def _vm(field):
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1]) / 1024
    return float('nan')


def run_one(bits, runs, hw):
    """Time one bit depth in this process; returns the result dict."""
    load = os.getloadavg()[0]
    import numpy as np
    import tensorflow as tf

    from ascendcv.utils.sci_physics import normalize_measurement_tf
    from ascendvsr.models.qsci import QSCI
    tf.keras.utils.set_random_seed(0)
    model = QSCI(32, 8, 2, bit_depth=bits, name='QSCI')
    rng = np.random.default_rng(0)
    small = random_measurement(rng, 64)
    t = time.perf_counter()
    model.calibrate((normalize_measurement_tf(*small), small[1]))
    calibrate = time.perf_counter() - t
    meas, mask = random_measurement(rng, hw)
    fn = tf.function(lambda m, k: model((normalize_measurement_tf(m, k), k), training=False))
    t = time.perf_counter()
    out = fn(meas, mask).numpy()
    warmup = time.perf_counter() - t
    walls, cpus = [], []
    for _ in range(runs):
        t, c = time.perf_counter(), time.process_time()
        out = fn(meas, mask).numpy()
        walls.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
    mid = sorted(range(runs), key=lambda i: walls[i])[runs // 2]
    return dict(bit_depth=bits, params=int(model.count_params()), input=[1, hw, hw, 8],
                output=list(out.shape), calibrate_s=round(calibrate, 3),
                warmup_s=round(warmup, 3), runs_s=[round(w, 3) for w in walls],
                median_s=round(walls[mid], 3), cpu_s_per_core=round(cpus[mid] / 2, 3),
                peak_rss_mib=round(_vm('VmHWM')), load_before=round(load, 2),
                finite=bool(np.isfinite(out).all()))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--bits', nargs='+', type=int, default=[8, 4])
    ap.add_argument('--runs', type=int, default=3)
    ap.add_argument('--hw', type=int, default=256)
    ap.add_argument('--out', default='')
    ap.add_argument('--child', type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(run_one(args.child, args.runs, args.hw)))
        return
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''),
               TF_CPP_MIN_LOG_LEVEL='2')
    results = []
    for bits in args.bits:
        proc = subprocess.run([sys.executable, os.path.abspath(__file__), '--child', str(bits),
                               '--runs', str(args.runs), '--hw', str(args.hw)],
                              capture_output=True, text=True, env=env)
        if proc.returncode:
            results.append(dict(bit_depth=bits, error=proc.stderr[-2000:]))
            continue
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        if args.hw == 256 and bits in OFFICIAL:
            res.update(official_pytorch=OFFICIAL[bits], target_s=TARGET_S[bits],
                       speedup_vs_official=round(OFFICIAL[bits]['median_s'] / res['median_s'], 2))
        results.append(res)
        print(json.dumps(res), file=sys.stderr, flush=True)
    emit(dict(benchmark='qsci_speed', model='Q-SCI (32, 8, 2) fake quantization',
                           threads='TF defaults (2 cores)', results=results), args.out)


if __name__ == '__main__':
    main()
