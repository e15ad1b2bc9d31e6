"""One convolution on TF's int8 kernels against float32 and bfloat16
(``ascendcv/layers/int8_conv.py``); JSON out.

Input ``[1, 8, 128, 128, 64]`` (8 frames), 64 outputs, graph mode, the variants alternating in one
process (medians of ``--repeats`` rounds). For each kernel, ``(3, 3, 3)`` and ``(1, 3, 3)``, both
padding 1 in every spatial dimension it spans:

* ``float32`` / ``bfloat16``: the plain :class:`~ascendcv.layers.conv3d.Conv3d` (bfloat16: its
  products in bfloat16, :func:`ascendcv.layers.precision.set_precision`);
* ``fake_quant``: the 8-bit :class:`~ascendcv.layers.fake_quant.Conv3dQ` of the same weights,
  LSQ-initialised on the input;
* ``int8``: its integer twin (:class:`ascendvsr.compression.qsci_int8_tf.IntegerConv3dQ`: the
  quantizing pass, the 2-D integer convolutions over the temporal taps, the epilogue).

Usage::

    python benchmarks/int8_conv_speed.py [--repeats 7]
        [--out benchmarks/results/int8_conv_speed.json]
"""
import argparse
import os
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from bench_common import emit, timed_calls  # noqa: E402


def variants(kernel):
    """``{name: zero-argument callable}`` for one kernel size, and the input shape."""
    import numpy as np
    import tensorflow as tf

    from ascendcv.layers.conv3d import Conv3d
    from ascendcv.layers.fake_quant import Conv3dQ
    from ascendcv.layers.precision import set_precision
    from ascendvsr.compression.qsci_int8_tf import IntegerConv3dQ
    c, shape = 64, (1, 8, 128, 128, 64)
    pad = tuple(1 if k == 3 else 0 for k in kernel)
    x = tf.constant(np.random.default_rng(0).standard_normal(shape).astype(np.float32))
    f32 = Conv3d(c, c, kernel, 1, pad)
    bf16 = Conv3d(c, c, kernel, 1, pad)
    fq = Conv3dQ(c, c, kernel, 1, pad, nbits=8)
    twin = IntegerConv3dQ(c, c, kernel, 1, pad, nbits=8)
    fq(x, training=True)  # LSQ initialisation (the official first iteration)
    twin(x[:, :1], training=True)
    for layer in (bf16, twin):
        for dst, src in zip(layer.weights, fq.weights if layer is twin else f32.weights):
            dst.assign(src)
    set_precision(bf16, 'bfloat16')
    twin.prepare()
    fns = dict(float32=tf.function(lambda: f32(x)), bfloat16=tf.function(lambda: bf16(x)),
               fake_quant=tf.function(lambda: fq(x)), int8=tf.function(lambda: twin(x)))
    ref = fq(x).numpy()
    err = float(np.linalg.norm(twin(x).numpy() - ref) / np.linalg.norm(ref))
    return fns, list(shape), err


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--repeats', type=int, default=7)
    ap.add_argument('--out', default='')
    args = ap.parse_args()
    import tensorflow as tf
    report = dict(benchmark='int8_conv_speed', tensorflow=tf.__version__,
                  load_before=round(os.getloadavg()[0], 2), cases={})
    for kernel in ((3, 3, 3), (1, 3, 3)):
        fns, shape, err = variants(kernel)
        walls = {n: [] for n in fns}
        for fn in fns.values():  # warm-up: tracing, XLA compiles
            fn().numpy()
        for _ in range(args.repeats):  # alternate: the machine's state hits every variant alike
            for name, fn in fns.items():
                walls[name] += timed_calls(lambda: fn().numpy(), 1)[0]
        med = {n: statistics.median(w) for n, w in walls.items()}
        report['cases']['x'.join(map(str, kernel))] = dict(
            input=shape, out_channels=64,
            median_ms={n: round(1e3 * v, 2) for n, v in med.items()},
            ratio_to_float32={n: round(v / med['float32'], 3) for n, v in med.items()},
            int8_vs_fake_quant_rel_l2=err)
        print(kernel, report['cases']['x'.join(map(str, kernel))]['median_ms'], file=sys.stderr)
    emit(report, args.out)


if __name__ == '__main__':
    main()
