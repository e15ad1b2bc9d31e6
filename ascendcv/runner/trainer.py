"""Graph-mode training loop: resumable, atomic checkpoints, non-finite guard, TensorBoard.

Model-agnostic: it needs ``model(x, training=True)`` and, optionally,
``model.warmup_trainable_variables()`` (the variables trained alone during the first
``solver.tsa_iter`` steps -- EDVR's TSA-only warm-up). The distributed backend (see
:mod:`ascendcv.runner.distributed`) decides gradient averaging, data sharding and which rank
writes files.
"""
import logging
import math
import os
import time

import keras
import numpy as np
import tensorflow as tf

from ascendcv.runner.checkpoint import CheckpointManager, restore_checkpoint
from ascendcv.runner.losses import build_loss
from ascendcv.runner.lr_schedule import build_lr_schedule


class NonFiniteLossError(RuntimeError):
    """Training stopped because the loss (or a gradient) became NaN/Inf."""


def _optimizer_variables(optimizer):
    return {f'{i:04d}_{v.path}': v for i, v in enumerate(optimizer.variables)}


class Trainer:
    """Train ``model`` on batches from ``pipeline_fn(start_step)``.

    Args:
        cfg: the frozen config tree.
        model: a built model.
        pipeline_fn: ``start_step -> tf.data.Dataset`` of ``(inputs, target)`` batches; must be
            deterministic in the global step so a resumed run sees the same batches.
        backend: distributed backend (``ascendcv.runner.distributed.SingleDevice`` by default).
        logger: a ``logging.Logger``.
    """

    def __init__(self, cfg, model, pipeline_fn, logger, backend=None):
        from ascendcv.runner.distributed import SingleDevice
        self.cfg, self.model, self.pipeline_fn, self.log = cfg, model, pipeline_fn, logger
        self.backend = backend or SingleDevice()
        s = cfg.solver
        scale = self.backend.world_size if s.scale_lr_by_world_size else 1
        self.schedule = build_lr_schedule(s, scale)
        self.loss_fn = build_loss(s)
        self.optimizer = keras.optimizers.Adam(learning_rate=self.schedule(1), beta_1=s.beta1,
                                               beta_2=s.beta2, epsilon=s.epsilon)
        self.all_vars = list(model.trainable_variables)
        self.optimizer.build(self.all_vars)
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name='global_step')
        warm = getattr(model, 'warmup_trainable_variables', None)
        self.warm_vars = list(warm()) if (callable(warm) and s.tsa_iter > 0) else []
        self.ckpt_dir = os.path.join(cfg.output_dir, 'checkpoints')
        self.manager = CheckpointManager(self.ckpt_dir, s.keep_checkpoints)
        self._steps = {}

    # ------------------------------------------------------------------ graph steps
    def _make_step(self, variables):
        model, loss_fn, opt, backend = self.model, self.loss_fn, self.optimizer, self.backend

        def replica_step(inputs, target):
            with tf.GradientTape() as tape:
                pred = model(inputs, training=True)
                loss = loss_fn(pred, target)
            grads = backend.reduce_gradients(tape.gradient(loss, variables))
            finite = tf.math.is_finite(loss)
            for g in grads:
                finite = tf.logical_and(finite, tf.reduce_all(tf.math.is_finite(g)))
            finite = backend.all_true(finite)  # the same decision on every rank
            if backend.conditional_apply:
                def apply():
                    opt.apply_gradients(zip(grads, variables))
                    return tf.constant(True)

                tf.cond(finite, apply, lambda: tf.constant(False))
            else:
                # tf.distribute cannot synchronise inside tf.cond: apply zero gradients instead;
                # the run stops right after and nothing is saved from this state
                safe = [tf.where(finite, g, tf.zeros_like(g)) for g in grads]
                opt.apply_gradients(zip(safe, variables))
            return backend.mean_scalar(loss), finite

        @tf.function
        def train_step(inputs, target):
            return backend.run(replica_step, inputs, target)

        return train_step

    def _step_fn(self, step):
        """The graph step for 1-based ``step`` (BasicSR: only TSA before ``tsa_iter``)."""
        key = 'warm' if (self.warm_vars and step < self.cfg.solver.tsa_iter) else 'all'
        if key not in self._steps:
            if key == 'warm':
                self.log.info(f'Only train the fusion (TSA) module for the first '
                              f'{self.cfg.solver.tsa_iter - 1} steps '
                              f'({len(self.warm_vars)} of {len(self.all_vars)} variables).')
            elif self.warm_vars:
                self.log.info('Train all the parameters.')
            self._steps[key] = self._make_step(self.warm_vars if key == 'warm' else self.all_vars)
        return self._steps[key]

    # ------------------------------------------------------------------ checkpoints
    def _extra(self):
        return {'optimizer': _optimizer_variables(self.optimizer), 'step': self.step}

    def resume(self):
        """Restore the newest checkpoint under ``output_dir/checkpoints``; returns the step."""
        latest = self.manager.latest()
        if latest is None:
            return 0
        restore_checkpoint(self.model, latest, extra=self._extra())
        step = int(self.step.numpy())
        self.log.info(f'Resumed from {latest} at step {step}')
        return step

    def save(self):
        if self.backend.is_chief:
            prefix = self.manager.save(self.model, int(self.step.numpy()), extra=self._extra())
            self.log.info(f'Saved checkpoint {prefix}')
        self.backend.barrier()

    # ------------------------------------------------------------------ loop
    def train(self):
        """Run until ``solver.total_steps`` (or ``solver.time_limit_minutes`` of wall time, then
        with a checkpoint); returns the final step.

        Raises :class:`NonFiniteLossError` (after logging it) when the loss becomes non-finite;
        the weights of that step are not applied and the last checkpoint stays the newest.
        """
        cfg, s = self.cfg, self.cfg.solver
        if self.backend.is_chief:
            os.makedirs(self.ckpt_dir, exist_ok=True)
            if not os.access(self.ckpt_dir, os.W_OK):
                raise OSError(f'output_dir {cfg.output_dir} is not writable')
        start = self.resume()
        self.backend.broadcast_initial(list(self.model.variables) + list(self.optimizer.variables))
        if start >= s.total_steps:
            self.log.info(f'Nothing to do: step {start} >= solver.total_steps {s.total_steps}')
            return start
        writer = (tf.summary.create_file_writer(os.path.join(cfg.output_dir, 'tensorboard'))
                  if self.backend.is_chief else None)
        batch = cfg.data.batch_size * self.backend.world_size
        data = iter(self.pipeline_fn(start))
        t_interval, n_interval, losses, t_first = 0.0, 0, [], 0.0
        step = start
        limit = float(s.time_limit_minutes) * 60.0
        if limit > 0 and self.backend.world_size > 1 and not hasattr(self.backend, 'hvd'):
            raise ValueError('solver.time_limit_minutes works with one process or Horovod '
                             '(solver.distributed=horovod), not with tf.distribute')
        t_start = time.monotonic()
        self.log.info(f'Start training at step {start + 1} of {s.total_steps} '
                      f'(batch {cfg.data.batch_size} x {self.backend.world_size} workers)'
                      + (f', time limit {s.time_limit_minutes:g} min' if limit > 0 else ''))
        while step < s.total_steps:
            step += 1
            lr = self.schedule(step)
            self.optimizer.learning_rate.assign(lr)
            inputs, target = next(data)
            t0 = time.perf_counter()
            loss, finite = self._step_fn(step)(inputs, target)
            loss = float(loss.numpy())
            elapsed = time.perf_counter() - t0
            if not bool(finite.numpy()) or not math.isfinite(loss):
                msg = (f'Non-finite loss ({loss}) or gradient at step {step}: training stopped; '
                       f'the update was not applied. Last good checkpoint: '
                       f'{self.manager.latest() or "none"}. Lower solver.lr or check the data.')
                self.log.error(msg)
                raise NonFiniteLossError(msg)
            self.step.assign(step)
            if step > start + 1 or s.total_steps - start == 1:  # first step includes tracing
                t_interval += elapsed
                n_interval += 1
            elif n_interval == 0:
                t_first = elapsed
            losses.append(loss)
            if step % s.print_interval == 0 or step == s.total_steps:
                avg = t_interval / n_interval if n_interval else t_first
                fps = batch / avg if avg > 0 else 0.0
                self.log.info(f'Step:{step}, lr:{lr:.8f}, loss:{np.mean(losses):.8f}, '
                              f'time:{avg * 1000:.2f}ms, fps:{fps:.2f}')
                if writer is not None:
                    with writer.as_default(step=step):
                        tf.summary.scalar('loss', np.mean(losses))
                        tf.summary.scalar('lr', lr)
                        tf.summary.scalar('fps', fps)
                    writer.flush()
                t_interval, n_interval, losses = 0.0, 0, []
            out_of_time = limit > 0 and bool(  # every rank stops at the same step
                self.backend.all_true(time.monotonic() - t_start >= limit))
            if step % s.checkpoint_interval == 0 or step == s.total_steps or out_of_time:
                self.save()
            if out_of_time:
                self.log.info(f'Time limit of {s.time_limit_minutes:g} min reached at step {step} '
                              f'of {s.total_steps}: stopped (rerun to continue)')
                break
        if self.backend.world_size > 1:
            div = self.backend.weight_divergence(self.model.trainable_variables)
            self.log.info(f'Weights on the {self.backend.world_size} ranks: max deviation from '
                          f'their mean {div:.3g}' + (' (in sync)' if div == 0.0 else ''))
        return step


