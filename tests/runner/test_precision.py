"""Reduced precision (issue #15): bfloat16 products in the weight layers, the CPU check, the
accuracy guard, and ``model.precision`` through eval / freeze of the CLI (tiny EDVR)."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from ascendcv.layers.precision import check_cpu, set_precision
from ascendcv.runner.checkpoint import build_and_restore, save_checkpoint
from ascendcv.runner.logging_utils import get_logger
from ascendcv.runner.precision import PrecisionGuardError, judge
from ascendvsr.cli import main
from ascendvsr.config import load_config
from ascendvsr.zoo import get_entry

from runner_helpers import TINY

HAS_BF16 = bool(check_cpu('bfloat16', flags=None, log=lambda *_: None) == 'bfloat16')


def _tiny_edvr(extra=()):
    cfg = load_config(None, ['model.name=EDVR', *TINY, *extra])
    entry = get_entry('EDVR')
    return cfg, entry


def _copy(cfg, entry, ref):
    """A tiny EDVR with the weights of ``ref``."""
    b, _ = build_and_restore(entry.build, cfg, '')
    for va, vb in zip(ref.weights, b.weights):
        vb.assign(va)
    return b


def test_check_cpu_falls_back_with_one_warning_or_refuses():
    lines = []
    assert check_cpu('bfloat16', flags={'avx512f'}, log=lines.append) == 'float32'
    assert len(lines) == 1 and 'AVX512_BF16 / AMX_BF16' in lines[0], lines
    assert check_cpu('int8', flags={'avx512_vnni'}, log=lines.append) == 'int8'
    with pytest.raises(RuntimeError, match='AVX512_VNNI / AVX_VNNI / AMX_INT8.*allow_fallback'):
        check_cpu('int8', allow_fallback=False, flags={'avx2'})
    with pytest.raises(ValueError, match='model.precision must be one of'):
        check_cpu('float16')


def test_bfloat16_runs_the_products_only_and_keep_float_holds():
    cfg, entry = _tiny_edvr()
    ref, _ = build_and_restore(entry.build, cfg, '')
    model = _copy(cfg, entry, ref)
    x = tf.constant(np.random.default_rng(0).random((1, 5, 16, 20, 3), np.float32))
    y32 = ref(x).numpy()
    split = set_precision(model, 'bfloat16')
    assert split['float32'] == [] and len(split['reduced']) > 10
    assert 'pcd_align.dcn_pack.l1' in split['reduced']  # the DCN matmul too
    y16 = model(x).numpy()
    assert y16.dtype == np.float32
    err = np.abs(y16 - y32)
    assert 0 < err.max() < 0.05, err.max()  # bfloat16 did run, 8-bit mantissa accuracy
    assert 10 * np.log10(1 / np.mean(err ** 2)) > 45

    kept = _copy(cfg, entry, ref)
    split = set_precision(kept, 'bfloat16', keep_float=('pcd_align', 'conv_last'))
    assert split['float32'] and all('pcd_align' in n or 'conv_last' in n for n in split['float32'])
    assert not any('pcd_align' in n for n in split['reduced'])
    back = _copy(cfg, entry, ref)
    set_precision(back, 'bfloat16')
    set_precision(back, 'float32')
    np.testing.assert_array_equal(back(x).numpy(), y32)
    with pytest.raises(ValueError, match='int8 runs in onnxruntime'):
        set_precision(back, 'int8')


def test_chains_stay_bfloat16_between_layers_and_reset():
    """conv - LeakyReLU - conv links: the first product stays bfloat16 into the second (no
    casts back and forth); the output matches the unlinked bfloat16 model within double
    rounding; a quantizing layer (Q-SCI) does not take a bfloat16 input; float32 resets."""
    from ascendcv.layers.conv3d import Conv3d
    from ascendcv.layers.fake_quant import Conv3dQ
    from ascendcv.layers.precision import ReducedPrecisionLayer
    from ascendvsr.layers.efficientsci_blocks import LeakyReLU, TorchSequential
    tf.keras.utils.set_random_seed(0)
    seq = TorchSequential([Conv3d(4, 6, (1, 3, 3), 1, (0, 1, 1)), LeakyReLU(),
                           Conv3d(6, 5, 3, 1, 1), LeakyReLU(), Conv3dQ(5, 3, 1, nbits=8)])

    class Model(tf.keras.Model):
        def __init__(self):
            super().__init__()
            self.seq = seq

        def call(self, x):
            return self.seq(x)
    model = Model()
    x = tf.constant(np.random.default_rng(0).standard_normal((1, 3, 8, 8, 4)), tf.float32)
    seq[4].set_quantize(False)
    y32 = model(x).numpy()
    split = set_precision(model, 'bfloat16')
    assert split['chains'] == 1  # 0 -> 2 links; 2 -> 4 does not (Conv3dQ quantizes its input)
    assert seq[0].keep_reduced_output and not seq[2].keep_reduced_output
    assert seq[0](x).dtype == tf.bfloat16
    assert seq[2](tf.zeros([1, 3, 8, 8, 6], tf.bfloat16)).dtype == tf.float32
    linked = model(x).numpy()
    for layer in model._flatten_layers(include_self=True, recursive=True):
        if isinstance(layer, ReducedPrecisionLayer):
            layer.keep_reduced_output = False
    unlinked = model(x).numpy()
    scale = np.abs(y32).max()
    assert 0 < np.abs(linked - y32).max() < 0.05 * scale
    assert np.abs(linked - unlinked).max() < 0.02 * scale
    assert set_precision(model, 'float32')['chains'] == 0 and not seq[0].keep_reduced_output
    np.testing.assert_array_equal(model(x).numpy(), y32)


def test_guard_refuses_a_drop_above_the_bound(tmp_path):
    cfg = load_config(None, [f'output_dir={tmp_path}', 'precision.max_drop_bfloat16=0.05'])
    task = get_entry('EDVR').make_task(cfg)
    log = get_logger(None)
    ok = judge(cfg, task, {'average_psnr': 30.0}, {'average_psnr': 29.97}, 'bfloat16', log,
               enforce=True)
    assert ok['passed'] and abs(ok['drop_db'] - 0.03) < 1e-9
    with pytest.raises(PrecisionGuardError, match=r'loses 0\.1000 dB.*precision\.max_drop_bfloat16'):
        judge(cfg, task, {'average_psnr': 30.0}, {'average_psnr': 29.9}, 'bfloat16', log,
              enforce=True)
    with open(tmp_path / 'precision' / 'report.json') as f:
        assert json.load(f)['passed'] is False


@pytest.fixture(scope='module')
def edvr_checkpoint(tmp_path_factory):
    cfg, entry = _tiny_edvr()
    model, _ = build_and_restore(entry.build, cfg, '')
    prefix = str(tmp_path_factory.mktemp('precision_ckpt') / 'ckpt-1')
    save_checkpoint(model, prefix)
    return prefix


def _cli(mode, sample_dataset, ckpt, out, *extra):
    return main([mode, 'model.name=EDVR', *TINY, f'data.data_dir={sample_dataset}',
                 f'output_dir={out}', f'model.checkpoint={ckpt}', 'export.pb_xla_dcn=False',
                 'eval.save_strip=False', 'data.max_eval_frames=3', 'data.eval_in_size=[-1,-1]',
                 *extra])


@pytest.mark.skipif(not HAS_BF16, reason='this CPU has no AVX512_BF16 / AMX_BF16')
def test_cli_eval_and_freeze_in_bfloat16(sample_dataset, edvr_checkpoint, tmp_path):
    out = tmp_path / 'bf16'
    assert _cli('eval', sample_dataset, edvr_checkpoint, out, 'model.precision=bfloat16') == 0
    with open(out / 'precision' / 'report.json') as f:
        guard = json.load(f)
    with open(out / 'eval' / 'report.json') as f:
        report = json.load(f)
    assert guard['precision'] == 'bfloat16' and guard['passed']
    assert guard['psnr'] == report['average_psnr'] and abs(guard['drop_db']) < 0.05
    assert os.path.exists(out / 'precision' / 'float32' / 'eval' / 'report.json')

    # (the freeze guard is the same guard(), not repeated here: the eval above ran it)
    assert _cli('freeze', sample_dataset, edvr_checkpoint, out, 'model.precision=bfloat16',
                'export.onnx=False', 'precision.guard=False') == 0
    with open(out / 'EDVR.json') as f:
        assert json.load(f)['precision'] == 'bfloat16'
    graph = tf.compat.v1.GraphDef()
    with open(out / 'EDVR.pb', 'rb') as f:
        graph.ParseFromString(f.read())
    nodes = list(graph.node) + [n for fn in graph.library.function for n in fn.node_def]
    convs = [n for n in nodes if n.op == 'Conv2D']
    assert convs and all(n.attr['T'].type == tf.bfloat16.as_datatype_enum for n in convs)
    # the bfloat16 graph evaluates as itself; refused where int8 is asked for
    assert _cli('eval', sample_dataset, out / 'EDVR.pb', tmp_path / 'pb16',
                'model.precision=bfloat16') == 0
    from ascendvsr.cli import _load_exported
    with pytest.raises(ValueError, match=r'EDVR.pb holds a bfloat16 model: give the .int8.onnx'):
        _load_exported(str(out / 'EDVR.pb'), 'int8')


def test_int8_without_calibration_and_unknown_precision_are_refused(sample_dataset,
                                                                    edvr_checkpoint, tmp_path,
                                                                    capsys):
    assert _cli('eval', sample_dataset, edvr_checkpoint, tmp_path, 'model.precision=int8',
                'precision.calibration_batches=0') == 1
    assert 'precision.calibration_batches' in capsys.readouterr().err
    assert _cli('eval', sample_dataset, edvr_checkpoint, tmp_path,
                'model.precision=float16') == 2
    assert "model.precision must be one of 'float32', 'bfloat16', 'int8'" in \
        capsys.readouterr().err


# one family per kind of weight layer (EDVR above; RVRT Light and Q-SCI share RVRT's and
# EfficientSCI's layer classes): Conv3d/ConvTranspose3d, attention + Conv2d/3d, NeRV's convs,
# Linear + window attention + SpyNet; GAP-TV has no weight layer
@pytest.mark.parametrize('name', ['RevSCI', 'EfficientSCI', 'NeRV', 'RVRT', 'GAP-TV'])
def test_every_model_serves_in_bfloat16_close_to_float32(name):
    """The tiny variant's serving computation in bfloat16 is close to float32 (and differs,
    where it has weight layers); GAP-TV has none and is unchanged."""
    entry = get_entry(name)
    cfg = load_config(None, [f'model.name={name}', *entry.tiny])
    task = entry.make_task(cfg)
    import keras
    keras.utils.set_random_seed(0)
    ref, _ = build_and_restore(entry.build, cfg, '')
    keras.utils.set_random_seed(0)
    model, _ = build_and_restore(entry.build, cfg, '')
    for a, b in zip(getattr(ref, 'weights', []), getattr(model, 'weights', [])):
        b.assign(a)
    split = set_precision(model, 'bfloat16', task.keep_float('bfloat16'))
    inputs = [tf.constant(x) for x in task.example_inputs(ref)]
    y32 = np.asarray(task.serve(ref, *inputs), np.float64)
    y16 = np.asarray(task.serve(model, *inputs), np.float64)
    scale = max(float(np.abs(y32).max()), 1e-6)
    rel = float(np.abs(y16 - y32).max()) / scale
    if not split['reduced']:  # nothing switched: run-to-run float32 noise only
        assert rel < 1e-5, (name, rel)
        return
    assert 0 < rel < 0.05, (name, rel, len(split['reduced']))


def test_cli_freeze_in_int8_then_eval_the_int8_onnx(sample_dataset, edvr_checkpoint, tmp_path):
    """int8: freeze calibrates on the evaluation data, guards, writes EDVR.int8.onnx (integer
    kernels) beside the float32 .pb/.onnx; eval runs that file in onnxruntime."""
    out = tmp_path / 'int8'
    assert _cli('freeze', sample_dataset, edvr_checkpoint, out, 'model.precision=int8',
                'precision.calibration_batches=2') == 0
    with open(out / 'EDVR.json') as f:
        assert json.load(f)['precision'] == 'float32'  # no EDVR integer twin
    with open(out / 'EDVR.int8.json') as f:
        meta = json.load(f)
    assert meta['precision'] == 'int8' and meta['quantization']['quantized']['Conv'] > 10
    with open(out / 'precision' / 'report.json') as f:
        guard = json.load(f)
    assert guard['precision'] == 'int8' and guard['passed'] and abs(guard['drop_db']) < 0.2
    assert not [p for p in os.listdir(out) if p.startswith('.staged')]
    assert _cli('eval', sample_dataset, out / 'EDVR.int8.onnx', tmp_path / 'e8',
                'model.precision=int8') == 0
    with open(tmp_path / 'e8' / 'eval' / 'report.json') as f:
        psnr = json.load(f)['average_psnr']
    assert abs(psnr - guard['psnr']) < 1e-6  # the same file, the same data


def test_keep_float_by_class_name():
    import keras
    from ascendcv.layers.conv import Conv2d
    from ascendcv.layers.linear import Linear

    class Net(keras.layers.Layer):
        def __init__(self):
            super().__init__()
            self.conv = Conv2d(3, 4, 3, 1, 1)
            self.head = Linear(4, 2)
            self.blocks = [Linear(2, 2), Conv2d(4, 4, 1)]

    net = Net()
    split = set_precision(net, 'bfloat16', keep_float=('Linear',))
    assert sorted(split['float32']) == ['blocks.0', 'head']
    assert sorted(split['reduced']) == ['blocks.1', 'conv']
    assert net.head.compute_precision == 'float32' and net.conv.compute_precision == 'bfloat16'
