"""EDVR speed and memory on this machine; prints one JSON object.

Measures, each in a fresh subprocess so peak RSS belongs to one case:
* EDVR-M and EDVR-L forward on 1x5x180x320x3 (REDS4 LR size -> 720x1280), graph mode;
* the DCN layer alone on 1x180x320x64 (deformable_groups 8) and a plain 3x3 conv of the
  same shape for scale;
with the XLA-compiled deformable conv (default) and the plain-graph one (what freezing uses).
Reported: median seconds of ``--repeats`` runs after one warm-up, peak RSS (MB), intra-op threads.

    python benchmarks/edvr_speed.py [--cases edvr_m,edvr_l,dcn,conv] [--repeats 3] [--size 180 320]
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_case(case, jit, repeats, h, w):
    sys.path.insert(0, ROOT)
    import numpy as np
    import tensorflow as tf
    from ascendvsr.models.edvr import EDVR
    from ascendcv.layers.deform_conv import ModulatedDeformConv2d
    from ascendcv.layers.conv import Conv2d

    rng = np.random.default_rng(0)
    if case in ('edvr_m', 'edvr_l'):
        arch = dict(num_feat=64, num_reconstruct_block=10) if case == 'edvr_m' else \
            dict(num_feat=128, num_reconstruct_block=40)
        model = EDVR(jit_compile=jit, **arch)
        x = tf.constant(rng.random((1, 5, h, w, 3), dtype=np.float32))
        # offsets of a few pixels, as a trained model produces (zero-init would be a plain conv)
        for layer in [model.pcd_align.cas_dcnpack] + list(model.pcd_align.dcn_pack.values()):
            k = layer.conv_offset.kernel
            k.assign(tf.random.normal(k.shape, stddev=0.02, seed=1))
        fn = tf.function(lambda t: model(t))
        args = (x,)
    elif case == 'dcn':
        layer = ModulatedDeformConv2d(64, 64, 3, 1, 1, deformable_groups=8, jit_compile=jit)
        x = tf.constant(rng.random((1, h, w, 64), dtype=np.float32))
        off = tf.constant(rng.normal(0, 2, (1, h, w, 8 * 9 * 2)).astype(np.float32))
        mask = tf.constant(rng.random((1, h, w, 8 * 9), dtype=np.float32))
        fn = tf.function(lambda a, o, m: layer(a, o, m))
        args = (x, off, mask)
    elif case == 'conv':
        layer = Conv2d(64, 64, 3, 1, 1)
        x = tf.constant(rng.random((1, h, w, 64), dtype=np.float32))
        fn = tf.function(lambda a: layer(a))
        args = (x,)
    else:
        raise ValueError(case)
    fn(*args).numpy()  # warm-up (trace, compile)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(*args).numpy()
        times.append(time.perf_counter() - t0)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return dict(case=case, xla_dcn=jit, median_s=float(np.median(times)),
                runs_s=[round(t, 4) for t in times], peak_rss_mb=round(peak_mb, 1),
                intra_op_threads=tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count(),
                input_shape=[int(s) for s in args[0].shape])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--cases', default='dcn,conv,edvr_m,edvr_l')
    ap.add_argument('--repeats', type=int, default=3)
    ap.add_argument('--size', type=int, nargs=2, default=[180, 320], metavar=('H', 'W'))
    ap.add_argument('--xla', choices=['both', 'on', 'off'], default='both')
    ap.add_argument('--_one', nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._one:
        case, jit = args._one[0], args._one[1] == '1'
        print(json.dumps(run_case(case, jit, args.repeats, *args.size)))
        return
    jits = {'both': [True, False], 'on': [True], 'off': [False]}[args.xla]
    results = []
    for case in args.cases.split(','):
        for jit in (jits if case != 'conv' else [False]):
            cmd = [sys.executable, __file__, '--_one', case, '1' if jit else '0',
                   '--repeats', str(args.repeats), '--size', *map(str, args.size)]
            env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if proc.returncode:
                results.append(dict(case=case, xla_dcn=jit, error=proc.stderr.strip()[-800:]))
                continue
            results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(json.dumps(results[-1]), file=sys.stderr)
    print(json.dumps(dict(benchmark='edvr_speed', cpu_count=os.cpu_count(), results=results),
                     indent=1))


if __name__ == '__main__':
    main()
