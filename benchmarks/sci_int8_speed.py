"""The real 8-bit path of Q-SCI against float EfficientSCI-S: speed on one 8 x H x W measurement
and output differences (issue #13 item 7).

``--part speed`` (random weights, one process, the variants timed *alternately* so that the
load of other processes inflates them alike):

* ``tf_float``: EfficientSCI-S (32, 8, 2) in TF graph mode (the SCI task's serve computation:
  what ``benchmarks/efficientsci_speed.py`` times);
* ``tf_fakequant``: Q-SCI b8 with the *same* weights, LSQ-calibrated on a 64 x 64 measurement
  (as ``benchmarks/qsci_speed.py``), fake quantization in TF;
* ``tf_int8``: that Q-SCI's twin on oneDNN's int8 convolutions inside the TF graph
  (:func:`ascendvsr.compression.qsci_int8_tf.build_int8_tf`: every quantizer exact, 3-D convs
  as sums of 2-D integer convs over their temporal taps);
* ``ort_int8``: that Q-SCI exported by :func:`ascendvsr.compression.qsci_int8.export_qsci_int8`
  (QLinearConv / MatMulIntegerToFloat in onnxruntime; conv output ranges calibrated on one
  other random measurement of the benchmark size);
* ``ort_qdq_exact`` (``--faithful``): the export with float conv outputs (every quantizer exact,
  float convs on the dequantized integers);
* ``ort_float``: EfficientSCI-S exported by the freezer to ONNX, in onnxruntime.

Reported per variant: ``runs_s``, ``median_s``, ``cpu_s`` (process CPU of the median call: on a
shared machine this is the work itself); ratios of medians to ``tf_float``; output differences
(rel-L2, PSNR over the reference's range) of the ONNX variants against ``tf_fakequant`` and of
``tf_float`` against it (= quantization off: the same weights without quantizers).

``--part accuracy``: the trained small EfficientSCI (``outputs/efficientsci_small``,
``--float-ckpt``) as an 8-bit Q-SCI (the official QAT start: float weights copied, quantizers
LSQ-initialised on one measurement of ``--calib`` -- no QAT), PSNR against the ground truth of
the bundled benchmarks for float TF, fake-quant TF and the two ONNX exports.

Usage::

    python benchmarks/sci_int8_speed.py [--part speed accuracy] [--hw 256] [--runs 3]
        [--faithful] [--out benchmarks/results/sci_int8_speed.json]
"""
import argparse
import os
import sys
import tempfile
import time

import numpy as np

from bench_common import emit, peak_rss_mb, random_measurement, timed_calls

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def _rel(y, ref):
    y, ref = np.asarray(y, np.float64), np.asarray(ref, np.float64)
    return float(np.linalg.norm(y - ref) / np.linalg.norm(ref))


def _psnr(y, ref):
    y, ref = np.asarray(y, np.float64), np.asarray(ref, np.float64)
    mse = float(np.mean((y - ref) ** 2))
    return float(10 * np.log10(np.ptp(ref) ** 2 / mse)) if mse else float('inf')


def _copy_float_weights(src, dst):
    """EfficientSCI weights into the Q-SCI b8 of the same size (same PyTorch names)."""
    from ascendcv.layers.torch_compat import torch_state_variables
    a, b = torch_state_variables(src), torch_state_variables(dst)
    for key, (var, _) in a.items():
        b[key][0].assign(var)
    return len(a)


def _task(name, hw, extra=()):
    from ascendvsr.config import load_config
    from ascendvsr.zoo import get_entry
    cfg = load_config(None, [f'model.name={name}', f'data.eval_in_size=[{hw},{hw}]', *extra])
    return get_entry(name).make_task(cfg)


def _float_onnx(task, model, folder):
    from ascendcv.runner.freezer import export_onnx, freeze
    pb, _ = freeze(task, model, os.path.join(folder, 'EfficientSCI.pb'))
    return export_onnx(pb, os.path.join(folder, 'EfficientSCI.onnx'))


