"""int8 ONNX: :class:`ascendcv.runner.onnx_int8.OnnxModel`, :func:`quantize_onnx` (static PTQ of
a registered model's freezer export) and the Q-SCI integer export
(:mod:`ascendvsr.compression.qsci_int8`)."""
import collections
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from ascendcv.runner.checkpoint import build_and_restore
from ascendcv.runner.freezer import FrozenGraphModel, export_onnx, freeze
from ascendcv.runner.onnx_int8 import INTEGER_OP_TYPES, OnnxModel, quantize_onnx
from ascendcv.utils.sci_physics import normalize_measurement_tf
from ascendvsr.config import load_config
from ascendvsr.zoo import get_entry

onnx = pytest.importorskip('onnx')
ort = pytest.importorskip('onnxruntime')

HW = 16  # tiny measurements: the graph, not the size, is what is tested


def _psnr(y, ref):
    """PSNR of ``y`` against ``ref`` over the reference's peak-to-peak range (dB)."""
    mse = np.mean((np.asarray(y, np.float64) - ref) ** 2)
    return float(10 * np.log10(np.ptp(ref) ** 2 / mse)) if mse else float('inf')


def _rel(y, ref):
    return float(np.linalg.norm(np.asarray(y, np.float64) - ref) / np.linalg.norm(ref))


