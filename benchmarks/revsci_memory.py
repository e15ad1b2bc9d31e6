"""RevSCI memory and speed: peak RSS of one training step, reversible vs ordinary backprop.

For every (num_block, mode) pair a fresh Python process builds RevSCI (re_3dcnn, num_group 2)
for a ``size x size`` measurement with 8 frames, batch 1, and runs two training steps
(``tf.function``: forward, MSE loss, gradient, Adam update -- what the trainer runs). Each
process reports, in MiB:

* ``rss_import``: RSS after importing TensorFlow and the model code (the post-import baseline);
* ``rss_built``: RSS after building the model and the optimizer, before running anything;
* ``peak_rss``: the process's peak RSS (``resource.getrusage``) after the two steps -- the raw
  number, which includes tracing the step function;
* ``peak_minus_import`` / ``peak_minus_built``: ``peak_rss`` minus those baselines (the memory
  the step itself needs, activations included);
* ``second_step_peak``: peak RSS during the second step alone (the kernel's peak mark is reset
  before it; ``*_minus_before``: above the RSS right before it -- ~0 because TF's CPU allocator
  keeps the memory of the first step);
* ``tensor_peak``: peak bytes of live tensors during the second step, from TF's CPU allocator
  (``tf.config.experimental.get_memory_info``) -- activations, gradients, workspaces, without
  the runtime's own memory (graph, kernels, Python) which also grows with the number of blocks;
* ``step_s``: wall time of the second (traced) step (noisy on a shared machine).

Two more processes repeat the reversible step at 32x32 with the fewest and most blocks: there the
activations are negligible, so their RSS difference is what the TF runtime itself adds per block
(graph, kernels, optimizer slots) -- part of the RSS growth at 256x256 that is not activations.

Then one more process times the forward pass of the README configuration (18 blocks, 2 groups)
on one 8x256x256 measurement (``model(meas_re)`` eagerly and through ``tf.function``), to compare
with the official PyTorch code on this machine (4.3 s, peak 834 MiB; see
``/work/shared/fixtures/revsci_readme_config.json``).

Usage::

    python benchmarks/revsci_memory.py [--blocks 2 6 12 18] [--size 256] [--out revsci_memory.json]

Writes JSON (to stdout, and to ``--out`` if given). The target of the reversible design: with
reversible backprop the peak grows by <= 10 % from 2 to 18 blocks (reported as
``reversible_growth_2_to_max``).
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MASK = os.path.join(ROOT, '..', 'shared', 'data', 'sci', 'masks', 'revsci_train_mask.mat')


def _rss_mib():
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) / 1024
    return float('nan')


def _peak_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _reset_peak():
    """Reset the kernel's peak-RSS mark (VmHWM) to the current RSS; False if not possible."""
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        return True
    except OSError:
        return False


def _hwm_mib():
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmHWM:'):
                return int(line.split()[1]) / 1024
    return float('nan')


def _tensor_mib(peak=False, reset_peak=False):
    """TF's CPU allocator: bytes in live tensors (or the peak since the last reset), in MiB."""
    import tensorflow as tf
    if reset_peak:
        tf.config.experimental.reset_memory_stats('CPU:0')
    info = tf.config.experimental.get_memory_info('CPU:0')
    return info['peak' if peak else 'current'] / 2 ** 20


def _mask(size):
    import numpy as np
    if os.path.isfile(MASK) and size <= 256:
        from ascendcv.dataloader.sci import load_mask
        return load_mask(MASK)[:size, :size]
    return (np.random.default_rng(0).random((size, size, 8)) > 0.5).astype(np.float32)


def worker_train(num_block, reversible, size, batch):
    import numpy as np
    import tensorflow as tf
    import keras
    from ascendcv.utils.sci_physics import normalize_measurement
    from ascendvsr.models.revsci import RevSCI
    rss_import = _rss_mib()

    keras.utils.set_random_seed(0)
    model = RevSCI(num_block=num_block, num_group=2, mask_size=(size, size),
                   reversible=reversible, name='RevSCI')
    mask = _mask(size)
    model.set_mask(mask)
    optimizer = keras.optimizers.Adam(2e-4)
    optimizer.build(model.trainable_variables)
    rng = np.random.default_rng(0)
    video = rng.random((batch, 8, size, size), dtype=np.float32)
    meas = np.sum(video * mask.transpose(2, 0, 1)[None], axis=1)
    meas_re = tf.constant(normalize_measurement(meas, mask))
    video = tf.constant(video)
    rss_built = _rss_mib()

    @tf.function
    def train_step(x, gt):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(model(x, training=True) - gt))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    t0 = time.perf_counter()
    train_step(meas_re, video).numpy()
    first = time.perf_counter() - t0
    peak_first = _peak_mib()
    rss_before = _rss_mib()
    reset = _reset_peak()
    tensors_before = _tensor_mib(reset_peak=True)
    t0 = time.perf_counter()
    train_step(meas_re, video).numpy()
    second = time.perf_counter() - t0
    tensors_peak = _tensor_mib(peak=True)
    peak = max(_peak_mib(), peak_first)
    step_peak = _hwm_mib() if reset else float('nan')
    return dict(num_block=num_block, mode='reversible' if reversible else 'ordinary', size=size,
                batch=batch, rss_import=round(rss_import, 1), rss_built=round(rss_built, 1),
                peak_rss=round(peak, 1), peak_minus_import=round(peak - rss_import, 1),
                peak_minus_built=round(peak - rss_built, 1),
                second_step_peak=round(step_peak, 1),
                second_step_peak_minus_before=round(step_peak - rss_before, 1),
                tensor_peak=round(tensors_peak, 1),
                tensor_peak_minus_before=round(tensors_peak - tensors_before, 1),
                first_step_s=round(first, 2),
                step_s=round(second, 2))