def speed(hw, runs, faithful, workdir):
    import tensorflow as tf

    from ascendcv.runner.onnx_int8 import OnnxModel
    from ascendcv.utils.sci_physics import normalize_measurement_tf
    from ascendvsr.compression.qsci_int8 import export_qsci_int8
    from ascendvsr.compression.qsci_int8_tf import build_int8_tf, int8_tf_report
    from ascendvsr.models.efficientsci import SIZES, EfficientSCI
    from ascendvsr.models.qsci import QSCI
    load = os.getloadavg()[0]
    tf.keras.utils.set_random_seed(0)
    esci = EfficientSCI(*SIZES['S'], name='EfficientSCI')
    qsci = QSCI(*SIZES['S'], bit_depth=8, name='QSCI')
    _copy_float_weights(esci, qsci)
    rng = np.random.default_rng(0)
    small = random_measurement(rng, 64)
    qsci.calibrate((normalize_measurement_tf(*small), small[1]))
    calib = random_measurement(rng, hw)
    meas, mask = random_measurement(rng, hw)
    qtask, etask = _task('Q-SCI', hw), _task('EfficientSCI', hw, ['efficientsci.in_ch=32',
                                                                  'efficientsci.units=8',
                                                                  'efficientsci.group_num=2'])
    exports = {}
    t = time.perf_counter()
    path = os.path.join(workdir, 'QSCI.int8.onnx')
    exports['ort_int8'] = dict(report=export_qsci_int8(qtask, qsci, path, [calib]), path=path)
    exports['ort_int8']['export_s'] = round(time.perf_counter() - t, 1)
    if faithful:
        t = time.perf_counter()
        path = os.path.join(workdir, 'QSCI.qdq.onnx')
        exports['ort_qdq_exact'] = dict(report=export_qsci_int8(qtask, qsci, path, [],
                                                                quantize_outputs=False),
                                        path=path, export_s=round(time.perf_counter() - t, 1))
    exports['ort_float'] = dict(path=_float_onnx(etask, esci, workdir))

    t = time.perf_counter()
    twin = build_int8_tf(qsci)
    exports['tf_int8'] = dict(report=int8_tf_report(twin),
                              build_s=round(time.perf_counter() - t, 1))
    fns = {'tf_float': tf.function(lambda m, k: etask.serve(esci, m, k)),
           'tf_fakequant': tf.function(lambda m, k: qtask.serve(qsci, m, k)),
           'tf_int8': tf.function(lambda m, k: qtask.serve(twin, m, k))}
    for name, e in exports.items():
        if 'path' in e:
            fns[name] = OnnxModel(e['path'])
    feeds = (tf.constant(meas), tf.constant(mask))
    outs, warm = {}, {}
    for name, fn in fns.items():          # warm-up (tracing / session first run)
        t = time.perf_counter()
        outs[name] = np.asarray(fn(*feeds))
        warm[name] = round(time.perf_counter() - t, 3)
    walls = {n: [] for n in fns}
    cpus = {n: [] for n in fns}
    for _ in range(runs):                 # alternate: contention hits every variant alike
        for name, fn in fns.items():
            w, c = timed_calls(lambda: np.asarray(fn(*feeds)), 1)
            walls[name] += w
            cpus[name] += c
    results = {}
    for name in fns:
        order = sorted(range(runs), key=lambda i: walls[name][i])
        mid = order[runs // 2]
        results[name] = dict(runs_s=[round(x, 3) for x in walls[name]],
                             median_s=round(walls[name][mid], 3),
                             cpu_s=round(cpus[name][mid], 3), warmup_s=warm[name])
        if name in exports:
            results[name].update({k: v for k, v in exports[name].items() if k != 'path'})
        if 'path' in exports.get(name, {}):
            results[name]['size_mib'] = round(os.path.getsize(exports[name]['path']) / 2 ** 20, 2)
    base = results['tf_float']['median_s']
    for name in results:
        results[name]['ratio_to_tf_float'] = round(results[name]['median_s'] / base, 3)
        results[name]['cpu_ratio_to_tf_float'] = round(
            results[name]['cpu_s'] / results['tf_float']['cpu_s'], 3)
    ref = outs['tf_fakequant']
    diffs = {f'{n}_vs_tf_fakequant': dict(rel_l2=round(_rel(outs[n], ref), 5),
                                          psnr_db=round(_psnr(outs[n], ref), 2))
             for n in fns if n != 'tf_fakequant'}
    diffs['ort_float_vs_tf_float'] = dict(max_abs=float(np.abs(outs['ort_float'] -
                                                              outs['tf_float']).max()))
    return dict(input=dict(meas=list(meas.shape), mask=list(mask.shape)),
                model='EfficientSCI-S (32, 8, 2) / Q-SCI b8 of the same weights (random)',
                load_before=round(load, 2), results=results, output_differences=diffs,
                peak_rss_mib=round(peak_rss_mb()))


def accuracy(float_ckpt, calib_name, workdir, data_dir):
    import tensorflow as tf

    from ascendcv.dataloader.sci import load_mat
    from ascendcv.runner.checkpoint import build_and_restore
    from ascendcv.runner.onnx_int8 import OnnxModel
    from ascendcv.utils.metrics import psnr_sci
    from ascendcv.utils.sci_physics import normalize_measurement_tf
    from ascendvsr.compression.qsci_int8 import export_qsci_int8
    from ascendvsr.config import load_config
    from ascendvsr.convert.qsci import init_qsci_from_float
    from ascendvsr.models.qsci import QSCI
    from ascendvsr.zoo import get_entry
    cfg = load_config(os.path.join(ROOT, 'configs', 'efficientsci_small.yaml'), [])
    e = cfg.efficientsci
    esci, _ = build_and_restore(get_entry('EfficientSCI').build, cfg, float_ckpt)
    files = {n: load_mat(os.path.join(data_dir, f'{n}_cacti.mat'))
             for n in ('drop40', 'runner40', 'traffic48')}

    def measurements(d):
        b = d['mask'].shape[-1]
        meas = np.transpose(d['meas'], (2, 0, 1)) / 255.0
        orig = d['orig'] / 255.0
        gt = np.stack([orig[..., i * b:(i + 1) * b] for i in range(meas.shape[0])])
        return meas.astype(np.float32), d['mask'], gt

    q = QSCI(e.in_ch, e.units, e.group_num, bit_depth=8, name='QSCI')
    init_qsci_from_float(q, float_ckpt)
    cm, cmask, _ = measurements(files[calib_name])
    q.calibrate((normalize_measurement_tf(cm[:1], cmask), cmask))
    hw = files['drop40']['mask'].shape[0]
    qtask = _task('Q-SCI', hw, [f'qsci.in_ch={e.in_ch}', f'qsci.units={e.units}',
                                f'qsci.group_num={e.group_num}'])
    int8 = os.path.join(workdir, 'small.int8.onnx')
    exact = os.path.join(workdir, 'small.qdq.onnx')
    rep = export_qsci_int8(qtask, q, int8, [(cm[:1], cmask)])
    export_qsci_int8(qtask, q, exact, [], quantize_outputs=False)
    from ascendvsr.compression.qsci_int8_tf import build_int8_tf
    twin = build_int8_tf(q)
    runners = {'tf_float': lambda m, k: qtask.serve(esci, m, k),
               'tf_fakequant': lambda m, k: qtask.serve(q, m, k),
               'tf_int8': tf.function(lambda m, k: qtask.serve(twin, m, k)),
               'ort_int8': OnnxModel(int8), 'ort_qdq_exact': OnnxModel(exact)}
    table = {}
    for name, d in files.items():
        meas, mask, gt = measurements(d)
        row, outs = {}, {}
        for variant, fn in runners.items():
            ys = [np.asarray(fn(tf.constant(meas[i:i + 1]), tf.constant(mask)))[0]
                  for i in range(meas.shape[0])]
            outs[variant] = np.stack(ys)
            row[variant] = round(float(np.mean([psnr_sci(g, y) for g, y in zip(gt, ys)])), 3)
        row['ort_int8_vs_fakequant_rel_l2'] = round(_rel(outs['ort_int8'],
                                                         outs['tf_fakequant']), 5)
        row['ort_qdq_exact_vs_fakequant_rel_l2'] = round(_rel(outs['ort_qdq_exact'],
                                                              outs['tf_fakequant']), 5)
        row['tf_int8_vs_fakequant_rel_l2'] = round(_rel(outs['tf_int8'], outs['tf_fakequant']),
                                                   5)
        table[name] = row
    mean = {v: round(float(np.mean([table[n][v] for n in table])), 3) for v in runners}
    return dict(model=f'small EfficientSCI ({e.in_ch}, {e.units}, {e.group_num}) trained '
                      f'({float_ckpt}) -> Q-SCI b8 (weights copied, LSQ init on {calib_name} '
                      f'measurement 0, no QAT)', psnr_convention='pnp (ground-truth max), '
                                                                  'mean over measurements',
                psnr_db=table, mean_psnr_db=mean, int8_export=rep)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--part', nargs='+', default=['speed', 'accuracy'],
                    choices=['speed', 'accuracy'])
    ap.add_argument('--hw', type=int, default=256)
    ap.add_argument('--runs', type=int, default=3)
    ap.add_argument('--faithful', action='store_true', help='also time the exact QDQ export')
    ap.add_argument('--float-ckpt', default=os.path.join(ROOT, 'outputs', 'efficientsci_small',
                                                         'checkpoints'))
    ap.add_argument('--calib', default='drop40')
    ap.add_argument('--data-dir', default=os.path.join(ROOT, 'data', 'sci'))
    ap.add_argument('--out', default='')
    args = ap.parse_args()
    import onnxruntime
    import tensorflow as tf
    report = dict(benchmark='sci_int8_speed', onnxruntime=onnxruntime.__version__,
                  tensorflow=tf.__version__, threads='defaults (TF and onnxruntime: 2 cores)',
                  note='2-core machine shared with other processes: wall times are inflated; '
                       'the variants run alternately in one process, so ratios are fair')
    with tempfile.TemporaryDirectory() as work:
        if 'speed' in args.part:
            report['speed'] = speed(args.hw, args.runs, args.faithful, work)
            print(report['speed']['results'], file=sys.stderr, flush=True)
        if 'accuracy' in args.part:
            report['accuracy'] = accuracy(args.float_ckpt, args.calib, work, args.data_dir)
    emit(report, args.out)


if __name__ == '__main__':
    main()
