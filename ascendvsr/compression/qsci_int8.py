"""The real low-bit path of Q-SCI: export a calibrated fake-quant Q-SCI so that onnxruntime runs
its convolutions and linears on integer kernels.

Q-SCI's fake quantization (:mod:`ascendcv.layers.fake_quant`) maps every conv / linear input to
``x_q = (q - z) a`` with integers ``q`` in ``[Qn, Qp]`` and every weight to ``w_q = k alpha_o``
with integers ``k`` in ``[-2^(b-1), 2^(b-1) - 1]``. Both grids are exactly what ONNX
``QuantizeLinear`` / ``DequantizeLinear`` represent (activation: uint8 with scale ``a`` and
zero point ``z - Qn``; weight: int8 per output channel, scale ``alpha_o``, zero point 0), so

* the activation quantizer of a conv / linear becomes a ``Q -> DQ`` pair (tf2onnx converts the
  ``FakeQuantWithMinMaxArgs`` op this export writes), bit depths below 8 with a ``Clip`` to
  ``[(Qn - z) a, (Qp - z) a]`` first (4-bit values in 8-bit containers);
* the fake-quantized kernel is stored as its integers ``k`` (int8 initializer, ``DQ`` per output
  channel) and the conv bias as int32 on the grid ``a alpha_o`` (what QLinearConv adds).

onnxruntime fuses ``DQ(x), DQ(w), DQ(b) -> Conv -> Q`` into ``QLinearConv`` (uint8 x int8,
int32 accumulation, VNNI/AMX) and ``DQ(x), DQ(w) -> MatMul`` into ``MatMulIntegerToFloat``.

Where the integer path departs from the fake-quant model (measured by
``benchmarks/sci_int8_speed.py``; tested in ``tests/runner/test_onnx_int8.py``):

1. **Conv outputs** (``quantize_outputs=True``, default): ``QLinearConv`` writes uint8, so each
   conv output gets one more 8-bit rounding (per tensor, range = min/max over the calibration
   inputs, zero included) that the fake-quant model does not have (it keeps the conv output in
   float up to the next layer's input quantizer). This is what buys the integer kernel. The last
   conv (``vrm.4`` / ``vrm_conv3_*``, the reconstruction itself) keeps a float output, and the
   first (``fem.0``, 1 input channel: onnxruntime's int8 conv is slower than its float conv
   there) stays a float conv on its exactly quantized input (:data:`FLOAT_CONVS`).
   ``quantize_outputs=False`` exports the faithful graph: every quantizer exact, the convs run
   as float convs on the dequantized integers (onnxruntime cannot fuse a conv without an
   output Q), the linears still as ``MatMulIntegerToFloat``: the fake-quant model up to float
   summation order and rounding-boundary cases (``round(x/a + z)`` vs ``round(x/a) + z``).
2. **Tolerance**: the stored integer grids equal the model's exactly (kernels bit for bit up to
   the 1-ulp ``grad_scale`` step difference, activation step sizes and zero points); end to end
   in float32 no tolerance below a few percent holds for *any* second implementation, ours
   included: a 1e-7 change (another conv summation order) flips one activation code, and the
   flips cascade through the following quantizers (``../shared/fixtures/README_sci.md``:
   1.4e-2 to 0.26 rel-L2 from a changed summation order alone). The meaningful figure is the
   reconstruction quality: on the trained small EfficientSCI as an 8-bit Q-SCI the int8 path is
   within 0.1 dB PSNR (against the ground truth) of the fake-quant model on the three bundled
   benchmarks (``benchmarks/results/sci_int8_speed.json``, ``accuracy``).
3. **Per-channel activation quantizers**: the official quantizers have one step size and zero
   point per input channel; an integer conv takes one per tensor. After the official LSQ
   initialisation (:func:`ascendcv.layers.fake_quant.calibrate_quantizers`) every channel holds
   the same value, so the export is exact; a quantizer whose channels differ (after
   quantization-aware training) is exported as the model's own float fake quantization and its
   conv stays a float conv (``float_layers`` of the report). No integer conv reproduces
   different input scales per channel without an extra rounding of the weights.
4. **Attention**: ``v_act`` and ``attn_act`` (per head; per tensor when the heads agree) become
   Q/DQ pairs, ``q_act``/``k_act`` stay the model's float fake-quant ops (with Q/DQ on both,
   onnxruntime runs ``q k^T`` as an integer matmul behind an explicit uint8 transpose of ``k``,
   slower than the float batched matmul: measured), the softmax and the ``8 x 8`` per-pixel
   matmuls stay float (memory bound: no integer kernel speeds them up).
5. Step sizes: the model computes with ``grad_scale(alpha)``, which may differ from ``alpha``
   by one ulp; the export uses ``alpha``.

Measured (``benchmarks/results/sci_int8_speed.json``; one 8 x 256 x 256 measurement, random
weights, the variants alternating in one process, quiet 2-core machine): float EfficientSCI-S
in TF 5.90 s, fake-quant Q-SCI b8 in TF 8.87 s, this int8 export in onnxruntime 5.92 s (85
QLinearConv, 32 MatMulIntegerToFloat), float EfficientSCI-S in onnxruntime 11.12 s. The integer
kernels make onnxruntime 1.9x faster than its float graph, but only as fast as our float TF
model: onnxruntime runs this network's float parts (the attention's 7-D transposes, the
fake-quant q/k chains, element-wise residual sums) slower than TF. The TF integer twin of the
same model (:mod:`ascendvsr.compression.qsci_int8_tf`) takes 4.40 s.
"""
import collections
import json
import os

