"""Reduced-precision inference, per model and mode: median forward time, peak RSS and the
output's PSNR against float32; prints one JSON document (issue #15).

Modes: ``float32`` and ``bfloat16`` (the TF graph, :mod:`ascendcv.layers.precision`, the
family's own float32 layers kept) and ``int8`` (the frozen float32 graph exported to ONNX,
quantized statically by :func:`ascendcv.runner.onnx_int8.quantize_onnx` on the benchmark input
and run by onnxruntime). Every (model, mode) runs in a fresh process with the same random
weights (seed 0) on real content: REDS-layout frames of ``data/sample`` for the video models,
the Traffic benchmark measurement of ``data/sci`` for the SCI models, frame indices for NeRV.
``psnr_vs_float32_db`` compares the mode's output with the float32 output (peak 1); the drop
against ground truth on evaluation data is the guard's (``--mode eval model.precision=...``).

    python benchmarks/precision_speed.py [--cases edvr_m revsci nerv_s efficientsci_s rvrt]
        [--modes float32 bfloat16 int8] [--repeats 3] [--out benchmarks/results/precision_speed.json]
"""
import argparse
import glob
import os
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_common import emit, peak_rss_mb, run_child, timed_calls  # noqa: E402

# case: (config, model name, overrides, official PyTorch figure on this kind of machine)
CASES = {
    'edvr_m': ('edvr.yaml', 'EDVR', [],
               dict(source='BasicSR EDVR-M forward 1x5x180x320 (issue #15)', seconds=12.76)),
    'revsci': ('revsci.yaml', 'RevSCI', [],
               dict(source='official RevSCI 18 blocks, 1x256x256 (issue #15)', seconds=4.3)),
    'nerv_s': ('nerv_s.yaml', 'NeRV', ['data.eval_batch_size', '1'],
               dict(source='official NeRV-S decoding (issue #15)', fps=0.53, seconds=1.88)),
    'efficientsci_s': ('efficientsci_s.yaml', 'EfficientSCI', [],
                       dict(source='official EfficientSCI-S 8x256x256 (issue #13)', seconds=12.1)),
    'efficientsci_b': ('efficientsci_b.yaml', 'EfficientSCI', [],
                       dict(source='official EfficientSCI-B 8x256x256 (issue #13)', seconds=27.3)),
    'rvrt': ('rvrt_reds.yaml', 'RVRT', [],
             dict(source='official RVRT 1x6x64x64 -> 256x256 (issue #14)', seconds=17.1)),
}
MODES = ('float32', 'bfloat16', 'int8')


def real_input(case, model, task):
    """The benchmark input of ``case`` (numpy arrays in serving order)."""
    import imageio.v3 as iio
    import numpy as np
    if case in ('edvr_m', 'rvrt'):
        t, h, w = (5, 180, 320) if case == 'edvr_m' else (6, 64, 64)
        files = sorted(glob.glob(os.path.join(ROOT, 'data/sample/images/000/truth/*.png')))[:t]
        if len(files) < t:
            raise SystemExit('data/sample is missing: run the quick start once (bash quickstart.sh)')
        frames = np.stack([iio.imread(f)[:h, :w] for f in files]).astype(np.float32) / 255.0
        return [frames[None]]
    if case == 'revsci' or case.startswith('efficientsci'):
        import scipy.io as sio
        m = sio.loadmat(os.path.join(ROOT, 'data/sci/traffic48_cacti.mat'))
        meas = m['meas'][..., 0].astype(np.float32)[None] / 255.0  # sci.max_value
        mask = m['mask'].astype(np.float32)
        return [meas, mask]
    return [np.array([3.0], np.float32)]  # NeRV: one frame index


