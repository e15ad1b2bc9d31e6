"""Frozen ``.pb`` inference time vs the live model, EDVR-M on 1x5x180x320x3; JSON.

Cases: the eager model (op by op, XLA-compiled DCN), the same in a ``tf.function`` graph, the
frozen GraphDef as written by ``--mode freeze`` (plain-graph DCN, no XLA clusters), and the
frozen GraphDef run through ``tf.function(jit_compile=True)`` (the whole graph XLA-compiled).
Median of ``--repeats`` after one warm-up.
"""
import argparse
import json
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')


def timed(fn, x, repeats):
    import numpy as np
    np.asarray(fn(x))
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.asarray(fn(x))
        ts.append(time.perf_counter() - t0)
    return round(float(np.median(ts)), 4)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--size', type=int, nargs=2, default=[180, 320])
    ap.add_argument('--repeats', type=int, default=3)
    args = ap.parse_args()
    import keras
    import numpy as np
    import tensorflow as tf
    from ascendcv.runner.freezer import FrozenGraphModel, freeze
    from ascendvsr.config import load_config
    from ascendvsr.models.edvr import EDVR
    from ascendvsr.tasks.edvr import EDVRTask

    keras.utils.set_random_seed(0)
    h, w = args.size
    cfg = load_config(None, [f'data.eval_in_size=[{h},{w}]', 'data.eval_batch_size=1'])
    live = EDVR(jit_compile=True)
    plain = EDVR(jit_compile=False)
    for a, b in zip(live.weights, plain.weights):
        b.assign(a)
    x = np.random.default_rng(0).random((1, 5, h, w, 3), dtype=np.float32)
    res = {}
    res['eager_xla_dcn_s'] = timed(lambda t: live(t), x, args.repeats)
    res['tf_function_xla_dcn_s'] = timed(tf.function(lambda t: live(t)), x, args.repeats)
    res['tf_function_plain_s'] = timed(tf.function(lambda t: plain(t)), x, args.repeats)
    with tempfile.TemporaryDirectory() as tmp:
        pb, _ = freeze(EDVRTask(cfg), plain, os.path.join(tmp, 'EDVR.pb'))
        frozen = FrozenGraphModel(pb)
        res['frozen_pb_s'] = timed(lambda t: frozen(t), x, args.repeats)
        res['frozen_pb_xla_s'] = timed(tf.function(lambda t: frozen(t), jit_compile=True), x,
                                       args.repeats)
        diff = float(np.abs(frozen(x).numpy() - live(x).numpy()).max())
    print(json.dumps(dict(benchmark='edvr_frozen_speed', input=[1, 5, h, w, 3],
                          max_abs_diff_frozen_vs_live=diff, cpu_count=os.cpu_count(), **res),
                     indent=1))


if __name__ == '__main__':
    main()
