"""Run exported ONNX graphs in onnxruntime and quantize them to int8 (static post-training).

* :class:`OnnxModel` runs a ``.onnx`` written by :func:`ascendcv.runner.freezer.export_onnx`
  (or by :func:`quantize_onnx`) with the freezer's ``.json`` sidecar beside it (same stem), with
  the call interface of :class:`ascendcv.runner.freezer.FrozenGraphModel`.
* :func:`quantize_onnx` quantizes the ``Conv`` / ``MatMul`` / ``Gemm`` nodes of a float ONNX
  graph with ``onnxruntime.quantization.quantize_static``: weights int8 per output channel
  (symmetric), activations uint8 per tensor (asymmetric), ranges calibrated on a few inputs.

Format and calibration, chosen by measurement (onnxruntime 1.31, AVX512-VNNI/AMX CPU, 2 cores
shared with other processes):

* **QDQ** (QuantizeLinear/DequantizeLinear pairs around float ops; onnxruntime fuses
  ``DQ -> Conv -> Q`` into ``QLinearConv`` and ``DQ -> MatMul`` into ``MatMulIntegerToFloat``
  when it loads the model). A chain of 64-channel convs runs as fast as with the QOperator
  format (2-D 0.008 s vs float 0.025 s per 1x64x180x320 conv, 3-D 0.015 vs 0.063); tiny EDVR
  (``num_feat`` 8) on 1x5x180x320, alternating runs: float 11.9-14.6 s, QDQ 9.3-12.5 s,
  QOperator 9.5-13.3 s. The QDQ file also stays a standard graph other runtimes read, so it is
  the default (``quant_format='qoperator'`` writes QLinearConv / QLinearMatMul nodes).
* **MinMax** calibration: on that EDVR, PSNR against float 70.5 / 70.5 / 71.0 dB for MinMax /
  entropy / percentile (QDQ), i.e. within 0.5 dB, with MinMax the fastest to calibrate
  (64 s vs 119 s / 76 s on two clips); ``calibrate_method`` switches.

What stays float (and why) is reported per op type, see :data:`FLOAT_REASONS`: element-wise
ops, resampling and gathers (the deformable convolutions' bilinear sampling: integer kernels
would quantize the sampling coordinates, and gathers move data, they do no arithmetic an
integer kernel could speed up), softmax / normalisation (accuracy), and every node matched by
``keep_float``.
"""
import collections
import json
import os
import shutil

import numpy as np
import tensorflow as tf

from ascendcv.runner.freezer import FrozenGraphModel
from ascendcv.utils.fileio import atomic_write_bytes, atomic_write_via

__all__ = ['OnnxModel', 'quantize_onnx', 'sidecar_path', 'QUANTIZED_OP_TYPES',
           'INTEGER_OP_TYPES', 'FLOAT_REASONS', 'MAX_IR_VERSION']

QUANTIZED_OP_TYPES = ('Conv', 'MatMul', 'Gemm')
"""The float op types :func:`quantize_onnx` turns into integer ones (where it pays: the
multiply-accumulate heavy ops; everything else is memory bound)."""

INTEGER_OP_TYPES = ('QLinearConv', 'ConvInteger', 'QLinearMatMul', 'MatMulInteger',
                    'MatMulIntegerToFloat', 'QGemm', 'DynamicQuantizeMatMul')
"""Op types that run integer arithmetic in onnxruntime."""

MAX_IR_VERSION = 13
"""onnx 1.23 stamps IR version 14 on models it creates; onnxruntime 1.31 loads at most 13 (checked),
so quantized files are written with at most this IR version (opset 17 needs IR 8)."""

FLOAT_REASONS = {
    'Gather': 'index gathers (deformable-conv / flow-warp sampling): data movement, no MACs',
    'GatherND': 'index gathers (deformable-conv sampling): data movement, no MACs',
    'GatherElements': 'index gathers (sampling): data movement, no MACs',
    'GridSample': 'bilinear sampling: coordinates need float precision',
    'Resize': 'interpolation: memory bound, coordinates in float',
    'Softmax': 'softmax: accuracy (exponentials of small differences)',
    'LayerNormalization': 'normalisation: accuracy (mean/variance)',
    'InstanceNormalization': 'normalisation: accuracy (mean/variance)',
    'BatchNormalization': 'normalisation (folded into the conv when frozen)',
    'ReduceMean': 'reductions: accuracy, memory bound',
    'Floor': 'sampling-coordinate arithmetic: must stay exact',
    'Ceil': 'sampling-coordinate arithmetic: must stay exact',
}
_DEFAULT_REASON = 'element-wise / layout op: memory bound, int8 would only add (de)quantization'


def sidecar_path(path):
    """The freezer's sidecar ``<stem>.json`` of ``path``."""
    return os.path.splitext(path)[0] + '.json'


def _load_meta(path, what):
    meta_path = sidecar_path(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f'{what} not found: {path}')
    if not os.path.isfile(meta_path):
        raise FileNotFoundError(f'{path}: missing sidecar {meta_path} (written by --mode freeze '
                                f'next to the .pb and .onnx)')
    with open(meta_path) as f:
        meta = json.load(f)
    if 'inputs' not in meta or 'output' not in meta:
        raise ValueError(f'{meta_path} has no "inputs"/"output" entries: freeze the model '
                         f'again with --mode freeze')
    return meta