def child(case, mode, repeats, out_npz):
    """Measure one (case, mode) in this process; returns a dict, writes the output to npz."""
    import keras
    import numpy as np
    import tensorflow as tf
    from ascendvsr.config import load_config
    from ascendvsr.zoo import get_entry
    from ascendcv.layers.precision import set_precision
    config, name, overrides, _ = CASES[case]
    # any frame size in the exported graph: int8 calibrates on a crop (onnxruntime's calibration
    # keeps every activation of a call: EDVR-M at 180x320 would need tens of GB)
    video = case in ('edvr_m', 'rvrt')
    cfg = load_config(os.path.join(ROOT, 'configs', config),
                      list(overrides) + (['data.eval_in_size', '[-1,-1]'] if video else []))
    entry = get_entry(name)
    task = entry.make_task(cfg)
    keras.utils.set_random_seed(0)
    # int8 goes through ONNX: the plain graph (no XLA functions), as the freezer builds it
    model = entry.build(cfg, **(dict(jit_compile=False) if mode == 'int8' else {}))
    inputs = real_input(case, model, task)
    res = dict(case=case, mode=mode, model=name, config=config,
               input=[list(x.shape) for x in inputs])
    if mode == 'bfloat16':
        split = set_precision(model, 'bfloat16', task.keep_float('bfloat16'))
        res.update(bf16_layers=len(split['reduced']), float32_layers=split['float32'])
    if mode == 'int8':
        from ascendcv.runner.freezer import export_onnx, freeze
        from ascendcv.runner.onnx_int8 import OnnxModel, quantize_onnx
        work = tempfile.mkdtemp(prefix='precision_bench_')
        pb, _ = freeze(task, model, os.path.join(work, f'{name}.pb'))
        export_onnx(pb, os.path.join(work, f'{name}.onnx'))
        t0 = time.perf_counter()
        calib = [tuple(x[..., :64, :64, :] if video else x for x in inputs)]
        report = quantize_onnx(os.path.join(work, f'{name}.onnx'),
                               os.path.join(work, f'{name}.int8.onnx'), calib,
                               keep_float=task.keep_float('int8'))
        res['calibration_input'] = [list(x.shape) for x in calib[0]]
        res.update(quantize_s=round(time.perf_counter() - t0, 1), quantization=report)
        fn = OnnxModel(os.path.join(work, f'{name}.int8.onnx'))
        run = lambda: np.asarray(fn(*inputs))  # noqa: E731
    else:
        serve = tf.function(lambda *xs: task.serve(model, *xs))
        tensors = [tf.constant(x) for x in inputs]
        run = lambda: serve(*tensors).numpy()  # noqa: E731
    t0 = time.perf_counter()
    y = run()
    res['first_call_s'] = round(time.perf_counter() - t0, 2)
    walls, cpus = timed_calls(run, repeats)
    res.update(forward_s=round(statistics.median(walls), 3),
               forward_min_max_s=[round(min(walls), 3), round(max(walls), 3)],
               cpu_s=round(statistics.median(cpus), 3), peak_rss_mb=round(peak_rss_mb(), 1),
               load_average_1min=round(os.getloadavg()[0], 2))
    np.savez(out_npz, y=np.asarray(y, np.float32))
    return res


def psnr(a, b):
    import numpy as np
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float('inf') if mse == 0 else 10 * np.log10(1.0 / mse)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--cases', nargs='+', default=list(CASES), choices=list(CASES))
    ap.add_argument('--modes', nargs='+', default=list(MODES), choices=MODES)
    ap.add_argument('--repeats', type=int, default=3)
    ap.add_argument('--out', default='')
    ap.add_argument('--child', nargs=3, help=argparse.SUPPRESS)  # case mode out.npz
    a = ap.parse_args()
    if a.child:
        import json
        print(json.dumps(child(a.child[0], a.child[1], a.repeats, a.child[2])))
        return
    import numpy as np
    from ascendcv.layers.precision import cpu_flags
    flags = sorted(cpu_flags() & {'avx512_bf16', 'amx_bf16', 'avx512_vnni', 'amx_int8', 'avx_vnni'})
    report = dict(cpu_flags=flags, threads=os.cpu_count(), cases={})
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3')
    with tempfile.TemporaryDirectory() as tmp:
        for case in a.cases:
            rows, outs = {}, {}
            for mode in a.modes:
                npz = os.path.join(tmp, f'{case}_{mode}.npz')
                rows[mode] = run_child(__file__, ['--repeats', a.repeats, '--child', case, mode,
                                                  npz], env=env)
                if os.path.exists(npz):
                    outs[mode] = np.load(npz)['y']
                print(f'{case} {mode}: {rows[mode].get("forward_s", rows[mode])}', file=sys.stderr)
            if 'float32' in outs:
                for mode, y in outs.items():
                    if mode != 'float32':
                        rows[mode]['psnr_vs_float32_db'] = round(psnr(y, outs['float32']), 2)
            official = CASES[case][3]
            for mode, row in rows.items():
                if 'forward_s' in row:
                    row['ratio_to_official'] = round(row['forward_s'] / official['seconds'], 3)
                    if 'float32' in rows and 'forward_s' in rows['float32']:
                        row['speedup_vs_float32'] = round(rows['float32']['forward_s']
                                                          / row['forward_s'], 2)
            report['cases'][case] = dict(official_pytorch=official, modes=rows)
    emit(report, a.out)


if __name__ == '__main__':
    main()
