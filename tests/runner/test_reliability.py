"""Reliability: checkpoint folders resolve to the newest checkpoint, a poisoned checkpoint is never
called "last good", solver settings that cannot train and cosine periods that do not cover the
run are refused before any work, SCI inputs that cannot be reconstructed are refused naming the
file, and every JSON the project writes is strict JSON."""
import json
import os

import numpy as np
import pytest
import scipy.io
import tensorflow as tf

from ascendcv.runner.checkpoint import CheckpointManager, resolve_checkpoint
from ascendcv.runner.logging_utils import get_logger
from ascendcv.runner.lr_schedule import build_lr_schedule
from ascendcv.runner.task import Task
from ascendcv.runner.trainer import NonFiniteLossError, Trainer
from ascendvsr.config import load_config
from toy import Toy


def toy():
    model = Toy()
    model(tf.zeros([1]))
    return model


def test_checkpoint_folder_resolves_by_pointer_then_step_number(tmp_path):
    manager = CheckpointManager(str(tmp_path), keep=5)
    model = toy()
    for step in (5, 10):
        manager.save(model, step)
    assert resolve_checkpoint(str(tmp_path)).endswith('ckpt-10')
    (tmp_path / 'latest').unlink()  # by step number, not name: ckpt-10 after ckpt-5
    assert resolve_checkpoint(str(tmp_path)).endswith('ckpt-10')
    manager.point_to(str(tmp_path / 'ckpt-5'))  # the project's pointer wins
    assert resolve_checkpoint(str(tmp_path)).endswith('ckpt-5')


class BlowUp(Task):
    """The loss turns NaN once the 5 weights sum below -0.225: with lr 0.01 and a constant
    gradient that is the step after step 5, whose update (kept in ckpt-5) poisoned them."""

    def train_pipeline(self, model, backend):
        return lambda start: tf.data.Dataset.from_tensors((tf.zeros([1]), tf.zeros([1]))).repeat()

    def loss(self):
        def loss(pred, target):
            return tf.where(pred < -0.225, tf.constant(np.nan), pred)  # 5 weights, -0.05 a step
        return loss


def test_poisoned_checkpoint_is_not_last_good_and_latest_points_back(tmp_path):
    cfg = load_config(None, [f'output_dir={tmp_path}', 'solver.total_steps=20',
                             'solver.lr_schedule=constant', 'solver.lr=0.01',
                             'solver.checkpoint_interval=1', 'solver.keep_checkpoints=10',
                             'solver.epsilon=1e-12'])
    trainer = Trainer(cfg, toy(), BlowUp(cfg), get_logger(None))
    with pytest.raises(NonFiniteLossError) as err:
        trainer.train()
    msg = str(err.value)
    assert 'at step 6' in msg and 'Last good checkpoint: ' in msg
    assert msg.split('Last good checkpoint: ')[1].startswith(str(tmp_path / 'checkpoints' / 'ckpt-4'))
    assert 'ckpt-5 holds the weights that gave it' in msg
    assert (tmp_path / 'checkpoints' / 'latest').read_text().strip() == 'ckpt-4'
    # a rerun resumes from the good checkpoint
    again = Trainer(cfg, toy(), BlowUp(cfg), get_logger(None))
    assert again.resume() == 4


@pytest.mark.parametrize('key,value', [('total_steps', -5), ('checkpoint_interval', 0),
                                       ('print_interval', 0), ('keep_checkpoints', 0),
                                       ('lr', 0.0)])
def test_solver_settings_that_cannot_train_are_refused(tmp_path, key, value):
    from ascendvsr.config import ConfigError
    opts = [f'output_dir={tmp_path}', 'solver.lr_schedule=constant']
    with pytest.raises(ConfigError, match=f'solver.{key} must be'):  # at load time
        load_config(None, opts + [f'solver.{key}={value}'])
    cfg = load_config(None, opts, freeze=False)
    cfg.solver[key] = value  # a config built in code: the trainer checks too
    with pytest.raises(ValueError, match=f'solver.{key}'):
        Trainer(cfg, toy(), BlowUp(cfg), get_logger(None))
    assert not (tmp_path / 'checkpoints').exists()  # nothing was done


def test_cosine_periods_must_cover_total_steps():
    cfg = load_config(None, ['solver.total_steps=1000', 'solver.periods=[600]',
                             'solver.restart_weights=[1.0]'])
    with pytest.raises(ValueError, match=r'sum to 600 steps but solver.total_steps is 1000'):
        build_lr_schedule(cfg.solver)
    ok = load_config(None, ['solver.total_steps=600', 'solver.periods=[600]',
                            'solver.restart_weights=[1.0]', 'solver.eta_min=0.0'])
    sched = build_lr_schedule(ok.solver)
    assert sched(600) == pytest.approx(0.0, abs=1e-12)