import numpy as np
import tensorflow as tf

from ascendcv.layers.fake_quant import Conv3dQ, LinearQ, quant_range
from ascendcv.layers.torch_compat import torch_state_variables
from ascendcv.utils.fileio import atomic_write_bytes, atomic_write_via, remove_path, temp_path
from ascendvsr.layers.qsci_blocks import QuantLayerFactory, QuantTimesAttention3D
from ascendvsr.models.qsci import QSCI

__all__ = ['Int8ExportFactory', 'QSCIInt8Export', 'build_int8_export', 'copy_into_twin',
           'calibrate_outputs',
           'integerize_onnx', 'export_qsci_int8']

FLOAT_OUTPUT_CONVS = ('vrm.4', 'vrm_conv3_1', 'vrm_conv3_2')
"""Convs whose output stays float (the reconstruction itself: no 8-bit rounding of it)."""

FLOAT_CONVS = ('fem.0', 'fem_conv1_1', 'fem_conv1_2')
"""Convs left float (on their exactly quantized input): the first conv sees the 1-channel
measurement, where onnxruntime's int8 conv is slower than its float one (measured at 64 x 64:
0.19 s vs < 0.045 s; its kernels want many input channels)."""


def _per_tensor(act):
    """``(a, z, qn, qp)`` of an :class:`ActQ` whose channels share one step size and zero
    point, with ``0 <= z - qn <= 255`` (a uint8 zero point); None otherwise."""
    alpha = act.alpha.numpy().astype(np.float64)
    zp = np.round(act.zero_point.numpy().astype(np.float64))
    if not (np.all(alpha == alpha[0]) and np.all(zp == zp[0])) or alpha[0] <= 0:
        return None
    qn, qp = quant_range(act.nbits, bool(act.signed.numpy()[0] > 0.5))
    z = float(zp[0])
    if not 0 <= z - qn <= 255:
        return None
    return float(alpha[0]), z, qn, qp


def export_fake_quant(act, grid, x):
    """``act``'s fake quantization of ``x``: with a per-tensor ``grid`` ``(a, z, qn, qp)`` as
    ``FakeQuantWithMinMaxArgs`` on the uint8 grid ``a (u - (z - qn))`` (tf2onnx: Q/DQ), bit
    depths below 8 clamped to ``[(qn - z) a, (qp - z) a]`` first; else the model's own float
    fake quantization."""
    if grid is None:
        return act(x, training=False)
    a, z, qn, qp = grid
    if qp - qn < 255:  # lower bit depth in a uint8 container: clamp to its range first
        x = tf.clip_by_value(x, (qn - z) * a, (qp - z) * a)
    return tf.quantization.fake_quant_with_min_max_args(
        x, min=(qn - z) * a, max=(qn - z + 255) * a, num_bits=8, narrow_range=False)


