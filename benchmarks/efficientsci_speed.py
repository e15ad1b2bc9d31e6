"""EfficientSCI forward speed and peak memory on one 8 x 256 x 256 measurement (random weights).

For every size (default S and B) and graph mode (``graph``: ``tf.function``; ``xla``:
``tf.function(jit_compile=True)``) a fresh Python process builds the model
(:class:`ascendvsr.models.efficientsci.EfficientSCI`), wraps the SCI task's serve computation
(``meas / mask_s`` -> network -> frames last, what evaluation runs), runs one warm-up call (trace,
and XLA compilation) and then ``--runs`` timed calls, and reports

* ``median_s`` / ``runs_s``: wall time of the timed calls (median; the target figures);
* ``cpu_s_per_core``: process CPU time of the median call / 2 cores -- on a busy machine the
  wall time is inflated by other processes, while this is roughly what the wall time would be
  on a quiet 2-core machine when both threads are busy (a proxy, not a measurement);
* ``warmup_s``: the first call (tracing / XLA compilation included);
* ``peak_rss_mib``: the process's peak RSS (``VmHWM``: TensorFlow import included), and
  ``rss_import_mib`` after importing TensorFlow and the model code;
* ``load_before``: the 1-minute load average when the process started (contention).

The official PyTorch code on this machine (quiet, 2 threads; ``../shared/fixtures/
esci_params_timing.json``): EfficientSCI-S 12.1 s / 1217 MiB, -B 27.3 s / 1891 MiB (torch import
~0.5 GB included). Targets: S <= 6.0 s, B <= 13.6 s, with no more memory.

Usage::

    python benchmarks/efficientsci_speed.py [--sizes S B] [--modes graph xla] [--xla-sizes S]
        [--runs 3] [--hw 256] [--out efficientsci_speed.json]

Prints JSON (and writes ``--out``); ``faster_mode`` names, per size, the faster of the modes run
(the model's default serve path stays plain graph mode unless XLA wins:
``efficientsci.jit_compile``).
"""
import argparse
import json
import os
import subprocess
import sys
import time

from bench_common import emit, random_measurement

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OFFICIAL = {'S': dict(median_s=12.09, peak_rss_mib=1217), 'B': dict(median_s=27.29,
                                                                     peak_rss_mib=1891)}
TARGET_S = {'S': 6.0, 'B': 13.6}


def _status_mib(field):
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1]) / 1024
    return float('nan')


def run_one(size, mode, runs, hw):
    """Time one configuration in this process; returns the result dict."""
    load = os.getloadavg()[0]
    import numpy as np
    import tensorflow as tf

    from ascendcv.utils.sci_physics import normalize_measurement_tf
    from ascendvsr.models.efficientsci import SIZES, EfficientSCI
    rss_import = _status_mib('VmRSS')
    tf.keras.utils.set_random_seed(0)
    model = EfficientSCI(*SIZES[size], name='EfficientSCI')
    rng = np.random.default_rng(0)
    meas, mask = random_measurement(rng, hw)
    fn = tf.function(lambda m, k: model((normalize_measurement_tf(m, k), k), training=False),
                     jit_compile=mode == 'xla')
    t = time.perf_counter()
    out = fn(meas, mask).numpy()
    warmup = time.perf_counter() - t
    walls, cpus = [], []
    for _ in range(runs):
        t, c = time.perf_counter(), time.process_time()
        out = fn(meas, mask).numpy()
        walls.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
    order = sorted(range(runs), key=lambda i: walls[i])
    mid = order[runs // 2]
    return dict(size=size, mode=mode, params=int(model.count_params()), input=[1, hw, hw, 8],
                output=list(out.shape), warmup_s=round(warmup, 3),
                runs_s=[round(w, 3) for w in walls], median_s=round(walls[mid], 3),
                cpu_s_per_core=round(cpus[mid] / 2, 3), peak_rss_mib=round(_status_mib('VmHWM')),
                rss_import_mib=round(rss_import), load_before=round(load, 2),
                finite=bool(np.isfinite(out).all()))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--sizes', nargs='+', default=['S', 'B'], choices=['T', 'S', 'B', 'L'])
    ap.add_argument('--modes', nargs='+', default=['graph', 'xla'], choices=['graph', 'xla'])
    ap.add_argument('--xla-sizes', nargs='*', default=['S'],
                    help='sizes also timed with XLA (default S only: XLA compilation and its '
                         'Eigen convolutions are slow on this CPU, see the report)')
    ap.add_argument('--runs', type=int, default=3)
    ap.add_argument('--hw', type=int, default=256)
    ap.add_argument('--out', default='')
    ap.add_argument('--child', nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(run_one(args.child[0], args.child[1], args.runs, args.hw)))
        return
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''),
               TF_CPP_MIN_LOG_LEVEL='2')
    results = []
    for size in args.sizes:
        for mode in args.modes:
            if mode == 'xla' and size not in args.xla_sizes:
                continue
            proc = subprocess.run([sys.executable, os.path.abspath(__file__), '--child', size, mode,
                                   '--runs', str(args.runs), '--hw', str(args.hw)],
                                  capture_output=True, text=True, env=env)
            if proc.returncode:
                results.append(dict(size=size, mode=mode, error=proc.stderr[-2000:]))
                continue
            res = json.loads(proc.stdout.strip().splitlines()[-1])
            if args.hw == 256 and size in OFFICIAL:
                res.update(official_pytorch=OFFICIAL[size], target_s=TARGET_S[size],
                           speedup_vs_official=round(OFFICIAL[size]['median_s'] /
                                                     res['median_s'], 2))
            results.append(res)
            print(json.dumps(res), file=sys.stderr, flush=True)
    faster = {}
    for size in args.sizes:
        timed = [r for r in results if r['size'] == size and 'median_s' in r]
        if timed:
            faster[size] = min(timed, key=lambda r: r['median_s'])['mode']
    report = dict(benchmark='efficientsci_speed', threads='TF defaults (2 cores)',
                  results=results, faster_mode=faster)
    emit(report, args.out)


if __name__ == '__main__':
    main()
