"""The contract every registered model keeps (``ascendvsr/zoo/<model>.py``): it builds, takes a
training step, saves and restores, freezes to a graph whose output equals the live model's, and
evaluates on a tiny real input -- all through the runner's Task interface, so a new model is
checked by adding its registration."""
import json
import math
import os

import numpy as np
import pytest
import tensorflow as tf

from ascendcv.runner.checkpoint import build_and_restore
from ascendcv.runner.freezer import FrozenGraphModel, export_and_check
from ascendcv.runner.logging_utils import get_logger
from ascendcv.runner.trainer import train
from ascendvsr.config import load_config
from ascendvsr.zoo import get_entry, registered_models

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp('contract_data'))


def _finite_numbers(obj):
    """Every number in a (nested) report."""
    if isinstance(obj, dict):
        return [x for v in obj.values() for x in _finite_numbers(v)]
    if isinstance(obj, (list, tuple)):
        return [x for v in obj for x in _finite_numbers(v)]
    return [obj] if isinstance(obj, (int, float)) and not isinstance(obj, bool) else []


def test_every_model_registers_its_parts():
    names = registered_models()
    assert {'EDVR', 'RevSCI', 'NeRV', 'GAP-TV'} <= set(names)
    from ascendcv.runner.task import Task
    cfg = load_config(None, [])
    for name in names:
        entry = get_entry(name)
        task = entry.make_task(cfg)
        assert isinstance(task, Task), name
        for method in ('evaluate', 'infer', 'serving_signature', 'example_inputs',
                       'sample_data'):  # what the base class cannot provide
            assert getattr(type(task), method) is not getattr(Task, method), (name, method)
        for node in entry.config:
            assert node in cfg, (name, node)  # its config node is in the tree


@pytest.mark.parametrize('name', registered_models())
def test_model_contract(name, data_dir, tmp_path):
    entry = get_entry(name)
    log = get_logger(None)
    probe = entry.make_task(load_config(None, [f'model.name={name}']))
    opts = [f'model.name={name}', f'output_dir={tmp_path}', 'solver.total_steps=1',
            'solver.checkpoint_interval=1', 'solver.lr_schedule=constant', 'solver.lr=1e-4',
            'export.onnx=False', 'export.pb_xla_dcn=False', *entry.tiny,
            *probe.sample_data(data_dir)]
    cfg = load_config(None, opts)
    task = entry.make_task(cfg)

    # build + one training step (through the runner) + save
    if task.trainable:
        import keras
        keras.utils.set_random_seed(cfg.seed)  # as train() does: the same initial weights
        before, _ = build_and_restore(entry.build, cfg, '')
        trainer, step = train(cfg, task, entry.build, log)
        assert step == 1
        prefix = trainer.manager.latest()
        assert prefix.endswith('ckpt-1')
        moved = [not np.array_equal(a.numpy(), b.numpy()) for a, b in
                 zip(trainer.model.trainable_variables, before.trainable_variables)]
        assert any(moved), f'{name}: one training step changed no weight'
        model = trainer.model
        # restore into a fresh model: same weights, same outputs
        restored, _ = build_and_restore(entry.build, cfg, prefix)
        for a, b in zip(model.weights, restored.weights):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
        cfg = load_config(None, opts + [f'model.checkpoint={prefix}'])
        task = entry.make_task(cfg)
    else:
        assert not task.needs_checkpoint
        with pytest.raises(ValueError, match='train'):
            train(cfg, task, entry.build, log)
        model, _ = build_and_restore(entry.build, cfg, '')
        restored = model
    inputs = [np.asarray(x) for x in task.example_inputs(model)]
    live = np.asarray(task.serve(model, *[tf.constant(x) for x in inputs]))
    again = np.asarray(task.serve(restored, *[tf.constant(x) for x in inputs]))
    np.testing.assert_allclose(again, live, atol=1e-6)

    # freeze + reload: the frozen graph computes what the live model does
    result = export_and_check(cfg, task, entry.build, log)
    assert result['pb_max_abs_diff'] <= 1e-4
    frozen = FrozenGraphModel(result['pb'])
    assert [i['name'].split(':')[0] for i in frozen.meta['inputs']] == [
        s.name for s in task.serving_signature(model)]
    np.testing.assert_allclose(frozen(*inputs).numpy(), live, atol=1e-4)

    # evaluate on the tiny real data: a report of finite numbers, written as JSON
    report = task.evaluate(model, log)
    numbers = _finite_numbers(report)
    assert numbers and all(math.isfinite(x) for x in numbers), report
    written = [os.path.join(r, f) for r, _, fs in os.walk(tmp_path) for f in fs
               if f.endswith('.json') and 'report' in f]
    assert written, f'{name}: evaluation wrote no JSON report'
    for path in written:
        with open(path) as f:
            json.load(f)
