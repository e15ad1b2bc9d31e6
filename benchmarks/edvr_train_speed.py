"""EDVR training throughput (graph-mode step: forward, Charbonnier loss, backward, Adam); JSON.

    python benchmarks/edvr_train_speed.py [--arch m|l|quickstart] [--crop 64] [--batch 4] [--steps 10]

Uses random data of the training shapes (the tf.data pipeline is measured separately by its
prefetch queue never running dry; here only the device step counts). Reports median step time,
output frames per second (= batch / step time), peak RSS.
"""
import argparse
import json
import os
import resource
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

ARCHS = {'m': dict(num_feat=64, num_reconstruct_block=10),
         'l': dict(num_feat=128, num_reconstruct_block=40),
         'quickstart': dict(num_feat=32, deformable_groups=4, num_extract_block=2,
                            num_reconstruct_block=4)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--arch', choices=sorted(ARCHS), default='m')
    ap.add_argument('--crop', type=int, default=64)
    ap.add_argument('--batch', type=int, default=4)
    ap.add_argument('--steps', type=int, default=10)
    ap.add_argument('--no-xla', action='store_true', help='plain-graph deformable conv')
    args = ap.parse_args()
    import keras
    import numpy as np
    import tensorflow as tf
    from ascendcv.runner.losses import charbonnier_loss
    from ascendvsr.models.edvr import EDVR

    keras.utils.set_random_seed(0)
    model = EDVR(jit_compile=not args.no_xla, **ARCHS[args.arch])
    opt = keras.optimizers.Adam(4e-4, beta_1=0.9, beta_2=0.99, epsilon=1e-8)
    variables = model.trainable_variables
    opt.build(variables)
    x = tf.random.uniform([args.batch, 5, args.crop, args.crop, 3], seed=1)
    y = tf.random.uniform([args.batch, args.crop * 4, args.crop * 4, 3], seed=2)

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = charbonnier_loss(model(x, training=True), y, 1e-12, 'sum')
        opt.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    step(x, y).numpy()
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        step(x, y).numpy()
        times.append(time.perf_counter() - t0)
    med = float(np.median(times))
    print(json.dumps(dict(benchmark='edvr_train_speed', arch=args.arch, crop=args.crop,
                          batch=args.batch, xla_dcn=not args.no_xla, steps=args.steps,
                          median_step_s=round(med, 4), frames_per_s=round(args.batch / med, 3),
                          peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                          cpu_count=os.cpu_count()), indent=1))


if __name__ == '__main__':
    main()