def _ort_fused_ops(path):
    """Op counts of the graph onnxruntime actually runs (after its QDQ fusions)."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    opts.optimized_model_filepath = path + '.ort.onnx'
    ort.InferenceSession(path, opts, providers=['CPUExecutionProvider'])
    return collections.Counter(n.op_type for n in onnx.load(path + '.ort.onnx').graph.node)


@pytest.fixture(scope='module')
def esci(tmp_path_factory):
    """Tiny EfficientSCI frozen + exported to ONNX; its example inputs and float output."""
    out = str(tmp_path_factory.mktemp('esci_int8'))
    entry = get_entry('EfficientSCI')
    cfg = load_config(None, ['model.name=EfficientSCI', f'output_dir={out}', *entry.tiny,
                             f'data.eval_in_size=[{HW},{HW}]'])
    task = entry.make_task(cfg)
    tf.keras.utils.set_random_seed(0)
    model, _ = build_and_restore(entry.build, cfg, '')
    pb, _ = freeze(task, model, os.path.join(out, 'EfficientSCI.pb'))
    path = export_onnx(pb, os.path.join(out, 'EfficientSCI.onnx'))
    inputs = [np.asarray(x) for x in task.example_inputs(model)]
    ref = FrozenGraphModel(pb)(*inputs).numpy().astype(np.float64)
    # calibration: two other measurements through the same mask (a "few clips")
    rng = np.random.default_rng(7)
    mask = inputs[1]
    calib = [(np.einsum('nhwb,hwb->nhw', rng.random((1, HW, HW, mask.shape[-1]),
                                                    dtype=np.float32), mask), mask)
             for _ in range(2)]
    return dict(out=out, path=path, inputs=inputs, ref=ref, calib=calib)


def test_onnx_model_runs_the_float_export(esci):
    model = OnnxModel(esci['path'])
    assert model.name == 'EfficientSCI' and model.path == esci['path']
    assert [i['name'] for i in model.meta['inputs']] == ['meas:0', 'mask:0']
    y = model(*esci['inputs'])
    assert isinstance(y, tf.Tensor) and y.shape == esci['ref'].shape
    np.testing.assert_allclose(y.numpy(), esci['ref'], atol=1e-4)
    one_thread = OnnxModel(esci['path'], intra_op_num_threads=1)
    np.testing.assert_allclose(one_thread(*esci['inputs']).numpy(), y.numpy(), atol=1e-5)
    with pytest.raises(ValueError, match=r"takes 2 input\(s\).*got 1"):
        model(esci['inputs'][0])


def test_quantize_onnx_int8_close_to_float(esci):
    out = os.path.join(esci['out'], 'EfficientSCI.int8.onnx')
    report = quantize_onnx(esci['path'], out, esci['calib'])
    # every conv and linear of the model is quantized (QDQ around it), nothing left float
    float_model = onnx.load(esci['path'])
    n_float = collections.Counter(n.op_type for n in float_model.graph.node)
    assert report['quantized'].get('Conv') == n_float['Conv'] > 0
    assert report['quantized'].get('MatMul', 0) >= 2   # qkv, proj (attention matmuls: no weight)
    assert report['float_left'] == []
    assert report['qdq_nodes']['DequantizeLinear'] > 0 and report['size_bytes'] > 0
    assert report['float_ops']['Softmax']['reason'].startswith('softmax')
    meta = json.load(open(os.path.splitext(out)[0] + '.json'))
    assert meta['precision'] == 'int8' and meta['inputs'] == OnnxModel(esci['path']).meta['inputs']
    assert meta['quantization']['quantized'] == report['quantized']
    # onnxruntime really runs integer kernels: the Q/DQ pairs fuse into QLinearConv etc.
    fused = _ort_fused_ops(out)
    assert fused['QLinearConv'] >= n_float['Conv'] - 1, fused
    assert sum(fused[t] for t in INTEGER_OP_TYPES) >= n_float['Conv'] + 1
    model = OnnxModel(out)
    assert model.meta['precision'] == 'int8'
    y = model(*esci['inputs']).numpy()
    # 8-bit activations and weights at every layer of a (random-weight) network: the error
    # vs float is the quantization noise, ~ -48 dB per layer, accumulated over ~15 layers;
    # a wrong scale / zero point / layout gives < 15 dB
    psnr = _psnr(y, esci['ref'])
    assert psnr > 30, psnr


def test_quantize_onnx_keep_float_and_errors(esci, tmp_path):
    out = str(tmp_path / 'kept.int8.onnx')
    float_model = onnx.load(esci['path'])
    convs = [n.name for n in float_model.graph.node if n.op_type == 'Conv']
    report = quantize_onnx(esci['path'], out, esci['calib'][:1], keep_float=(convs[0],))
    assert convs[0] in report['float_left']
    assert report['float_left_reason'][convs[0]] == 'keep_float'
    assert report['quantized']['Conv'] == len(convs) - 1
    with pytest.raises(ValueError, match='int8 needs calibration data'):
        quantize_onnx(esci['path'], str(tmp_path / 'x.onnx'), [])
    with pytest.raises(ValueError, match=r'calibration\[0\] must be a tuple of 2'):
        quantize_onnx(esci['path'], str(tmp_path / 'x.onnx'), [(esci['inputs'][0],)])
    assert not os.path.exists(tmp_path / 'x.onnx')
    with pytest.raises(FileNotFoundError, match='not found'):
        OnnxModel(str(tmp_path / 'missing.onnx'))
    lonely = tmp_path / 'lonely.onnx'
    lonely.write_bytes(open(esci['path'], 'rb').read())
    with pytest.raises(FileNotFoundError, match='missing sidecar'):
        OnnxModel(str(lonely))
    (tmp_path / 'lonely.json').write_text('{"model": "x"}')
    with pytest.raises(ValueError, match='no "inputs"'):
        OnnxModel(str(lonely))


# ---------------------------------------------------------------------- Q-SCI integer path
@pytest.fixture(scope='module')
def qsci(tmp_path_factory):
    """Tiny calibrated 8-bit Q-SCI, its task and inputs, and the float64 fake-quant output
    (the reference free of float32 rounding-boundary flips)."""
    from ascendvsr.models.qsci import QSCI
    out = str(tmp_path_factory.mktemp('qsci_int8'))
    entry = get_entry('Q-SCI')
    cfg = load_config(None, ['model.name=Q-SCI', f'output_dir={out}', 'qsci.in_ch=4',
                             'qsci.units=1', 'qsci.group_num=1', 'qsci.bit_depth=8',
                             f'data.eval_in_size=[{2 * HW},{2 * HW}]'])
    task = entry.make_task(cfg)
    tf.keras.utils.set_random_seed(0)
    model = entry.build(cfg)
    inputs = [np.asarray(x) for x in task.example_inputs(model)]
    model.calibrate((normalize_measurement_tf(inputs[0], inputs[1]), inputs[1]))
    m64 = QSCI(4, 1, 1, bit_depth=8, dtype='float64', name='QSCI')
    for a, b in zip(m64.weights, model.weights):
        a.assign(tf.cast(b, tf.float64))
    y64 = m64((normalize_measurement_tf(*[tf.constant(x, tf.float64) for x in inputs]),
               tf.constant(inputs[1], tf.float64))).numpy()
    return dict(out=out, task=task, model=model, inputs=inputs, y64=y64)


def _integer_convs(path):
    """``[(weight as stored: int8 x scale, weight scale, input scale, input zero point)]`` of
    every Conv of an exported file whose weight is an int8 DequantizeLinear."""
    from onnx import numpy_helper
    graph = onnx.load(path).graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    made = {o: n for n in graph.node for o in n.output}
    out = []
    for node in graph.node:
        dq = made.get(node.input[1]) if node.op_type == 'Conv' else None
        if dq is None or dq.op_type != 'DequantizeLinear':
            continue
        k, scale = inits[dq.input[0]], inits[dq.input[1]]
        src = made[node.input[0]]
        while src.op_type != 'DequantizeLinear':   # through layout ops
            src = made[src.input[0]]
        assert k.dtype == np.int8 and scale.shape == (k.shape[0],)
        out.append((k * scale.reshape(-1, 1, 1, 1, 1), scale, float(inits[src.input[1]]),
                    int(inits[src.input[2]])))
    return out


def test_qsci_int8_export_runs_integer_kernels(qsci):
    from ascendcv.layers.fake_quant import Conv3dQ, quant_range
    from ascendvsr.compression.qsci_int8 import export_qsci_int8
    path = os.path.join(qsci['out'], 'QSCI.int8.onnx')
    report = export_qsci_int8(qsci['task'], qsci['model'], path, [tuple(qsci['inputs'])])
    # 12 convs (fem 3, CFormer 4, last, up, vrm 3) and the attention's 2 linears; fem.0
    # (1-channel input) stays a float conv, vrm.4 (the output) keeps a float output
    assert report['integer'] == {'Conv': 11, 'MatMul': 2}, report
    assert list(report['float_layers']) == ['fem.0']
    assert report['quantized_outputs'] == 10
    fused = _ort_fused_ops(path)
    assert fused['QLinearConv'] == 10 and fused['MatMulIntegerToFloat'] == 2, fused
    meta = OnnxModel(path).meta
    assert meta['precision'] == 'int8' and meta['quantization']['bit_depth'] == 8
    # the integer graph holds exactly the fake-quant model's grids: every stored int8 kernel
    # times its scale is the layer's fake-quantized kernel, every input Q/DQ its step size and
    # zero point (uint8 zero point = z - Qn)
    layers = [l for l in qsci['model']._flatten_layers() if isinstance(l, Conv3dQ)]
    stored = _integer_convs(path)
    assert len(stored) == 11
    for w, scale, x_scale, x_zp in stored:
        kernels = [(l, np.transpose(l.quantized_kernel().numpy(), (4, 3, 0, 1, 2)))
                   for l in layers]
        match = [l for l, k in kernels if k.shape == w.shape and np.allclose(k, w, rtol=1e-6,
                                                                            atol=0)]
        assert len(match) == 1
        act = match[0].act
        qn, _ = quant_range(8, bool(act.signed.numpy()[0] > 0.5))
        np.testing.assert_allclose(scale, match[0].alpha.numpy(), rtol=1e-6)
        np.testing.assert_allclose(x_scale, act.alpha.numpy()[0], rtol=1e-6)
        assert x_zp == round(float(act.zero_point.numpy()[0])) - qn
    # end to end in float32: every rounding-boundary flip (another summation order, the
    # output rounding of the integer convs) cascades through the quantizers of a random
    # network (../shared/fixtures/README_sci.md: 1.4e-2 to 0.26 rel-L2 from a changed conv
    # summation order alone), so only gross errors are testable here (a wrong scale, zero
    # point or layout gives rel-L2 ~ 1); benchmarks/sci_int8_speed.py measures trained weights
    y = OnnxModel(path)(*qsci['inputs']).numpy()
    assert _rel(y, qsci['y64']) < 0.3, _rel(y, qsci['y64'])


def test_qsci_faithful_export_and_errors(qsci, tmp_path):
    from ascendvsr.compression.qsci_int8 import build_int8_export, export_qsci_int8
    path = os.path.join(qsci['out'], 'QSCI.qdq.onnx')
    report = export_qsci_int8(qsci['task'], qsci['model'], path, [], quantize_outputs=False)
    assert report['integer']['Conv'] == 11 and report['quantized_outputs'] == 0
    fused = _ort_fused_ops(path)
    assert fused['QLinearConv'] == 0 and fused['MatMulIntegerToFloat'] == 2
    y = OnnxModel(path)(*qsci['inputs']).numpy()
    assert _rel(y, qsci['y64']) < 0.3
    with pytest.raises(ValueError, match='int8 needs calibration data'):
        export_qsci_int8(qsci['task'], qsci['model'], str(tmp_path / 'q.onnx'), [])
    from ascendvsr.models.qsci import QSCI
    with pytest.raises(ValueError, match='never initialised'):
        build_int8_export(QSCI(4, 1, 1, bit_depth=8))
    with pytest.raises(ValueError, match='takes a Q-SCI'):
        build_int8_export(qsci['task'])
