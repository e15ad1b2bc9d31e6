"""Q-SCI on TF's integer kernels (:mod:`ascendcv.layers.int8_conv`,
:mod:`ascendvsr.compression.qsci_int8_tf`): the integer convolution against the integer
arithmetic it stands for, every integer layer against its fake-quant layer on the same input
(8-bit and the < 8-bit module tree), the twin end to end, frozen, and through
``model.precision=int8``; the fallbacks to the float fake quantization."""
import os

import numpy as np
import pytest
import tensorflow as tf

from ascendcv.layers.int8_conv import IntegerConv, integer_kernels_available
from ascendcv.utils.sci_physics import normalize_measurement_tf
from ascendvsr.config import load_config
from ascendvsr.zoo import get_entry

OK, WHY = integer_kernels_available()
pytestmark = pytest.mark.skipif(not OK, reason=WHY)

HW = 16


def _reference(codes, zu, a, k, step, bias, stride, dilation):
    """float64 convolution of the dequantized codes with the fake-quantized kernel."""
    x = (codes.astype(np.float64) - zu) * a
    w = k.astype(np.float64) * step
    spatial = k.shape[:-2]  # dilate the kernel with zeros (TF's CPU Conv3D has no dilation)
    wd = np.zeros([(n - 1) * d + 1 for n, d in zip(spatial, dilation)] + list(k.shape[-2:]))
    wd[tuple(slice(None, None, d) for d in dilation)] = w
    conv = tf.nn.conv3d if k.ndim == 5 else tf.nn.conv2d
    y = conv(tf.constant(x), tf.constant(wd), strides=[1, *stride, 1], padding='VALID').numpy()
    return y + bias


@pytest.mark.parametrize('kernel,stride,dilation', [
    ((3, 3), (1, 1), (1, 1)), ((3, 3), (2, 2), (1, 1)), ((3, 3), (1, 1), (2, 2)),
    ((3, 3, 3), (1, 1, 1), (1, 1, 1)), ((3, 7, 7), (1, 2, 2), (1, 1, 1)),
    ((3, 3, 3), (2, 1, 1), (2, 1, 1)), ((1, 3, 3), (1, 1, 1), (1, 1, 1)),
    ((1, 1, 1), (1, 1, 1), (1, 1, 1))])
def test_integer_conv_is_the_integer_arithmetic(kernel, stride, dilation):
    """Taps summed in int32 and the affine epilogue give the float64 convolution of the
    dequantized codes (2-D, 3-D, strided and dilated in depth, depth-1 kernels)."""
    rng = np.random.default_rng(len(kernel) * 7 + stride[0])
    cin, cout = 6, 5
    shape = (2, 7, 11, 10, cin) if len(kernel) == 3 else (2, 11, 10, cin)
    codes = rng.integers(0, 256, shape).astype(np.uint8)
    k = rng.integers(-128, 128, (*kernel, cin, cout)).astype(np.float64)
    step = rng.uniform(1e-3, 1e-2, cout)
    bias = rng.standard_normal(cout)
    a, zu = 0.0173, 37.0
    conv = IntegerConv(k, step, bias, stride, dilation)
    y = conv(tf.constant(codes), tf.constant(a, tf.float32), tf.constant(zu, tf.float32))
    ref = _reference(codes, zu, a, k, step, bias, stride, dilation)
    assert y.shape == ref.shape
    assert np.linalg.norm(y.numpy() - ref) / np.linalg.norm(ref) < 1e-6


def test_integer_conv_refuses_what_it_cannot_hold():
    with pytest.raises(ValueError, match='integers in'):
        IntegerConv(np.full((3, 3, 2, 2), 200.0), np.ones(2))
    with pytest.raises(ValueError, match='2-D .* or 3-D'):
        IntegerConv(np.ones((3, 2, 2)), np.ones(2))
    with pytest.raises(ValueError, match='overflow int32'):
        IntegerConv(np.ones((3, 9, 9, 1024, 1)), np.ones(1))


def _tiny(bits, in_ch=4, units=1, group_num=1, hw=2 * HW):
    entry = get_entry('Q-SCI')
    cfg = load_config(None, ['model.name=Q-SCI', f'qsci.in_ch={in_ch}', f'qsci.units={units}',
                             f'qsci.group_num={group_num}', f'qsci.bit_depth={bits}',
                             f'data.eval_in_size=[{hw},{hw}]'])
    task = entry.make_task(cfg)
    tf.keras.utils.set_random_seed(bits)
    model = entry.build(cfg)
    inputs = [np.asarray(x) for x in task.example_inputs(model)]
    model.calibrate((normalize_measurement_tf(inputs[0], inputs[1]), inputs[1]))
    return entry, cfg, task, model, inputs


@pytest.mark.parametrize('bits', [8, 4])
def test_every_integer_layer_equals_its_fake_quant_layer(bits, monkeypatch):
    """Teacher-forced: each conv / linear of the twin, given the input the twin's forward hands
    it, equals the fake-quant computation of that input (4-bit: the parallel 8-bit branches
    and pixel-unshuffle tree)."""
    import ascendvsr.compression.qsci_int8_tf as M
    _, _, task, model, inputs = _tiny(bits, in_ch=8, units=2, group_num=2)
    twin = M.build_int8_tf(model)
    report = M.int8_tf_report(twin)
    assert report['float_layers'] == {} and report['integer'] == len(twin.integer_layers())
    seen = {}
    for cls in (M.IntegerConv3dQ, M.IntegerLinearQ):
        def call(self, x, training=None, _cls=cls, _orig=cls.call):
            y = _orig(self, x, training)
            ref = super(_cls, self).call(x, training=training)
            seen[self.torch_name] = float(tf.norm(y - ref) / tf.norm(ref))
            return y
        monkeypatch.setattr(cls, 'call', call)
    task.serve(twin, *[tf.constant(x) for x in inputs])
    assert len(seen) == report['integer']
    assert max(seen.values()) < 1e-5, sorted(seen.items(), key=lambda kv: -kv[1])[:3]