def worker_forward(num_block, size, repeats=3):
    import numpy as np
    import tensorflow as tf
    from ascendvsr.models.revsci import RevSCI
    rss_import = _rss_mib()
    model = RevSCI(num_block=num_block, num_group=2, mask_size=(size, size), name='RevSCI')
    model.set_mask(_mask(size))
    x = tf.constant(np.random.default_rng(0).random((1, size, size), dtype=np.float32))
    n_params = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
    result = dict(num_block=num_block, num_group=2, size=size, n_params=n_params,
                  rss_import=round(rss_import, 1))
    t0 = time.perf_counter()
    model(x).numpy()
    result['eager_first_call_s'] = round(time.perf_counter() - t0, 2)
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        model(x).numpy()
        runs.append(time.perf_counter() - t0)
    result['eager_runs_s'] = [round(r, 2) for r in runs]
    result['eager_median_s'] = round(float(np.median(runs)), 2)
    fn = tf.function(lambda v: model(v, training=False))
    fn(x).numpy()
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(x).numpy()
        runs.append(time.perf_counter() - t0)
    result['graph_runs_s'] = [round(r, 2) for r in runs]
    result['graph_median_s'] = round(float(np.median(runs)), 2)
    result['peak_rss'] = round(_peak_mib(), 1)
    return result


def _run(args):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''),
               TF_CPP_MIN_LOG_LEVEL='3')
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), *args], env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        return dict(args=args, error=proc.stderr.strip().splitlines()[-5:],
                    returncode=proc.returncode)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--blocks', type=int, nargs='+', default=[2, 6, 12, 18])
    p.add_argument('--size', type=int, default=256)
    p.add_argument('--batch', type=int, default=1)
    p.add_argument('--modes', nargs='+', default=['reversible', 'ordinary'])
    p.add_argument('--skip-forward', action='store_true', help='skip the README forward timing')
    p.add_argument('--out', default='')
    p.add_argument('--worker', choices=['train', 'forward'], help=argparse.SUPPRESS)
    p.add_argument('--num-block', type=int, default=2, help=argparse.SUPPRESS)
    p.add_argument('--mode', default='reversible', help=argparse.SUPPRESS)
    a = p.parse_args()

    if a.worker == 'train':
        print(json.dumps(worker_train(a.num_block, a.mode == 'reversible', a.size, a.batch)))
        return
    if a.worker == 'forward':
        print(json.dumps(worker_forward(a.num_block, a.size)))
        return

    import platform
    report = dict(benchmark='revsci_memory', python=platform.python_version(),
                  nproc=os.cpu_count(), loadavg_before=os.getloadavg(), train_step=[])
    for mode in a.modes:
        for nb in a.blocks:
            r = _run(['--worker', 'train', '--num-block', str(nb), '--mode', mode,
                      '--size', str(a.size), '--batch', str(a.batch)])
            print(json.dumps(r), file=sys.stderr)
            report['train_step'].append(r)
    for mode in a.modes:
        rows = sorted((r for r in report['train_step'] if r.get('mode') == mode),
                      key=lambda r: r['num_block'])
        if len(rows) >= 2:
            lo, hi = rows[0], rows[-1]
            report[f'{mode}_growth_{lo["num_block"]}_to_{hi["num_block"]}'] = dict(
                peak_rss=round(hi['peak_rss'] / lo['peak_rss'] - 1, 4),
                peak_minus_import=round(hi['peak_minus_import'] / lo['peak_minus_import'] - 1, 4),
                tensor_peak=round(hi['tensor_peak'] / lo['tensor_peak'] - 1, 4))
    # the same steps on a 32x32 measurement, where activations are negligible: what the TF
    # runtime itself (graph, kernels, optimizer slots) adds per block
    if 'reversible' in a.modes and len(a.blocks) >= 2:
        small = [_run(['--worker', 'train', '--num-block', str(nb), '--mode', 'reversible',
                       '--size', '32', '--batch', str(a.batch)])
                 for nb in (min(a.blocks), max(a.blocks))]
        report['runtime_overhead_32x32'] = dict(
            blocks=[min(a.blocks), max(a.blocks)], peak_rss=[r.get('peak_rss') for r in small],
            growth_mib=round(small[1]['peak_rss'] - small[0]['peak_rss'], 1)
            if all('peak_rss' in r for r in small) else None)
    if not a.skip_forward:
        r = _run(['--worker', 'forward', '--num-block', '18', '--size', '256'])
        r['official_pytorch'] = dict(median_s=4.28, peak_rss_mib=834.0)
        report['readme_forward'] = r
    report['loadavg_after'] = os.getloadavg()
    text = json.dumps(report, indent=1)
    print(text)
    if a.out:
        with open(a.out, 'w') as f:
            f.write(text + '\n')


if __name__ == '__main__':
    main()
