"""NeRV-S decoding speed at 720x1280, batch 1 (frame index in, frame out); JSON out.

Measured as the paper does: frames 0..N-1 decoded one batch at a time, time per frame of the
model calls only (no IO), after one warm-up call. Cases (each in its own subprocess, so the
peak resident memory ``peak_rss_mb`` belongs to that case alone):

* ``live_fp32``        -- the model in a ``tf.function`` (fused RGB head), float32;
* ``live_fp32_unfused``-- the same without the fused head (PixelShuffle at full resolution);
* ``live_bf16``        -- block convolutions in bfloat16 (``compute_dtype``), float32 elsewhere;
* ``frozen_fp32`` / ``frozen_bf16`` -- the frozen GraphDef (``ascendcv.runner.freezer``) run by
  :class:`FrozenGraphModel` (their peak memory includes building and freezing the model in the
  same process).

Reference on this machine: the official PyTorch NeRV-S decodes 0.53 frames/s (1.88 s/frame,
peak 1.4 GB). The machine is shared: wall-clock numbers depend on the load (reported as
``load_average_1min``); ``cpu_s_per_frame`` (user + system CPU seconds of the process per
frame) measures the work itself, so ``2 / cpu_s_per_frame`` bounds the frames/s two idle cores
would reach. Weights are random (seed 0; speed does not depend on them); ``max_abs_diff``
compares each case with the live float32 output.

    python benchmarks/nerv_speed.py [--frames 8] [--out nerv_speed.json]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

CASES = ('live_fp32', 'live_fp32_unfused', 'live_bf16', 'frozen_fp32', 'frozen_bf16')


def run_case(case, frames, config, workdir):
    """Decode ``frames`` frames in this process; returns a dict."""
    import resource

    import keras
    import numpy as np
    import tensorflow as tf
    from ascendcv.runner.freezer import FrozenGraphModel, freeze
    from ascendvsr.config import load_config
    from ascendcv.runner.predict import run_batches
    from ascendvsr.tasks.nerv import NervTask, index_batches, make_predict
    from ascendvsr.zoo import get_entry
    build_model = get_entry('NeRV').build

    cfg = load_config(os.path.join(ROOT, 'configs', f'{config}.yaml'),
                      ['data.eval_batch_size', '1', 'output_dir', workdir])
    keras.utils.set_random_seed(0)
    kw = {}
    if case.endswith('bf16'):
        kw['compute_dtype'] = 'bfloat16'
    if case.endswith('unfused'):
        kw['fuse_head'] = False
    model = build_model(cfg, **kw)
    if case.startswith('frozen'):
        pb, _ = freeze(NervTask(cfg), model, os.path.join(workdir, f'{case}.pb'))
        predict = FrozenGraphModel(pb)
    else:
        predict = make_predict(model)
    times, cpu = [], []

    def timed(x):
        r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        out = np.asarray(predict(x))
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        times.append(time.perf_counter() - t0)
        cpu.append(r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime)
        return out

    _, spent = run_batches(timed, index_batches(frames, 1), desc=case,
                           callback=lambda *_: None)  # outputs not kept (peak RSS)
    n = frames
    times, cpu = times[1:], cpu[1:]  # drop the warm-up call
    probe = np.array([frames // 2], np.float32)
    y = np.asarray(predict(probe), np.float64)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # before the reference
    ref = build_model(cfg)
    for a, b in zip(model.weights, ref.weights):
        b.assign(a)
    diff = float(np.abs(y - ref(probe).numpy()).max())
    return dict(case=case, frames=n, s_per_frame=round(spent / n, 4), fps=round(n / spent, 4),
                median_s_per_frame=round(float(np.median(times)), 4),
                min_s_per_frame=round(float(np.min(times)), 4),
                cpu_s_per_frame=round(float(np.mean(cpu)), 4),
                peak_rss_mb=round(peak, 1), max_abs_diff_vs_live_fp32=diff,
                params=model.count_parameters(), output_size=list(model.output_size),
                tf=tf.__version__)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--frames', type=int, default=8, help='frames decoded per case')
    ap.add_argument('--config', default='nerv_s')
    ap.add_argument('--cases', nargs='+', default=list(CASES), choices=CASES)
    ap.add_argument('--rounds', type=int, default=1,
                    help='run the case list this many times (interleaved, against load drift)')
    ap.add_argument('--out', default='', help='also write the JSON here')
    ap.add_argument('--case', help=argparse.SUPPRESS)  # internal: run one case
    ap.add_argument('--workdir', help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.case:
        print('RESULT ' + json.dumps(run_case(args.case, args.frames, args.config, args.workdir)))
        return
    results, loads = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(max(args.rounds, 1)):
            for case in args.cases:
                t0 = time.time()
                proc = subprocess.run([sys.executable, os.path.abspath(__file__), '--case', case,
                                       '--frames', str(args.frames), '--config', args.config,
                                       '--workdir', tmp], capture_output=True, text=True)
                line = [ln for ln in proc.stdout.splitlines() if ln.startswith('RESULT ')]
                if proc.returncode or not line:
                    results.append(dict(case=case, round=r,
                                        error=proc.stderr.strip().splitlines()[-3:]))
                else:
                    res = json.loads(line[-1][len('RESULT '):])
                    res.update(round=r, wall_s=round(time.time() - t0, 1),
                               load_average_1min=round(os.getloadavg()[0], 2))
                    results.append(res)
                loads.append(os.getloadavg()[0])
                print(json.dumps(results[-1]), file=sys.stderr)
    summary = {}
    for case in args.cases:
        ok = [r for r in results if r['case'] == case and 'fps' in r]
        if ok:
            summary[case] = dict(best_fps=max(r['fps'] for r in ok),
                                 median_fps=round(statistics.median(r['fps'] for r in ok), 4),
                                 cpu_s_per_frame=round(min(r['cpu_s_per_frame'] for r in ok), 4),
                                 peak_rss_mb=max(r['peak_rss_mb'] for r in ok))
    report = dict(benchmark='nerv_speed', config=args.config, batch=1, frames=args.frames,
                  rounds=args.rounds, cpu_count=os.cpu_count(),
                  load_average_1min_during=[round(min(loads), 2), round(max(loads), 2)],
                  official_pytorch=dict(fps=0.53, s_per_frame=1.88, peak_mb=1400), target_fps=0.8,
                  summary=summary, results=results)
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        with open(args.out, 'w') as f:
            f.write(text + '\n')


if __name__ == '__main__':
    main()
