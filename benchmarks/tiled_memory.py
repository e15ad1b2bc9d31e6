"""Peak memory of a video model restoring a 720p video, whole frames vs spatial tiles (issue #14
item 7).

For each setting a fresh Python process builds the model of ``--config`` (default
``configs/edvr.yaml``: EDVR-M; ``configs/rvrt_reds.yaml`` for RVRT; random weights; ``--tiny``
for the registration's tiny variant), then restores ``--frames`` frames of a random clip of
``--size`` LR pixels (default 180x320, i.e. 720x1280 = 720p output at x4, the REDS setting)
through the inference path of the task (``VideoRestorationTask.predictor``: EDVR's sliding
window or RVRT's clips, batch 1, frames padded to the model's multiple, ``inference.tile`` /
``inference.tile_overlap``), discarding the outputs as they come. Each process reports, in MiB:

* ``rss_built``: RSS after building the model (TF runtime and weights);
* ``peak_rss``: the process's peak RSS (``resource.getrusage``) after restoring, tracing
  included;
* ``peak_minus_built``: what restoring needs on top of the built model;
* ``seconds``: wall time of the restoration (first call traces; noisy on a shared machine);

and the whole-frame process also the max abs difference of its first restored frame from the
tiled one (``max_abs_diff_vs_whole`` in each tiled entry; the blending of the official RVRT test
code, see :class:`ascendcv.runner.predict.SpatialTiles`).

Usage::

    python benchmarks/tiled_memory.py [--config configs/edvr.yaml] [--size 180 320] [--frames 2]
        [--tiles 64 32] [--overlap 16] [--tiny] [--out tiled_memory.json]

Prints JSON (and writes it to ``--out`` if given).
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

from bench_common import emit

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _rss_mib():
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) / 1024
    return float('nan')


def child(args):
    sys.path.insert(0, ROOT)
    os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
    import numpy as np

    from ascendvsr.config import load_config
    from ascendvsr.zoo import get_entry
    tile = [0, args.tile, args.tile] if args.tile else [0, 0, 0]
    overlap = [0, args.overlap, args.overlap] if args.tile else [0, 0, 0]
    cfg = load_config(os.path.join(ROOT, args.config), [])
    entry = get_entry(cfg.model.name)
    cfg = load_config(os.path.join(ROOT, args.config),
                      (list(entry.tiny) if args.tiny else []) + [
                          f'inference.tile={tile}', f'inference.tile_overlap={overlap}'])
    model = entry.build(cfg)  # our layers create their weights at construction
    task = entry.make_task(cfg)
    h, w = args.size
    frames = np.random.default_rng(0).random((max(args.frames, 5), h, w, 3), dtype=np.float32)
    built = _rss_mib()
    predict, strategy, check = task.predictor(model, 1, cfg.inference.padding)
    check(frames.shape)
    first = {}

    def keep_first(indices, outputs):
        if not first:
            first['frame'] = np.asarray(outputs[0])
    t0 = time.perf_counter()
    strategy.restore(predict, frames, list(range(args.frames)), callback=keep_first)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    np.save(args.save_first, first['frame'])
    print(json.dumps(dict(tile=tile, tile_overlap=overlap, rss_built=round(built, 1),
                          peak_rss=round(peak, 1), peak_minus_built=round(peak - built, 1),
                          seconds=round(seconds, 2), output=list(first['frame'].shape))))


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--config', default='configs/edvr.yaml', help='a video model config')
    ap.add_argument('--size', type=int, nargs=2, default=[180, 320], help='LR height width')
    ap.add_argument('--frames', type=int, default=2, help='frames to restore')
    ap.add_argument('--tiles', type=int, nargs='+', default=[64, 32], help='tile sizes to try')
    ap.add_argument('--overlap', type=int, default=16, help='tile overlap (LR pixels)')
    ap.add_argument('--tiny', action='store_true', help="the registration's tiny variant")
    ap.add_argument('--out', default='')
    ap.add_argument('--child', action='store_true', help=argparse.SUPPRESS)
    ap.add_argument('--tile', type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument('--save-first', default='', help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)
    import numpy as np
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for tile in [0] + list(args.tiles):
            first = os.path.join(tmp, f'first_{tile}.npy')
            cmd = [sys.executable, os.path.abspath(__file__), '--child', '--config', args.config,
                   '--tile', str(tile),
                   '--overlap', str(args.overlap), '--frames', str(args.frames),
                   '--size', *map(str, args.size), '--save-first', first] + (
                       ['--tiny'] if args.tiny else [])
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode:
                sys.exit(f'child failed ({" ".join(cmd)}):\n{proc.stderr[-3000:]}')
            entry = json.loads(proc.stdout.strip().splitlines()[-1])
            if tile:
                diff = np.abs(np.load(first) - np.load(os.path.join(tmp, 'first_0.npy'))).max()
                entry['max_abs_diff_vs_whole'] = float(diff)
            results.append(entry)
    whole = results[0]['peak_minus_built']
    report = dict(config=args.config, tiny=bool(args.tiny),
                  lr_size=args.size, frames=args.frames, runs=results,
                  peak_reduction=[round(whole / max(r['peak_minus_built'], 1e-6), 2)
                                  for r in results[1:]])
    emit(report, args.out)


if __name__ == '__main__':
    main()
