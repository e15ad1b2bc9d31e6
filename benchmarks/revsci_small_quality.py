"""Small CPU RevSCI: train for a bounded wall time, then PSNR/SSIM on the SCI benchmarks next to
GAP-TV's; one JSON.

    python benchmarks/revsci_small_quality.py [--config configs/revsci_small.yaml]
        [--minutes 55] [--data-dir data/sci] [--skip-train] [--output-dir DIR]

1. ``tools/main.py --mode train`` with the config and ``solver.time_limit_minutes=--minutes``
   (skipped with ``--skip-train``: the newest checkpoint of the output dir is evaluated);
   the log's last step line and the wall time are reported.
2. ``--mode eval`` of that checkpoint and of GAP-TV (``configs/gap_tv.yaml``) on ``--data-dir``
   (PnP-SCI convention: peak = ground-truth frame max; Runner and Drop on measurement 1).
Each evaluation's per-dataset PSNR/SSIM and seconds per measurement are in the JSON, with the
PNG grids' paths (ground truth above the reconstruction).
"""
import argparse
import json
import os
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(args, log_to=None):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
    cmd = [sys.executable, os.path.join(ROOT, 'tools', 'main.py'), *args]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT)
    if log_to:
        with open(log_to, 'a') as f:
            f.write(proc.stdout)
    if proc.returncode:
        sys.exit(f'{" ".join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}')
    return proc.stdout


def scores(report_path):
    with open(report_path) as f:
        report = json.load(f)
    return {name: dict(psnr=round(e['psnr'], 3), ssim=round(e['ssim'], 4),
                       seconds_per_measurement=round(e['seconds_per_measurement'], 3),
                       grid=e.get('grid'))
            for name, e in report['datasets'].items()} | {'mean': report.get('mean')}


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--config', default='configs/revsci_small.yaml')
    ap.add_argument('--minutes', type=float, default=55.0)
    ap.add_argument('--data-dir', default='data/sci')
    ap.add_argument('--output-dir', default=None, help='default: the config\'s output_dir')
    ap.add_argument('--skip-train', action='store_true')
    args = ap.parse_args()
    sys.path.insert(0, ROOT)
    from ascendvsr.config import load_config
    cfg = load_config(os.path.join(ROOT, args.config))
    out = args.output_dir or cfg.output_dir
    out_abs = out if os.path.isabs(out) else os.path.join(ROOT, out)
    result = dict(config=args.config, output_dir=out, data_dir=args.data_dir)
    if not args.skip_train:
        t0 = time.time()
        run(['--config-file', args.config, '--mode', 'train', f'output_dir={out}',
             f'solver.time_limit_minutes={args.minutes}'])
        result['train_wall_minutes'] = round((time.time() - t0) / 60, 2)
    with open(os.path.join(out_abs, 'log.txt')) as f:
        steps = re.findall(r'Step:(\d+), lr:([\d.]+), loss:([\d.]+), time:([\d.]+)ms', f.read())
    if steps:
        last = steps[-1]
        result['last_log'] = dict(step=int(last[0]), lr=float(last[1]), loss=float(last[2]),
                                  ms_per_step=float(last[3]))
    result['train_config'] = dict(crop=cfg.sci.crop_size, batch=cfg.data.batch_size,
                                  num_block=cfg.revsci.num_block, num_group=cfg.revsci.num_group,
                                  sources=list(cfg.sci.train_sources))
    run(['--config-file', args.config, '--mode', 'eval', f'output_dir={out}',
         f'model.checkpoint={os.path.join(out, "checkpoints")}', f'sci.data_dir={args.data_dir}',
         'sci.report=eval/sci_report.json'])
    result['revsci'] = scores(os.path.join(out_abs, 'eval', 'sci_report.json'))
    gap_out = os.path.join(out, 'gap_tv')
    run(['--config-file', 'configs/gap_tv.yaml', '--mode', 'eval', f'output_dir={gap_out}',
         f'sci.data_dir={args.data_dir}'])
    gap_abs = gap_out if os.path.isabs(gap_out) else os.path.join(ROOT, gap_out)
    result['gap_tv'] = scores(os.path.join(gap_abs, 'eval', 'sci_report.json'))
    print(json.dumps(result, indent=1))


if __name__ == '__main__':
    main()
