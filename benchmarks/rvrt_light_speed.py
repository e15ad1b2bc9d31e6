"""RVRT Light forward time and peak memory (configs/rvrt_light.yaml, mindediting's settings:
embed 144, window 2x8x8, 12 local-attention heads), 1x6x3x64x64 -> 256x256 as the RVRT
benchmark (benchmarks/rvrt_speed.py); JSON.

Seed reference (mindediting RVRT model card, GPU): RVRT Light 1.9 s vs RVRT 2.32 s per call, so
the light model should also be faster than RVRT here. Cases, each in a fresh subprocess (peak RSS
= that case's VmHWM):

* ``graph``  -- the model in a ``tf.function``;
* ``eager``  -- op by op, which also gives the local attention op's share (wall time around each
  ``local_attn`` call; eager ops run synchronously).

Forward time = median of ``--repeats`` calls after one warm-up call. Random weights (seed 0). The
machine is shared: ``load_average_1min`` and ``cpu_s`` (CPU seconds per forward) are reported.

    python benchmarks/rvrt_light_speed.py [--cases graph eager] [--repeats 3] [--out f.json]
"""
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from bench_common import emit  # noqa: E402
from rvrt_speed import measure, parse_args, run_cases  # noqa: E402

CASES = ('graph', 'eager')


def _build_light(num_frame, jit_compile):
    from ascendvsr.config import load_config
    from ascendvsr.models.rvrt_light import build_rvrt_light
    cfg = load_config(os.path.join(ROOT, 'configs', 'rvrt_light.yaml'), [])
    return build_rvrt_light(cfg, num_frame=num_frame)


def main():
    args = parse_args(CASES)
    if args.case:
        print(json.dumps(measure(_build_light, args.case, tuple(args.shape), args.repeats,
                                 'local_attn')))
        return
    emit(dict(model='RVRT-Light', config='configs/rvrt_light.yaml',
              cases=run_cases(__file__, args.cases, args.shape, args.repeats)), args.out)


if __name__ == '__main__':
    main()