class OnnxModel(FrozenGraphModel):
    """Run an exported ``.onnx`` (float or int8) in onnxruntime on the CPU. A
    :class:`FrozenGraphModel` to the tasks (they read the sidecar ``meta`` of exported models).

    ``model(*inputs)`` takes one array per graph input in the sidecar's order (the serving
    signature) and returns a ``tf.Tensor`` (the graph's first output); ``meta`` is the sidecar
    (``meta.get('precision')`` is ``'int8'`` for a file written by :func:`quantize_onnx`).

    Args:
        path: the ``.onnx`` file (its sidecar ``<stem>.json`` must be beside it).
        intra_op_num_threads (int): onnxruntime's intra-op threads (0 = its default, one per
            physical core).
    """

    def __init__(self, path, intra_op_num_threads=0):  # (FrozenGraphModel.__init__ reads a .pb)
        import onnxruntime as ort
        self.meta = _load_meta(path, 'ONNX model')
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(intra_op_num_threads)
        try:
            self.session = ort.InferenceSession(path, opts, providers=['CPUExecutionProvider'])
        except Exception as err:  # onnxruntime's InvalidGraph / InvalidProtobuf / Fail
            raise ValueError(f'{path} cannot be loaded by onnxruntime: {err}') from err
        self._inputs = self.session.get_inputs()
        if len(self._inputs) != len(self.meta['inputs']):
            raise ValueError(f'{path} has {len(self._inputs)} graph input(s) '
                             f'{[i.name for i in self._inputs]} but its sidecar lists '
                             f'{len(self.meta["inputs"])}: export it again')
        self.name = self.meta['model']
        self.path = path

    def __call__(self, *inputs, training=False):
        specs = self.meta['inputs']
        if len(inputs) != len(specs):
            raise ValueError(f'{self.path} takes {len(specs)} input(s) '
                             f'{[i["name"] for i in specs]}; got {len(inputs)}')
        feed = {i.name: np.asarray(x, dtype=spec['dtype'])
                for i, spec, x in zip(self._inputs, specs, inputs)}
        return tf.convert_to_tensor(self.session.run(None, feed)[0])


class _Reader:
    """``CalibrationDataReader`` over a list of input tuples (sidecar order)."""

    def __init__(self, names, dtypes, calibration):
        self._items = [dict(zip(names, (np.asarray(x, d) for x, d in zip(item, dtypes))))
                       for item in calibration]
        self._it = iter(self._items)

    def get_next(self):
        return next(self._it, None)

    def rewind(self):
        self._it = iter(self._items)


def _op_counts(model):
    return collections.Counter(n.op_type for n in model.graph.node)


def _weighted_nodes(model):
    """Names of the Conv/MatMul/Gemm nodes whose weight (input 1) is a DequantizeLinear output
    or an integer initializer (i.e. quantized), and of those left float."""
    produced = {o: n for n in model.graph.node for o in n.output}
    inits = {i.name for i in model.graph.initializer}
    quantized, left = [], []
    for n in model.graph.node:
        if n.op_type not in QUANTIZED_OP_TYPES:
            continue
        src = produced.get(n.input[1]) if len(n.input) > 1 else None
        if src is not None and src.op_type == 'DequantizeLinear':
            quantized.append(n.name)
        elif len(n.input) > 1 and (n.input[1] in inits or src is not None):
            left.append(n.name)
    return quantized, left


