"""RVRT guided deformable attention op speed and memory on this machine; prints one JSON object.

The official RVRT VSR configuration calls the op 8 times per forward of a 1x6x3x64x64 clip
(4 propagation modules x 2 later clips), each with q ``[2, 1, 64, 64, 288]`` (embed 144 -> proj 288),
kv ``[1, 2, 64, 64, 576]``, offsets ``[2, 64, 64, 2*12*9*2]`` (12 heads, 12 deformable groups, clip 2,
3x3 window). The official pure-PyTorch transcription of the CUDA op spent 10.9 s in those 8 calls
on this machine (``../shared/fixtures/rvrt_timing.json``).

Cases, each in a fresh subprocess (peak RSS belongs to one case): ``deform_attn`` eager, inside
``tf.function``, and with ``jit_compile=True`` (forward; and forward + backward for training),
and RVRT Light's ``local_attn`` eager and with XLA. Offsets ~ N(0, 3^2) px, as flow + residual.
Reported: median seconds per call of ``--repeats`` runs after one warm-up, x 8 per RVRT forward,
process CPU seconds, peak RSS (MB), intra-op threads.

    python benchmarks/rvrt_gda_speed.py [--repeats 3] [--size 64 64]
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CALLS_PER_FORWARD = 8
OFFICIAL_8_CALLS_S = 10.9  # rvrt_timing.json: GDA op share of the 17.1 s official forward
CASES = ('gda_eager', 'gda_function', 'gda_xla', 'gda_xla_train', 'local_eager', 'local_xla')


def run_case(case, repeats, h, w):
    sys.path.insert(0, ROOT)
    import numpy as np
    import tensorflow as tf
    from ascendcv.layers.deform_attn import deform_attn, local_attn

    heads = groups = 12
    p, clip = 288, 2
    rng = np.random.default_rng(0)
    q = tf.constant(rng.standard_normal((clip, 1, h, w, p), dtype=np.float32))
    kv = tf.constant(rng.standard_normal((1, clip, h, w, 2 * p), dtype=np.float32))
    off = tf.constant(rng.normal(0, 3, (clip, h, w, clip * groups * 9 * 2)).astype(np.float32))
    gda = lambda a, b, c, jit=False: deform_attn(a, b, c, 3, 3, 1, 1, 1, heads, groups, clip,  # noqa: E731
                                                 jit_compile=jit)
    if case == 'gda_eager':
        fn, args = gda, (q, kv, off)
    elif case == 'gda_function':
        fn, args = tf.function(gda), (q, kv, off)
    elif case == 'gda_xla':
        fn, args = tf.function(lambda a, b, c: gda(a, b, c, True)), (q, kv, off)
    elif case == 'gda_xla_train':
        @tf.function
        def fn(a, b, c):
            with tf.GradientTape() as tape:
                tape.watch([a, b, c])
                loss = tf.reduce_sum(gda(a, b, c, True) ** 2)
            return tape.gradient(loss, [a, b, c])[2]
        args = (q, kv, off)
    elif case == 'local_eager':
        fn, args = (lambda a, b: local_attn(a, b, 3, 3, heads, clip)), (q, kv)
    elif case == 'local_xla':
        fn, args = tf.function(lambda a, b: local_attn(a, b, 3, 3, heads, clip, jit_compile=True)), (q, kv)
    else:
        raise ValueError(case)
    fn(*args).numpy()  # warm-up (trace, compile)
    times, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn(*args).numpy()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    med = float(np.median(times))
    return dict(case=case, median_s_per_call=round(med, 4),
                s_per_rvrt_forward=round(CALLS_PER_FORWARD * med, 3),
                runs_s=[round(t, 4) for t in times], cpu_s=[round(t, 3) for t in cpu],
                peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                intra_op_threads=tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count())


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--cases', default=','.join(CASES))
    ap.add_argument('--repeats', type=int, default=3)
    ap.add_argument('--size', type=int, nargs=2, default=[64, 64], metavar=('H', 'W'))
    ap.add_argument('--_one', help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._one:
        print(json.dumps(run_case(args._one, args.repeats, *args.size)))
        return
    results = []
    for case in args.cases.split(','):
        cmd = [sys.executable, __file__, '--_one', case, '--repeats', str(args.repeats),
               '--size', *map(str, args.size)]
        proc = subprocess.run(cmd, capture_output=True, text=True,
                              env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2'))
        if proc.returncode:
            results.append(dict(case=case, error=proc.stderr.strip()[-800:]))
        else:
            results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(json.dumps(results[-1]), file=sys.stderr)
    load = os.getloadavg()[0] if hasattr(os, 'getloadavg') else None
    print(json.dumps(dict(benchmark='rvrt_gda_speed', size=args.size, cpu_count=os.cpu_count(),
                          load_average_1min=load, calls_per_rvrt_forward=CALLS_PER_FORWARD,
                          official_pytorch_8_calls_s=OFFICIAL_8_CALLS_S, results=results),
                     indent=1))


if __name__ == '__main__':
    main()
