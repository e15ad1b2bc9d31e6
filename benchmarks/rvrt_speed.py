"""RVRT forward time and peak memory, official VSR configuration, 1x6x3x64x64 -> 256x256; JSON.

The official PyTorch RVRT on this machine (``../shared/fixtures/rvrt_timing.json``: random
weights, 2 threads, the CUDA attention op replaced by a pure-PyTorch transcription): 17.1 s
forward, of which 10.9 s in the attention op (8 calls), peak RSS 1781 MiB. Target: <= 8.5 s,
<= 1.8 GB.

Cases, each in a fresh subprocess (so ``peak_rss_mb`` = VmHWM belongs to that case alone):

* ``graph``      -- the model in a ``tf.function`` (static shapes), the attention as core ops;
* ``graph_xla``  -- the same with the attention op XLA-compiled (``jit_compile=True``);
* ``eager``      -- op by op; also gives the attention op's share: the time spent inside the
  ``deform_attn`` calls (eager ops run synchronously, so wall time around a call is its cost).

Forward time = median of ``--repeats`` calls after one warm-up (the trace). Weights are random
(seed 0; speed does not depend on them). The machine is shared: ``load_average_1min`` is
reported and ``cpu_s`` (user + system CPU seconds per forward) measures the work itself.

    python benchmarks/rvrt_speed.py [--cases graph eager] [--repeats 3] [--out rvrt_speed.json]
"""
import argparse
import json
import os
import statistics
import sys
import time

from bench_common import emit, peak_rss_mb, run_child, timed_calls

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

CASES = ('graph', 'graph_xla', 'eager')
OFFICIAL = dict(forward_s=17.1, attention_op_s=10.9, peak_rss_mb=1781, parameters=10_782_295)


def measure(build, case, shape, repeats, op_name):
    """Time ``build(num_frame, jit_compile) -> model`` on random frames ``shape`` in this
    process: one warm-up call, then ``repeats`` timed calls; in the ``eager`` case the wall time
    inside ``ascendvsr.layers.rvrt_attention.<op_name>`` too (eager ops run synchronously)."""
    import keras
    import numpy as np
    import tensorflow as tf
    import ascendvsr.layers.rvrt_attention as attention

    keras.utils.set_random_seed(0)
    model = build(shape[1], case == 'graph_xla')
    after_build = peak_rss_mb()
    x = tf.constant(np.random.default_rng(0).random(shape, dtype=np.float32))
    op_time = []
    if case == 'eager':
        inner = getattr(attention, op_name)

        def timed_op(*args, **kwargs):
            t0 = time.perf_counter()
            out = inner(*args, **kwargs)
            out.numpy()  # wait for the result
            op_time.append(time.perf_counter() - t0)
            return out
        setattr(attention, op_name, timed_op)
        fn = model
    else:
        fn = tf.function(lambda t: model(t, training=False))
    t0 = time.perf_counter()
    out = np.asarray(fn(x))
    first = time.perf_counter() - t0
    op_share = []

    def call():
        op_time.clear()
        np.asarray(fn(x))
        op_share.append(sum(op_time))
    times, cpu = timed_calls(call, repeats)
    res = dict(case=case, input=list(shape), output=list(out.shape),
               forward_s=round(statistics.median(times), 3),
               forward_min_max_s=[round(min(times), 3), round(max(times), 3)],
               cpu_s=round(statistics.median(cpu), 3), first_call_s=round(first, 3),
               peak_rss_mb=round(peak_rss_mb(), 1), rss_after_build_mb=round(after_build, 1),
               parameters=model.num_parameters(), load_average_1min=os.getloadavg()[0])
    if case == 'eager':
        res['attention_op_s'] = round(statistics.median(op_share), 3)
        res['attention_op_calls'] = len(op_time)
        res['attention_op_share'] = round(statistics.median(op_share) / res['forward_s'], 3)
    return res


def run_cases(script, cases, shape, repeats):
    """``{case: result}``, each case in a fresh process of ``script --case CASE``."""
    return {case: run_child(script, ['--case', case, '--repeats', repeats, '--shape', *shape])
            for case in cases}


def parse_args(cases):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--cases', nargs='+', default=list(cases), choices=cases)
    ap.add_argument('--shape', type=int, nargs=5, default=[1, 6, 64, 64, 3],
                    help='input [N, T, H, W, 3]')
    ap.add_argument('--repeats', type=int, default=3)
    ap.add_argument('--case', help=argparse.SUPPRESS)  # internal: run one case in this process
    ap.add_argument('--out', default='')
    return ap.parse_args()


def _build_rvrt(num_frame, jit_compile):
    from ascendvsr.models.rvrt import RVRT
    return RVRT(num_frame=num_frame, jit_compile=jit_compile)


def main():
    args = parse_args(CASES)
    if args.case:
        print(json.dumps(measure(_build_rvrt, args.case, tuple(args.shape), args.repeats,
                                 'deform_attn')))
        return
    results = dict(official_pytorch_cpu=OFFICIAL,
                   cases=run_cases(__file__, args.cases, args.shape, args.repeats))
    ok = [c for c in results['cases'].values() if 'forward_s' in c]
    if ok:
        best = min(ok, key=lambda c: c['forward_s'])
        results['best'] = dict(case=best['case'], forward_s=best['forward_s'],
                               peak_rss_mb=best['peak_rss_mb'],
                               speedup_vs_official=round(OFFICIAL['forward_s']
                                                         / best['forward_s'], 2))
    emit(results, args.out)


if __name__ == '__main__':
    main()