def test_twin_end_to_end_frozen_and_through_model_precision(tmp_path):
    """The twin's output is the fake-quant model's (up to float32 code flips), its frozen graph
    holds oneDNN's integer convolutions and reproduces it, and ``model.precision=int8`` of
    the Q-SCI task runs the twin."""
    from ascendcv.runner.checkpoint import save_checkpoint
    from ascendcv.runner.freezer import FrozenGraphModel, freeze
    from ascendcv.runner.logging_utils import get_logger
    from ascendcv.runner.precision import reduced_model
    from ascendvsr.compression.qsci_int8_tf import QSCIInt8TF
    entry, cfg, task, model, inputs = _tiny(8)
    twin = task.integer_model(model)
    assert isinstance(twin, QSCIInt8TF)
    feeds = [tf.constant(x) for x in inputs]
    y_fq = np.asarray(task.serve(model, *feeds), np.float64)
    y_int = np.asarray(tf.function(lambda *x: task.serve(twin, *x))(*feeds), np.float64)
    psnr = 10 * np.log10(np.ptp(y_fq) ** 2 / np.mean((y_int - y_fq) ** 2))
    assert psnr > 40, psnr

    pb, meta = freeze(task, twin, str(tmp_path / 'Q-SCI.pb'), precision='int8')
    assert meta['precision'] == 'int8'
    graph = tf.compat.v1.GraphDef()
    with open(pb, 'rb') as f:
        graph.ParseFromString(f.read())
    nodes = list(graph.node) + [n for fn in graph.library.function for n in fn.node_def]
    assert sum(n.op == 'QuantizedConv2DWithBias' for n in nodes) >= len(twin.integer_layers())
    y_pb = FrozenGraphModel(pb)(*inputs).numpy()
    assert np.abs(y_pb - y_int).max() < 1e-5

    ckpt = save_checkpoint(model, str(tmp_path / 'ckpt' / 'ckpt-1'))
    cfg.defrost()
    cfg.model.precision = 'int8'
    cfg.precision.allow_fallback = False
    cfg.freeze()
    reduced, precision = reduced_model(cfg, task, entry.build, ckpt,
                                       get_logger('test', os.devnull), 'int8')
    assert precision == 'int8' and isinstance(reduced, QSCIInt8TF)
    assert np.abs(np.asarray(task.serve(reduced, *feeds)) - y_int).max() < 1e-5

    # --mode freeze: the .pb holds the integer graph, no calibration data or onnxruntime needed
    from ascendcv.runner.freezer import export_and_check
    cfg.defrost()
    cfg.model.checkpoint, cfg.output_dir = ckpt, str(tmp_path / 'freeze')
    cfg.precision.guard, cfg.export.onnx, cfg.precision.calibration_batches = False, False, 0
    cfg.freeze()
    result = export_and_check(cfg, task, entry.build, get_logger('test', os.devnull))
    assert result['precision'] == 'int8' and result['pb_max_abs_diff'] < 1e-5
    assert FrozenGraphModel(result['pb']).meta['precision'] == 'int8'
    assert 'int8_onnx' not in result


def test_fallbacks_keep_the_fake_quantization():
    """A quantizer whose channels differ, or whose zero point leaves 0 without a code, keeps
    the layer's float fake quantization (and says why); an uncalibrated model is refused."""
    from ascendvsr.compression.qsci_int8_tf import build_int8_tf, int8_tf_report
    from ascendvsr.models.qsci import QSCI
    _, _, task, model, inputs = _tiny(8)
    layers = {l.torch_name: l for l in model._flatten_layers(include_self=False)
              if getattr(l, 'torch_name', '') in ('resdnet_list.0.last_conv', 'up_conv')}
    alpha = layers['up_conv'].act.alpha
    alpha.assign(alpha * np.linspace(1.0, 1.5, alpha.shape[0]).astype(np.float32))
    zp = layers['resdnet_list.0.last_conv'].act.zero_point
    zp.assign(tf.fill(zp.shape, 300.0))
    twin = build_int8_tf(model)
    left = int8_tf_report(twin)['float_layers']
    assert set(left) == {'up_conv', 'resdnet_list.0.last_conv'}
    assert 'channels differ' in left['up_conv'] and '0 has no code' in \
        left['resdnet_list.0.last_conv']
    x = tf.random.stateless_normal([1, 2, 8, 8, layers['up_conv'].in_channels], [1, 2])
    tw = twin.integer_layers()['up_conv']
    assert np.array_equal(tw(x).numpy(), layers['up_conv'](x).numpy())
    with pytest.raises(ValueError, match='32 quantizers were never initialised'):
        build_int8_tf(QSCI(4, 1, 1, bit_depth=8))
    with pytest.raises(ValueError, match='takes a Q-SCI model'):
        build_int8_tf(task)