def train_from_config(cfg, logger, task):
    """Build model, data (through ``task``) and backend from ``cfg`` and train."""
    from ascendcv.runner.distributed import build_backend
    from ascendvsr.models import build_model

    backend = build_backend(cfg)
    if not backend.is_chief:  # rank 0 alone logs (warnings and errors still show)
        for h in list(logger.handlers):
            if isinstance(h, logging.FileHandler):
                logger.removeHandler(h)
        logger.setLevel(logging.WARNING)
    keras.utils.set_random_seed(cfg.seed)
    with backend.scope():
        model = build_model(cfg)
        if cfg.model.checkpoint and not CheckpointManager(
                os.path.join(cfg.output_dir, 'checkpoints')).latest():
            restore_checkpoint(model, cfg.model.checkpoint)
            logger.info(f'Initialised weights from {cfg.model.checkpoint}')
        pipeline_fn = task.train_pipeline(cfg, model, backend)
        trainer = Trainer(cfg, model, pipeline_fn, logger, backend)
        hook = getattr(task, 'configure_trainer', None)  # e.g. NeRV: its loss and LR schedule
        if hook is not None:
            hook(cfg, trainer)
    if backend.world_size > 1:
        logger.info(f'Distributed training ({backend.name}): {backend.world_size} workers, '
                    f'this is rank {backend.rank}')
    return trainer.train()