class _ExportQuant:
    """What the export conv / linear add to the fake-quant layers: the activation quantizer as
    ``FakeQuantWithMinMaxArgs`` (-> ONNX Q/DQ), the kernel as a constant, and (convs) the
    calibrated output quantization."""

    quantize_output = False

    def __init__(self, *args, **kwargs):  # cooperative: the fake-quant layer is next in the MRO
        super().__init__(*args, **kwargs)
        self.kernel_q = None      # fake-quantized kernel (numpy), set by prepare()
        self.act_grid = None      # (a, z, qn, qp) or None (float fake quant)
        self.out_range = None     # (lo, hi) of the output quantization, or None
        self.recording = None     # [lo, hi] being recorded by calibrate_outputs()

    def prepare(self):
        """Freeze the quantizer state into constants (after the weights are loaded)."""
        self.kernel_q = self.quantized_kernel(False).numpy()
        self.act_grid = _per_tensor(self.act)

    def export_act(self, x):
        return export_fake_quant(self.act, self.act_grid, x)

    def export_output(self, y):
        if self.recording is not None:
            lo, hi = float(tf.reduce_min(y)), float(tf.reduce_max(y))
            self.recording[0], self.recording[1] = min(self.recording[0], lo), max(
                self.recording[1], hi)
        if self.out_range is not None:
            lo, hi = self.out_range
            y = tf.quantization.fake_quant_with_min_max_args(y, min=lo, max=hi, num_bits=8,
                                                             narrow_range=False)
        return y

    def _exporting(self, training):
        return self.kernel_q is not None and self.fake_quant and not training


class ExportConv3dQ(_ExportQuant, Conv3dQ):
    """:class:`Conv3dQ` for the int8 export (same weights and names)."""

    def call(self, x, training=None):
        if not self._exporting(training):
            return super().call(x, training=training)
        padding = self._tf_padding
        if self._explicit_pad is not None:  # pad first: Q/DQ must feed the Conv directly
            x, padding = tf.pad(x, self._explicit_pad), 'VALID'  # (0 is on every grid)
        y = tf.nn.conv3d(self.export_act(x), tf.constant(self.kernel_q, self.compute_dtype),
                         strides=(1, *self.stride, 1), padding=padding,
                         dilations=(1, *self.dilation, 1))
        if self.bias is not None:
            y = tf.nn.bias_add(y, self.bias)
        return self.export_output(y)


class ExportLinearQ(_ExportQuant, LinearQ):
    """:class:`LinearQ` for the int8 export (output float: ``MatMulIntegerToFloat``)."""

    def call(self, x, training=None):
        if not self._exporting(training):
            return super().call(x, training=training)
        y = tf.matmul(self.export_act(x), tf.constant(self.kernel_q, self.compute_dtype))
        return y + self.bias if self.bias is not None else y


