"""Ours against the official PyTorch code, alternating in one run on one machine; JSON out.

Speed claims are ratios measured side by side: machines (and the load on a shared one) differ
by more than the gains in question. For each model, every round runs our forward (each
``--modes`` entry: float32, bfloat16; ``precision_speed.py``'s child, the task's serve graph on
real content) and then the official code (``official_side.py`` under ``--torch-python``, the
official module imported from ``--src``, random weights), each in a fresh process, so the two
see the same machine state; the report gives both medians, per-round figures, peak RSS and the
ratio ours / official (below 1 = faster). Threads: 2 on both sides (TF's default on this 2-core
machine; ``torch.set_num_threads(2)``).

The official checkouts come from the search tool's ``fetch`` (a bare mirror), e.g.::

    git -C /work/.mirror/haochen-rye+NeRV/repo show HEAD:model_nerv.py > /tmp/nerv/model_nerv.py
    git -C /work/.mirror/haochen-rye+NeRV/repo show HEAD:utils.py > /tmp/nerv/utils.py
    python -m venv /tmp/tv && /tmp/tv/bin/pip install torch==2.13.0 numpy einops pytorch_msssim
    python benchmarks/vs_official.py --model nerv_s --src /tmp/nerv --torch-python /tmp/tv/bin/python

Models: ``edvr_m`` (1x5x180x320; BasicSR with torchvision, whose pip wheels pair only with
the CUDA build of torch -- it runs on the CPU: ``pip install torch==2.14.1
torchvision==0.29.1``), ``revsci`` (18 blocks, one 8x256x256 measurement), ``nerv_s`` (one
720p frame), ``efficientsci_s`` / ``efficientsci_b`` (one 8x256x256
measurement), ``rvrt`` (1x6x64x64 -> 256x256; the official attention op is a CUDA extension,
replaced by a pure-PyTorch forward, so the official time includes that transcription).
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from bench_common import emit, run_child  # noqa: E402

# our model -> precision_speed.py case
OURS = dict(nerv_s='nerv_s', efficientsci_s='efficientsci_s', efficientsci_b='efficientsci_b',
            rvrt='rvrt', edvr_m='edvr_m', revsci='revsci')


def official(torch_python, model, src, repeats):
    """One official run in a fresh process of ``torch_python``; its JSON line as a dict."""
    import json
    proc = subprocess.run([torch_python, os.path.join(HERE, 'official_side.py'), '--model', model,
                           '--src', src, '--repeats', str(repeats)], capture_output=True, text=True)
    if proc.returncode:
        return dict(error=proc.stderr.strip().splitlines()[-3:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def summarize(rounds, key):
    ok = [r[key] for r in rounds if 'forward_s' in r.get(key, {})]
    if not ok:
        return None
    return dict(forward_s_median=round(statistics.median(r['forward_s'] for r in ok), 3),
                forward_s_per_round=[round(r['forward_s'], 3) for r in ok],
                peak_rss_mb=max(r['peak_rss_mb'] for r in ok))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--model', required=True, choices=sorted(OURS))
    ap.add_argument('--src', required=True, help='checkout of the official repository')
    ap.add_argument('--torch-python', required=True, help='python of a venv with torch')
    ap.add_argument('--modes', nargs='+', default=['float32', 'bfloat16'],
                    choices=['float32', 'bfloat16'])
    ap.add_argument('--rounds', type=int, default=2)
    ap.add_argument('--repeats', type=int, default=3, help='timed calls per process')
    ap.add_argument('--out', default='')
    a = ap.parse_args()
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3')
    rounds = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(max(a.rounds, 1)):
            row = {}
            for mode in a.modes:
                row[mode] = run_child(os.path.join(HERE, 'precision_speed.py'),
                                      ['--repeats', a.repeats, '--child', OURS[a.model], mode,
                                       os.path.join(tmp, 'y.npz')], env=env)
                print(f'round {r} ours {mode}: {row[mode].get("forward_s", row[mode])}',
                      file=sys.stderr)
            row['official'] = official(a.torch_python, a.model, a.src, a.repeats)
            print(f'round {r} official: {row["official"].get("forward_s", row["official"])}',
                  file=sys.stderr)
            row['load_average_1min'] = round(os.getloadavg()[0], 2)
            rounds.append(row)
    report = dict(benchmark='vs_official', model=a.model, rounds=rounds,
                  load_average_1min=[r['load_average_1min'] for r in rounds])
    off = summarize(rounds, 'official')
    report['official'] = off
    for mode in a.modes:
        ours = summarize(rounds, mode)
        report[mode] = ours
        if ours and off:
            ours['ratio_to_official'] = round(ours['forward_s_median'] / off['forward_s_median'], 3)
            ours['speedup_vs_official'] = round(off['forward_s_median'] / ours['forward_s_median'],
                                                2)
    emit(report, a.out)


if __name__ == '__main__':
    main()