def test_sci_inputs_that_cannot_be_reconstructed_name_the_file(tmp_path):
    from ascendcv.dataloader.sci import SciBenchmarkDataset, SciDataError, load_mask
    rng = np.random.default_rng(0)
    orig = rng.random((8, 8, 8)) * 255
    mask = (rng.random((8, 8, 8)) > 0.5).astype(np.float32)
    meas = (orig * mask).sum(-1, keepdims=True)
    meas[2, 3, 0] = np.nan
    scipy.io.savemat(tmp_path / 'nanmeas.mat', {'orig': orig, 'mask': mask, 'meas': meas})
    with pytest.raises(SciDataError, match=r"nanmeas\.mat.*NaN or infinite"):
        SciBenchmarkDataset(str(tmp_path)).load(str(tmp_path / 'nanmeas.mat'))
    zero = tmp_path / 'zero.mat'
    scipy.io.savemat(zero, {'mask': np.zeros((8, 8, 8))})
    with pytest.raises(SciDataError, match=r"zero\.mat.*all zero"):
        load_mask(str(zero), setting='sci.mask_file')


def test_reports_are_strict_json(tmp_path):
    from ascendcv.utils.fileio import atomic_write_json
    path = tmp_path / 'r.json'
    atomic_write_json(str(path), {'psnr': float('inf'), 'x': [np.float32('nan'), 1.5],
                                  'n': np.int64(3)})

    def refuse(name):
        raise ValueError(f'non-strict JSON constant {name}')
    data = json.loads(path.read_text(), parse_constant=refuse)
    assert data == {'psnr': None, 'x': [None, 1.5], 'n': 3}


def test_device_keys_are_validated_and_select_the_device(monkeypatch):
    monkeypatch.delenv('CUDA_VISIBLE_DEVICES', raising=False)  # restored after the test
    from ascendcv.runner.device import DeviceError, check_device, select_device
    assert check_device('GPU', 1) == ('gpu', 1) and check_device('auto', 0) == ('auto', 0)
    with pytest.raises(ValueError, match='device must be one of auto|cpu|gpu|npu'):
        check_device('banana', 0)
    with pytest.raises(ValueError, match='device_id'):
        check_device('cpu', -1)
    import tensorflow as tf
    if not tf.config.list_physical_devices('GPU'):  # this CPU build: a clear error, no silent CPU
        with pytest.raises(DeviceError, match='device=gpu .* sees no GPU'):
            select_device(load_config(None, ['device=gpu', 'device_id=99']))
    with pytest.raises(DeviceError, match='device=npu needs the Ascend TensorFlow adapter'):
        select_device(load_config(None, ['device=npu']))


def test_cli_refuses_a_bad_device_before_any_work(tmp_path, capsys):
    from ascendvsr.cli import main  # tools/main.py's main, in this process (no TF start)
    code = main(['--mode', 'train', 'device', 'banana', 'device_id', '99', f'output_dir={tmp_path}'])
    assert code == 2 and 'device must be one of' in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_corrupt_training_frame_exits_at_once_naming_the_file(sample_dataset, tmp_path):
    """Every run (the hang was intermittent): exit 1 within seconds, one line naming the file."""
    import shutil
    import subprocess
    from runner_helpers import ROOT, TINY3, main_cmd
    data = tmp_path / 'data'
    shutil.copytree(sample_dataset, data)
    for png in (data / 'images').glob('00*/truth/*.png'):
        png.write_bytes(png.read_bytes()[:200])  # truncated
    for run in range(3):
        proc = subprocess.run(main_cmd('--config-file', 'configs/edvr.yaml', '--mode', 'train',
                                       f'data.data_dir={data}', f'output_dir={tmp_path / "o"}',
                                       'solver.total_steps=2', *TINY3),
                              capture_output=True, text=True, timeout=120, cwd=ROOT,
                              env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3'))
        errors = [line for line in proc.stderr.splitlines() if line.startswith('Error:')]
        assert proc.returncode == 1, (run, proc.stderr[-2000:])
        assert len(errors) == 1 and 'Cannot read image' in errors[0] and str(data) in errors[0]
        assert 'Traceback' not in proc.stderr and 'function_node' not in errors[0]


def test_cli_unknown_model_name_is_a_config_error(tmp_path, capsys):
    from ascendvsr.cli import main  # tools/main.py's main, in this process (no TF start)
    code = main(['--mode', 'eval', 'model.name', 'EDSR', f'output_dir={tmp_path}'])
    err = capsys.readouterr().err
    assert code == 2 and "model.name='EDSR' is not a registered model" in err
    assert 'EDVR' in err and 'Traceback' not in err
