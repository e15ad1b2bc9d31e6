"""Damaged checkpoints and interrupted saves (issue: reliability): every damage is a clear error
naming the checkpoint, resume falls back to the previous intact checkpoint, a killed save leaves
nothing that is taken for a checkpoint, and a full disk loses nothing."""
import glob
import logging
import os

import pytest
import tensorflow as tf

from ascendcv.runner.checkpoint import (CheckpointManager, DamagedCheckpointError,
                                        build_and_restore, resolve_checkpoint, save_checkpoint)
from ascendcv.runner.logging_utils import get_logger
from ascendcv.runner.task import Task
from ascendcv.runner.trainer import Trainer
from ascendcv.utils.torch_checkpoint import CheckpointError
from ascendvsr.config import load_config
from toy import Toy


def toy(value=0.0):
    model = Toy()
    model(tf.zeros([1]))
    for v in model.weights:
        v.assign(tf.fill(v.shape, value))
    return model


def build(cfg=None):
    return toy()


def damage(prefix, how):
    data = glob.glob(prefix + '.data-*')[0]
    raw = open(data, 'rb').read()
    if how == 'truncated':
        open(data, 'wb').write(raw[:len(raw) // 2])
    elif how == 'bit-flipped':
        raw = bytearray(raw)
        raw[len(raw) // 2] ^= 0xFF
        open(data, 'wb').write(bytes(raw))
    else:  # index only
        os.remove(data)


@pytest.fixture
def two_checkpoints(tmp_path):
    folder = tmp_path / 'checkpoints'
    manager = CheckpointManager(str(folder), keep=5)
    for step in (5, 10):
        manager.save(toy(float(step)), step)
    return folder


@pytest.mark.parametrize('how', ['truncated', 'bit-flipped', 'index only'])
def test_damaged_checkpoint_is_a_clear_error_naming_it_and_the_previous(two_checkpoints, how):
    damage(str(two_checkpoints / 'ckpt-10'), how)
    with pytest.raises(DamagedCheckpointError) as err:
        build_and_restore(build, None, str(two_checkpoints))
    msg = str(err.value)
    assert f'{two_checkpoints / "ckpt-10"} is damaged or incomplete' in msg
    assert f'earlier checkpoint of the folder: {two_checkpoints / "ckpt-5"}' in msg
    model, prefix = build_and_restore(build, None, str(two_checkpoints / 'ckpt-5'))
    assert float(model.a[0]) == 5.0


class Steady(Task):
    def train_pipeline(self, model, backend):
        return lambda start: tf.data.Dataset.from_tensors((tf.zeros([1]), tf.zeros([1]))).repeat()

    def loss(self):
        return lambda pred, target: pred


def trainer_for(tmp_path, steps=12):
    cfg = load_config(None, [f'output_dir={tmp_path}', f'solver.total_steps={steps}',
                             'solver.lr_schedule=constant', 'solver.lr=0.01',
                             'solver.checkpoint_interval=5', 'solver.keep_checkpoints=5'])
    return Trainer(cfg, toy(), Steady(cfg), get_logger(None))


@pytest.mark.parametrize('how', ['truncated', 'index only'])
def test_resume_falls_back_to_the_previous_intact_checkpoint(tmp_path, how, caplog):
    trainer_for(tmp_path, steps=10).train()
    folder = tmp_path / 'checkpoints'
    assert resolve_checkpoint(str(folder)).endswith('ckpt-10')
    damage(str(folder / 'ckpt-10'), how)
    again = trainer_for(tmp_path, steps=10)
    logger = logging.getLogger('ascendvsr')
    logger.propagate = True  # let caplog see the warning
    try:
        with caplog.at_level(logging.WARNING, logger='ascendvsr'):
            assert again.resume() == 5
    finally:
        logger.propagate = False
    assert any('ckpt-10 is damaged' in r.getMessage() for r in caplog.records)
    assert (folder / 'latest').read_text().strip() == 'ckpt-5'  # eval now finds an intact one
    for name in ('ckpt-5',):
        damage(str(folder / name), 'truncated')
    with pytest.raises(DamagedCheckpointError, match='no intact checkpoint to resume from'):
        trainer_for(tmp_path, steps=10).resume()


def test_leftovers_of_a_killed_save_are_removed_at_the_next_start(tmp_path):
    trainer_for(tmp_path, steps=5).train()
    folder = tmp_path / 'checkpoints'
    (folder / '.tmp_ckpt_abc123').mkdir()
    (folder / '.tmp_ckpt_abc123' / 'ckpt.index').write_bytes(b'x')
    (folder / '.tmp-1a2b3c4d-latest').write_text('ckpt-9\n')
    (folder / 'ckpt-9.data-00000-of-00001').write_bytes(b'orphan')
    kept = sorted(os.listdir(folder))
    assert trainer_for(tmp_path, steps=5).resume() == 5
    assert sorted(os.listdir(folder)) == sorted(set(kept) - {
        '.tmp_ckpt_abc123', '.tmp-1a2b3c4d-latest', 'ckpt-9.data-00000-of-00001'})
    assert 'ckpt-5.index' in os.listdir(folder)


def test_a_kill_between_the_renames_never_pairs_an_old_index_with_new_data(tmp_path, monkeypatch):
    """Re-saving a step (after the NaN guard pointed back): the old index goes first, so a kill
    before the new index is in place leaves an orphan, not a checkpoint of mixed files."""
    folder = tmp_path / 'c'
    manager = CheckpointManager(str(folder), keep=5)
    manager.save(toy(1.0), 1)
    manager.save(toy(2.0), 2)
    real = os.replace

    def killed_before_index(src, dst):
        if str(dst).endswith('ckpt-2.index'):
            raise KeyboardInterrupt  # the process dies here
        return real(src, dst)
    monkeypatch.setattr(os, 'replace', killed_before_index)
    with pytest.raises(KeyboardInterrupt):
        manager.save(toy(3.0), 2)
    monkeypatch.setattr(os, 'replace', real)
    assert not (folder / 'ckpt-2.index').exists()
    assert not glob.glob(str(folder / '.tmp_ckpt_*'))
    model, prefix = build_and_restore(build, None, str(folder))
    assert prefix.endswith('ckpt-1') and float(model.a[0]) == 1.0


def test_disk_full_while_saving_loses_nothing(tmp_path, monkeypatch):
    folder = tmp_path / 'c'
    save_checkpoint(toy(1.0), str(folder / 'ckpt-1'))

    def full(self, prefix, *args, **kwargs):
        raise tf.errors.ResourceExhaustedError(None, None, f'{prefix}: No space left on device')
    monkeypatch.setattr(tf.train.Checkpoint, 'write', full)
    with pytest.raises(CheckpointError, match=r'could not write checkpoint .*ckpt-2 .*disk full'):
        save_checkpoint(toy(2.0), str(folder / 'ckpt-2'))
    assert sorted(os.listdir(folder)) == ['ckpt-1.data-00000-of-00001', 'ckpt-1.index']