class ExportTimesAttention3D(QuantTimesAttention3D):
    """:class:`QuantTimesAttention3D` for the int8 export: ``q/k/v_act`` and ``attn_act`` as
    Q/DQ pairs where their heads share one step size and zero point (else the float fake
    quantization); the 8 x 8 per-pixel matmuls and the softmax stay float."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.grids = None

    def prepare(self):
        # q / k keep the float fake quantization: with Q/DQ on both, onnxruntime runs the
        # scores q k^T as an integer matmul behind an explicit uint8 transpose of k, slower
        # than the float batched matmul (measured); v and the probabilities go through Q/DQ
        self.grids = {n: None if n in ('q_act', 'k_act') else _per_tensor(getattr(self, n))
                      for n in ('q_act', 'k_act', 'v_act', 'attn_act')}

    def _fq(self, name, x):
        act = getattr(self, name)
        if self.grids is None or not act.fake_quant:
            return act(x)
        return export_fake_quant(act, self.grids[name], x)

    def transform_qkv(self, q, k, v):
        return (self._fq('q_act', self.moveq(q)), self._fq('k_act', self.movek(k)),
                self._fq('v_act', v))

    def transform_attn(self, attn):
        return self._fq('attn_act', attn)


class Int8ExportFactory(QuantLayerFactory):
    """:class:`QuantLayerFactory` making the export layers."""

    conv3d_class = ExportConv3dQ
    linear_class = ExportLinearQ
    attention_class = ExportTimesAttention3D


class QSCIInt8Export(QSCI):
    """:class:`QSCI` built with :class:`Int8ExportFactory` (same module tree and weights)."""

    def build_layers(self, factory):
        return super().build_layers(Int8ExportFactory.like(factory))

    def export_layers(self):
        """``{name: layer}`` of the export convs / linears (PyTorch module names, e.g.
        ``'fem.0'``, ``'resdnet_list.0.cformer_list.1.tsab.qkv'``)."""
        return {layer.torch_name: layer for layer in self._flatten_layers(include_self=False)
                if isinstance(layer, _ExportQuant)}


def build_int8_export(model):
    """The :class:`QSCIInt8Export` twin of a calibrated :class:`QSCI` ``model`` (weights and
    quantizer state copied by PyTorch name, constants prepared)."""
    twin = copy_into_twin(model, QSCIInt8Export)
    for layer in twin._flatten_layers(include_self=False):
        if isinstance(layer, (_ExportQuant, ExportTimesAttention3D)):
            layer.prepare()
    return twin


def copy_into_twin(model, twin_class):
    """A ``twin_class`` (a :class:`QSCI` subclass) of ``model``'s configuration with its
    weights and quantizer state copied by PyTorch name; refuses a model that is not a
    calibrated, quantized Q-SCI."""
    if not isinstance(model, QSCI):
        raise ValueError(f'the int8 export takes a Q-SCI model; got {type(model).__name__}')
    if not model.fake_quant:
        raise ValueError('the int8 export needs the quantizers on (qsci.quantize=True)')
    left = model.uninitialized_quantizers()
    if left:
        raise ValueError(f'the int8 export needs a calibrated Q-SCI: {len(left)} quantizers '
                         f'were never initialised ({", ".join(left[:4])} ...)')
    twin = twin_class(model.in_ch, model.units, model.group_num, model.color_ch,
                      bit_depth=model.bit_depth, compress_ratio=model.compress_ratio,
                      name=model.name)
    src, dst = torch_state_variables(model), torch_state_variables(twin)
    if set(src) != set(dst):
        raise RuntimeError(f'export twin differs from the model: {sorted(set(src) ^ set(dst))[:6]}')
    for key, (var, _) in src.items():
        dst[key][0].assign(var)
    return twin


def calibrate_outputs(twin, serve, calibration, float_outputs=FLOAT_OUTPUT_CONVS):
    """Set every conv's output range to the min/max (zero included) of its output over
    ``calibration`` (``serve(twin, *inputs)`` run eagerly); convs whose path contains one of
    ``float_outputs`` keep a float output. Returns ``{path: (lo, hi)}``."""
    convs = {p: l for p, l in twin.export_layers().items() if isinstance(l, ExportConv3dQ)}
    for layer in convs.values():
        layer.out_range, layer.recording = None, [0.0, 0.0]
    try:
        for inputs in calibration:
            serve(twin, *[tf.constant(x) for x in inputs])
    finally:
        ranges = {p: tuple(l.recording) for p, l in convs.items()}
        for layer in convs.values():
            layer.recording = None
    for path, layer in convs.items():
        lo, hi = ranges[path]
        if not any(s in path for s in float_outputs) and hi > lo:
            layer.out_range = (lo, hi)
    return {p: l.out_range for p, l in convs.items()}


# ---------------------------------------------------------------------- ONNX rewrite
def _producers(graph):
    return {o: n for n in graph.node for o in n.output}


def _dq_input(node, producers, inits):
    """``(scale, zero point)`` of the per-tensor DequantizeLinear feeding ``node.input[0]``
    (through Transpose / Reshape), or None."""
    src = producers.get(node.input[0])
    while src is not None and src.op_type in ('Transpose', 'Reshape', 'Identity'):
        src = producers.get(src.input[0])
    if src is None or src.op_type != 'DequantizeLinear':
        return None
    from onnx import numpy_helper
    scale = numpy_helper.to_array(inits[src.input[1]]) if src.input[1] in inits else None
    if scale is None or scale.size != 1:
        return None
    return float(scale.reshape(()))


def integerize_onnx(model, kernels):
    """Store the fake-quantized weights of an exported ONNX model as integers.

    Args:
        model: ``onnx.ModelProto`` (tf2onnx output of a :class:`QSCIInt8Export`), changed in
            place.
        kernels: ``{path: (kernel_q, alpha)}``: each layer's fake-quantized kernel (our
            layout: conv ``(kd, kh, kw, in, out)``, linear ``(in, out)``) and its step sizes.

    Every ``Conv`` / ``MatMul`` whose weight initializer equals one of ``kernels`` (in ONNX
    layout) gets the weight as int8 + ``DequantizeLinear`` (per output channel); a Conv fed by
    a per-tensor ``DequantizeLinear`` also its bias as int32 on the grid ``a alpha_o``.
    Returns ``{'Conv': n, 'MatMul': m, 'float': [paths not found or with a float input]}``.
    """
    from onnx import helper, numpy_helper
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    producers = _producers(graph)
    by_shape = collections.defaultdict(list)
    for path, (kq, alpha) in kernels.items():
        onnx_w = np.transpose(kq, (kq.ndim - 1, kq.ndim - 2, *range(kq.ndim - 2))) \
            if kq.ndim > 2 else kq  # conv (..., in, out) -> (out, in, ...); MatMul as is
        by_shape[onnx_w.shape].append((path, onnx_w, np.asarray(alpha, np.float32)))
    done, counts, new_nodes = set(), collections.Counter(), []
    for node in graph.node:
        if node.op_type not in ('Conv', 'MatMul') or len(node.input) < 2 \
                or node.input[1] not in inits:
            continue
        w = numpy_helper.to_array(inits[node.input[1]])
        match = [c for c in by_shape.get(w.shape, []) if np.array_equal(c[1], w)]
        if not match:
            continue
        path, _, alpha = match[0]
        x_scale = _dq_input(node, producers, inits)
        if x_scale is None:
            continue  # float activation (per-channel quantizer): the conv stays float
        axis = 0 if node.op_type == 'Conv' else 1
        shape = [-1 if i == axis else 1 for i in range(w.ndim)]
        k = np.round(w / alpha.reshape(shape))
        if np.abs(k * alpha.reshape(shape) - w).max() > 1e-6 * max(np.abs(w).max(), 1e-30) \
                or k.min() < -128 or k.max() > 127:
            raise ValueError(f'{path}: the exported weight is not on its int8 grid')
        base = node.input[1]
        graph.initializer.extend([
            numpy_helper.from_array(k.astype(np.int8), base + '_int8'),
            numpy_helper.from_array(alpha, base + '_scale'),
            numpy_helper.from_array(np.zeros(alpha.shape, np.int8), base + '_zp')])
        new_nodes.append(helper.make_node('DequantizeLinear', [base + '_int8', base + '_scale',
                                                               base + '_zp'], [base + '_dq'],
                                          axis=axis, name=base + '_DequantizeLinear'))
        node.input[1] = base + '_dq'
        if node.op_type == 'Conv' and len(node.input) > 2 and node.input[2] in inits:
            b = numpy_helper.to_array(inits[node.input[2]]).astype(np.float64)
            b_scale = (x_scale * alpha.astype(np.float64)).astype(np.float32)
            b_int = np.round(b / b_scale)
            if np.abs(b_int).max() < 2 ** 31 - 1:
                bb = node.input[2]
                graph.initializer.extend([
                    numpy_helper.from_array(b_int.astype(np.int32), bb + '_int32'),
                    numpy_helper.from_array(b_scale, bb + '_scale'),
                    numpy_helper.from_array(np.zeros(alpha.shape, np.int32), bb + '_zp')])
                new_nodes.append(helper.make_node(
                    'DequantizeLinear', [bb + '_int32', bb + '_scale', bb + '_zp'],
                    [bb + '_dq'], axis=0, name=bb + '_DequantizeLinear'))
                node.input[2] = bb + '_dq'
        counts[node.op_type] += 1
        done.add(path)
    # new DQ nodes first (topological order: they only read initializers)
    old = list(graph.node)
    del graph.node[:]
    graph.node.extend(new_nodes + old)
    used = {i for n in graph.node for i in n.input}
    keep = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    return dict(counts, float=sorted(set(kernels) - done))


def export_qsci_int8(task, model, onnx_path, calibration, quantize_outputs=True,
                     float_outputs=FLOAT_OUTPUT_CONVS, float_convs=FLOAT_CONVS, opset=17):
    """Export a calibrated Q-SCI to an integer-kernel ONNX file (see the module docstring).

    Args:
        task: the SCI task (serving signature, ``serve``, sidecar entries), e.g. ``QSciTask``.
        model: a calibrated :class:`QSCI` (loaded checkpoint or after ``calibrate``).
        onnx_path: output ``.onnx`` (atomic; sidecar ``.json`` with ``"precision": "int8"``).
        calibration: input tuples ``(meas [N, H, W], mask [H, W, B])`` for the conv output
            ranges (needed with ``quantize_outputs``).
        quantize_outputs (bool): 8-bit conv outputs (integer QLinearConv) or float outputs
            (faithful QDQ graph, float convs).
        float_outputs: conv paths whose output stays float (with ``quantize_outputs``).
        float_convs: conv names left float convs (on their quantized input; output float).

    Returns the report: ``integer`` (Conv / MatMul stored as integers), ``float_layers``
    (name -> why), ``quantized_outputs`` (convs with an 8-bit output), ``qdq_nodes``,
    ``size_bytes``.
    """
    import onnx

    from ascendcv.runner.freezer import export_onnx, freeze
    from ascendcv.runner.onnx_int8 import MAX_IR_VERSION, sidecar_path
    if quantize_outputs and not calibration:
        raise ValueError('int8 needs calibration data: export_qsci_int8(calibration=...) got no '
                         'input tuples (the conv output ranges are calibrated on them)')
    twin = build_int8_export(model)
    if quantize_outputs:
        calibrate_outputs(twin, task.serve, calibration, tuple(float_outputs) +
                          tuple(float_convs))
    layers = twin.export_layers()
    kernels = {p: (l.kernel_q, l.alpha.numpy())
               for p, l in layers.items() if p not in float_convs}
    work = temp_path(onnx_path, 'export')  # hidden folder beside the output
    os.makedirs(work)
    try:
        pb = os.path.join(work, f'{model.name}.pb')
        _, meta = freeze(task, twin, pb)
        export_onnx(pb, os.path.join(work, f'{model.name}.onnx'), opset)
        proto = onnx.load(os.path.join(work, f'{model.name}.onnx'))
    finally:
        remove_path(work)
    report = integerize_onnx(proto, kernels)
    proto.ir_version = min(proto.ir_version, MAX_IR_VERSION)
    atomic_write_via(onnx_path, lambda tmp: onnx.save(proto, tmp))
    ops = collections.Counter(n.op_type for n in proto.graph.node)
    reasons = {p: ('first conv of the 1-channel input: the int8 kernel is slower there'
                   if p in float_convs else 'per-channel activation quantizer (channels differ):'
                   ' no per-tensor integer input') for p in report['float']}
    reasons.update({p: 'first conv of the 1-channel input: the int8 kernel is slower there'
                    for p in float_convs if p in layers})
    report = dict(integer={k: v for k, v in report.items() if k != 'float'},
                  float_layers=reasons,
                  quantized_outputs=sum(getattr(l, 'out_range', None) is not None
                                        for l in layers.values()),
                  quantize_outputs=bool(quantize_outputs), bit_depth=model.bit_depth,
                  qdq_nodes={t: ops[t] for t in ('QuantizeLinear', 'DequantizeLinear')},
                  size_bytes=os.path.getsize(onnx_path))
    meta = dict(meta, precision='int8', quantization=dict(report, method='qsci_int8'))
    atomic_write_bytes(sidecar_path(onnx_path), json.dumps(meta, indent=1).encode())
    return report
