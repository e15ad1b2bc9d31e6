"""Training phases of the Task interface, run by the real Trainer on a two-variable toy model:
frozen-then-slower groups (RVRT's SpyNet rule), per-group learning rates, on_start hooks and
resuming at a phase boundary."""
import numpy as np
import pytest
import tensorflow as tf

from ascendcv.runner.logging_utils import get_logger
from ascendcv.runner.task import Phase, Task
from ascendcv.runner.trainer import Trainer
from ascendvsr.config import load_config
from toy import Toy

LR = 0.01


class ToyTask(Task):
    """``b`` frozen until ``fix_iter``, then trained at ``mult x`` the rate; an ``on_start``
    that counts its calls at the second phase."""

    def __init__(self, cfg, fix_iter=3, mult=0.5):
        super().__init__(cfg)
        self.fix_iter, self.mult, self.started = fix_iter, mult, []

    def train_pipeline(self, model, backend):
        return lambda start: tf.data.Dataset.from_tensors((tf.zeros([1]), tf.zeros([1]))).repeat()

    def loss(self):
        return lambda pred, target: pred

    def training_phases(self, model):
        def start(trainer):
            self.started.append(int(trainer.step.numpy()))
            return True

        total = int(self.cfg.solver.total_steps)
        frozen = Phase(until=min(self.fix_iter, total), trainable=lambda m: [m.a],
                       description='b frozen')
        if total <= self.fix_iter:
            return [frozen]
        return [frozen,
                Phase(until=total, on_start=start,
                      lr_multipliers=(('b_group', lambda m: [m.b], self.mult),),
                      description='b at a lower rate')]


def make(tmp_path, steps):
    cfg = load_config(None, [f'output_dir={tmp_path}', f'solver.total_steps={steps}',
                             'solver.lr_schedule=constant', f'solver.lr={LR}',
                             'solver.checkpoint_interval=100', 'solver.print_interval=100',
                             'solver.epsilon=1e-12'])
    model = Toy()
    model(tf.zeros([1]))
    task = ToyTask(cfg)
    return Trainer(cfg, model, task, get_logger(None)), task


def test_frozen_then_slower_group(tmp_path):
    trainer, task = make(tmp_path, 7)
    assert trainer.train() == 7
    a, b = trainer.model.a.numpy(), trainer.model.b.numpy()
    # a: 7 steps at lr; b: frozen for steps 1-3, then 4 steps at 0.5 lr
    np.testing.assert_allclose(a, -7 * LR, rtol=1e-5)
    np.testing.assert_allclose(b, -4 * 0.5 * LR, rtol=1e-5)
    assert task.started == [3]  # the second phase started after step 3
    # its on_start changed the model: a checkpoint was written at the boundary
    assert trainer.manager.steps() == [3, 7]


def test_resume_at_the_boundary_reruns_on_start_and_continues(tmp_path):
    first, _ = make(tmp_path, 3)
    assert first.train() == 3
    trainer, task = make(tmp_path, 7)
    assert trainer.train() == 7
    assert task.started == [3]  # resumed exactly at the boundary: on_start again (idempotent)
    np.testing.assert_allclose(trainer.model.b.numpy(), -4 * 0.5 * LR, rtol=1e-5)
    # resumed inside the last phase: no on_start
    later, task = make(tmp_path, 9)
    assert later.train() == 9 and task.started == []
    np.testing.assert_allclose(later.model.b.numpy(), -6 * 0.5 * LR, rtol=1e-5)


def test_phases_must_end_at_total_steps(tmp_path):
    cfg = load_config(None, [f'output_dir={tmp_path}', 'solver.total_steps=5',
                             'solver.lr_schedule=constant'])
    model = Toy()
    model(tf.zeros([1]))

    class Short(ToyTask):
        def training_phases(self, model):
            return [Phase(until=4)]

    class Unordered(ToyTask):
        def training_phases(self, model):
            return [Phase(until=5), Phase(until=3)]

    for bad in (Short, Unordered):
        with pytest.raises(ValueError, match='total_steps=5'):
            Trainer(cfg, model, bad(cfg), get_logger(None))
