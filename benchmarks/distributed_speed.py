"""Multi-process training speed: EDVR step time and fps with 1 and N local processes; JSON.

Runs ``scripts/run_8p_train.sh`` (``BACKEND=tf`` or ``horovod``) on a prepared REDS-layout
dataset (default ``data/sample``, see data/README.md) for a few steps per process count and
reads rank 0's log lines (``time`` = mean step time, ``fps`` = output frames per second summed
over ranks). EDVR-M, 64x64 LR crops, batch 4 per rank by default.

    python benchmarks/distributed_speed.py [--backend tf|horovod] [--procs 1 2] [--steps 6]
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--backend', default='tf', choices=['tf', 'horovod'])
    ap.add_argument('--procs', type=int, nargs='+', default=[1, 2])
    ap.add_argument('--steps', type=int, default=6)
    ap.add_argument('--data', default=os.path.join(ROOT, 'data', 'sample'))
    ap.add_argument('--config', default=os.path.join(ROOT, 'configs', 'edvr.yaml'))
    ap.add_argument('--crop', type=int, default=64)
    ap.add_argument('--batch', type=int, default=4)
    args = ap.parse_args()
    results = []
    for n in args.procs:
        with tempfile.TemporaryDirectory() as tmp:
            env = dict(os.environ, PYTHON=sys.executable, BACKEND=args.backend, CONFIG=args.config,
                       OUT_8P=os.path.join(tmp, '8p'), TF_CPP_MIN_LOG_LEVEL='3')
            cmd = ['timeout', '-k', '10', '3600', 'bash', os.path.join(ROOT, 'scripts', 'run_8p_train.sh'),
                   str(n), f'data.data_dir={args.data}', f'output_dir={tmp}/run',
                   f'solver.total_steps={args.steps}', 'solver.print_interval=1',
                   f'solver.checkpoint_interval={args.steps * 10}', 'edvr.tsa_iter=0',
                   f'data.crop_size={args.crop}', f'data.batch_size={args.batch}']
            proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
            lines = re.findall(r'Step:(\d+), lr:\S+, loss:\S+, time:([\d.]+)ms, fps:([\d.]+)', proc.stdout)
            # skip the first two steps (tracing, XLA compilation, warm caches)
            steady = [(float(t), float(f)) for s, t, f in lines if int(s) > 2]
            if proc.returncode or not steady:
                results.append(dict(processes=n, error=(proc.stdout + proc.stderr)[-1500:]))
                continue
            step_ms = sum(t for t, _ in steady) / len(steady)
            fps = sum(f for _, f in steady) / len(steady)
            results.append(dict(processes=n, step_time_ms=round(step_ms, 1), fps_total=round(fps, 3),
                                batch_per_rank=args.batch, crop=args.crop, steps_measured=len(steady)))
        print(json.dumps(results[-1]), file=sys.stderr)
    print(json.dumps(dict(benchmark='distributed_speed', backend=args.backend, cpu_count=os.cpu_count(),
                          results=results), indent=1))


if __name__ == '__main__':
    main()