def quantize_onnx(float_path, out_path, calibration, keep_float=(), per_channel=True, *,
                  quant_format='qdq', calibrate_method='minmax', intra_op_num_threads=0):
    """Static int8 post-training quantization of the Conv / MatMul / Gemm nodes of an ONNX file.

    Args:
        float_path: float ``.onnx`` written by the freezer (its sidecar beside it).
        out_path: the int8 ``.onnx`` (written atomically, with its sidecar: the float one plus
            ``"precision": "int8"`` and ``"quantization"``, this report).
        calibration: non-empty list of input tuples, one array per graph input in the
            sidecar's order (a few clips: ranges are the min/max seen on them).
        keep_float: node-name substrings; matching nodes stay float (e.g. ``'conv_last'``).
        per_channel (bool): weights quantized per output channel (else per tensor).
        quant_format: ``'qdq'`` (default, see the module docstring) or ``'qoperator'``.
        calibrate_method: ``'minmax'`` (default), ``'entropy'`` or ``'percentile'``.
        intra_op_num_threads (int): threads of the calibration session (0 = default).

    Returns a report dict: ``quantized`` (counts per float op type quantized),
    ``integer_ops`` / ``qdq_nodes`` (counts in the written graph), ``float_left`` (Conv /
    MatMul / Gemm node names left float), ``float_ops`` (op type -> ``{count, reason}`` of the
    other float ops), ``size_bytes`` / ``float_size_bytes``, ``format``, ``calibration``.
    """
    import onnx
    from onnxruntime.quantization import (CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    if calibration is None or len(calibration) == 0:
        raise ValueError('int8 needs calibration data: quantize_onnx(calibration=...) got no '
                         'input tuples (give a few clips of the evaluation data)')
    meta = _load_meta(float_path, 'float ONNX model')
    specs = meta['inputs']
    for k, item in enumerate(calibration):
        if not isinstance(item, (tuple, list)) or len(item) != len(specs):
            size = len(item) if hasattr(item, '__len__') else '?'
            raise ValueError(f'calibration[{k}] must be a tuple of {len(specs)} array(s) '
                             f'{[s["name"] for s in specs]}; got {type(item).__name__} of '
                             f'length {size}')
    formats = {'qdq': QuantFormat.QDQ, 'qoperator': QuantFormat.QOperator}
    methods = {'minmax': CalibrationMethod.MinMax, 'entropy': CalibrationMethod.Entropy,
               'percentile': CalibrationMethod.Percentile}
    if quant_format not in formats:
        raise ValueError(f'quant_format must be one of {sorted(formats)}; got {quant_format!r}')
    if calibrate_method not in methods:
        raise ValueError(f'calibrate_method must be one of {sorted(methods)}; got '
                         f'{calibrate_method!r}')
    if isinstance(keep_float, str):
        keep_float = (keep_float,)

    model = onnx.load(float_path)
    graph_inputs = [i.name for i in model.graph.input
                    if i.name not in {t.name for t in model.graph.initializer}]
    if len(graph_inputs) != len(specs):
        raise ValueError(f'{float_path} has {len(graph_inputs)} graph inputs, its sidecar '
                         f'{len(specs)}: export it again')
    candidates = [n.name for n in model.graph.node if n.op_type in QUANTIZED_OP_TYPES]
    excluded = [name for name in candidates if any(s in name for s in keep_float)]
    float_counts = _op_counts(model)

    def write(tmp):
        work = tmp + '.work'
        os.makedirs(work)
        try:
            src = os.path.join(work, 'float.onnx')
            model.ir_version = min(model.ir_version, MAX_IR_VERSION)
            onnx.save(model, src)
            reader = _Reader(graph_inputs, [s['dtype'] for s in specs], calibration)
            quantize_static(src, tmp, reader, quant_format=formats[quant_format],
                            op_types_to_quantize=list(QUANTIZED_OP_TYPES),
                            per_channel=per_channel, activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8, nodes_to_exclude=excluded,
                            calibrate_method=methods[calibrate_method],
                            calibration_providers=['CPUExecutionProvider'],
                            extra_options={'CalibTensorRangeSymmetric': False,
                                           'WeightSymmetric': True,
                                           'ActivationSymmetric': False})
            q = onnx.load(tmp)
            q.ir_version = min(q.ir_version, MAX_IR_VERSION)
            onnx.save(q, tmp)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    atomic_write_via(out_path, write)
    qmodel = onnx.load(out_path)
    counts = _op_counts(qmodel)
    if quant_format == 'qdq':
        quantized_names, left = _weighted_nodes(qmodel)
        by_type = collections.Counter(n.op_type for n in qmodel.graph.node
                                      if n.name in set(quantized_names))
    else:
        left = [n.name for n in qmodel.graph.node if n.op_type in QUANTIZED_OP_TYPES]
        by_type = collections.Counter({t: float_counts[t] - counts.get(t, 0)
                                       for t in QUANTIZED_OP_TYPES if float_counts[t]})
    skip = set(QUANTIZED_OP_TYPES) | set(INTEGER_OP_TYPES) | {'QuantizeLinear',
                                                               'DequantizeLinear'}
    float_ops = {t: dict(count=c, reason=FLOAT_REASONS.get(t, _DEFAULT_REASON))
                 for t, c in sorted(counts.items()) if t not in skip}
    report = dict(format=quant_format, calibration=dict(method=calibrate_method,
                                                        inputs=len(calibration)),
                  per_channel=bool(per_channel), activations='uint8 per tensor (asymmetric)',
                  weights='int8 per output channel (symmetric)' if per_channel
                  else 'int8 per tensor (symmetric)',
                  quantized={t: int(c) for t, c in sorted(by_type.items()) if c},
                  integer_ops={t: counts[t] for t in INTEGER_OP_TYPES if counts.get(t)},
                  qdq_nodes={t: counts[t] for t in ('QuantizeLinear', 'DequantizeLinear')
                             if counts.get(t)},
                  keep_float=list(keep_float), float_left=sorted(left),
                  float_left_reason={n: ('keep_float' if n in excluded else
                                         'not quantizable by onnxruntime (no constant weight or '
                                         'unsupported attributes)') for n in sorted(left)},
                  float_ops=float_ops, size_bytes=os.path.getsize(out_path),
                  float_size_bytes=os.path.getsize(float_path))
    qmeta = dict(meta, precision='int8', float_model=os.path.basename(float_path),
                 quantization=report)
    atomic_write_bytes(sidecar_path(out_path), json.dumps(qmeta, indent=1).encode())
    return report
