"""Graph-mode training loop: resumable, atomic checkpoints, non-finite guard, TensorBoard.

Model-agnostic: the :class:`ascendcv.runner.task.Task` supplies the data, the loss, the
learning-rate schedule and the training phases (which variables train until which step, with
which learning-rate multipliers; e.g. EDVR's TSA-only warm-up, NeRV's prune-and-fine-tune). The
distributed backend (see :mod:`ascendcv.runner.distributed`) decides gradient averaging, data
sharding and which rank writes files.
"""
import logging
import math
import os
import time

import keras
import numpy as np
import tensorflow as tf

from ascendcv.runner.checkpoint import (CheckpointManager, DamagedCheckpointError,
                                        build_and_restore, restore_checkpoint)


class NonFiniteLossError(RuntimeError):
    """Training stopped because the loss (or a gradient) became NaN/Inf."""


def _optimizer_variables(optimizer):
    return {f'{i:04d}_{v.path}': v for i, v in enumerate(optimizer.variables)}


def check_solver(s):
    """Refuse solver settings that cannot train, before any work (names the key)."""
    for key in ('total_steps', 'print_interval', 'checkpoint_interval', 'keep_checkpoints'):
        value = s[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f'solver.{key} must be a positive integer; got {value!r}')
    if not (s.lr > 0 and s.lr < float('inf')):
        raise ValueError(f'solver.lr must be a positive finite number; got {s.lr!r}')


def check_phases(phases, total_steps):
    """Phases must be ordered by ``until`` and the last must end at ``total_steps``."""
    untils = [int(p.until) for p in phases]
    if not phases or untils != sorted(set(untils)) or untils[0] < 1 or untils[-1] != total_steps:
        raise ValueError(f'training phases must end at strictly increasing steps >= 1, the last '
                         f'at solver.total_steps={total_steps}; got {untils}')
    return phases


class Trainer:
    """Train ``model`` as ``task`` says.

    Args:
        cfg: the frozen config tree.
        model: a built model.
        task: its :class:`ascendcv.runner.task.Task` (data, loss, schedule, phases).
        logger: a ``logging.Logger``.
        backend: distributed backend (``ascendcv.runner.distributed.SingleDevice`` by default).

    One Adam (``solver.beta1/beta2/epsilon``) holds the state of every trainable variable; each
    learning-rate group of the phases (:attr:`Phase.lr_multipliers`) has an Adam of its own
    running at ``multiplier x`` the scheduled rate (PyTorch parameter groups). All of them are
    checkpointed with the weights and the step.
    """

    def __init__(self, cfg, model, task, logger, backend=None):
        from ascendcv.runner.distributed import SingleDevice
        self.cfg, self.model, self.task, self.log = cfg, model, task, logger
        self.backend = backend or SingleDevice()
        s = cfg.solver
        check_solver(s)
        self.pipeline_fn = task.train_pipeline(model, self.backend)
        self.schedule = task.lr_schedule(self.backend.world_size)
        self.loss_fn = task.loss()
        self.phases = check_phases(list(task.training_phases(model)), int(s.total_steps))
        self.optimizer = self._adam()
        self.all_vars = list(model.trainable_variables)
        self.optimizer.build(self.all_vars)
        self.groups = {}  # name -> (multiplier, optimizer, {id(var)})
        for phase in self.phases:
            for name, select, mult in phase.lr_multipliers:
                group_vars = list(select(model))
                if name in self.groups:
                    if self.groups[name][0] != float(mult):
                        raise ValueError(f'learning-rate group {name!r} has two multipliers')
                    continue
                opt = self._adam()
                opt.build(group_vars)
                self.groups[name] = (float(mult), opt, {id(v) for v in group_vars})
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name='global_step')
        self.ckpt_dir = os.path.join(cfg.output_dir, 'checkpoints')
        self.manager = CheckpointManager(self.ckpt_dir, s.keep_checkpoints)
        self._steps = {}
        self._good = None  # newest checkpoint whose next step had a finite loss
        self._unverified = None  # newest checkpoint not verified yet

    def _adam(self):
        s = self.cfg.solver
        return keras.optimizers.Adam(learning_rate=self.schedule(1), beta_1=s.beta1,
                                     beta_2=s.beta2, epsilon=s.epsilon)

    # ------------------------------------------------------------------ graph steps
    def _make_step(self, variables, group_names):
        """The graph step training ``variables``; those in the groups ``group_names`` go to
        their group's optimizer, the rest to the main one."""
        # Grappler's remapper cannot fuse conv + bias + LeakyReLU when LeakyReluGrad reads the
        # pre-activation: it gives up on the whole training graph and logs an E-level
        # "remapper failed ... LeakyReluGrad" line. Off for training, the graph is the same
        # (measured: EDVR 32-feat train step 2.41 s on vs 1.86 s off, same machine).
        tf.config.optimizer.set_experimental_options({'remapping': False})
        model, loss_fn, backend = self.model, self.loss_fn, self.backend
        buckets = [(self.optimizer, [])] + [(self.groups[n][1], []) for n in group_names]
        for j, v in enumerate(variables):
            owner = next((k + 1 for k, n in enumerate(group_names) if id(v) in self.groups[n][2]),
                         0)
            buckets[owner][1].append(j)
        buckets = [(opt, idx) for opt, idx in buckets if idx]

        def apply_all(grads):
            for opt, idx in buckets:
                opt.apply_gradients([(grads[j], variables[j]) for j in idx])

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
                    apply_all(grads)
                    return tf.constant(True)

                tf.cond(finite, apply, lambda: tf.constant(False))
            else:
                # tf.distribute cannot synchronise inside tf.cond: apply zero gradients instead;
                # the run stops right after and nothing is saved from this state
                apply_all([tf.where(finite, g, tf.zeros_like(g)) for g in grads])
            return backend.mean_scalar(loss), finite

        @tf.function
        def train_step(inputs, target):
            return backend.run(replica_step, inputs, target)

        return train_step

    def _phase_step(self, index):
        """The graph step of phase ``index`` (built once)."""
        if index not in self._steps:
            phase = self.phases[index]
            variables = self.all_vars if phase.trainable is None else list(phase.trainable(
                self.model))
            names = [n for n, _, _ in phase.lr_multipliers]
            if len(variables) != len(self.all_vars):
                self.log.info(f'Phase {index + 1}: training {len(variables)} of '
                              f'{len(self.all_vars)} variables')
            self._steps[index] = self._make_step(variables, names)
        return self._steps[index]

    def _set_lr(self, index, step):
        lr = self.schedule(step)
        self.optimizer.learning_rate.assign(lr)
        for name, _, _ in self.phases[index].lr_multipliers:
            mult, opt, _ = self.groups[name]
            opt.learning_rate.assign(lr * mult)
        return lr

    # ------------------------------------------------------------------ checkpoints
    def _extra(self):
        extra = {'optimizer': _optimizer_variables(self.optimizer), 'step': self.step}
        for name, (_, opt, _) in self.groups.items():
            extra[f'optimizer_{name}'] = _optimizer_variables(opt)
        return extra

    def resume(self):
        """Restore the newest checkpoint under ``output_dir/checkpoints``; returns the step."""
        if self.backend.is_chief:
            removed = self.manager.clean_leftovers()
            if removed:
                self.log.info(f'Removed leftovers of an interrupted save in {self.ckpt_dir}: '
                              f'{", ".join(removed)}')
        damaged = []
        for prefix in self.manager.candidates():
            try:
                restore_checkpoint(self.model, prefix, extra=self._extra())
            except DamagedCheckpointError as err:  # fall back to the previous intact one
                damaged.append(str(err))
                self.log.warning(f'{err}; trying the previous checkpoint')
                continue
            if damaged and self.backend.is_chief:
                self.manager.point_to(prefix)
            self._unverified = prefix  # good once the next step's loss is finite
            step = int(self.step.numpy())
            self.log.info(f'Resumed from {prefix} at step {step}'
                          + (f' ({len(damaged)} newer checkpoint(s) damaged, skipped)'
                             if damaged else ''))
            return step
        if damaged:
            raise DamagedCheckpointError(self.ckpt_dir, 'no intact checkpoint to resume from: '
                                         + ' | '.join(damaged)
                                         + '; move the folder away to start afresh')
        return 0

    def _non_finite(self, loss, step):
        """The message for a non-finite step. A checkpoint counts as good only once the step after
        it had a finite loss; the newest checkpoint, if the failing step started from its weights,
        is poisoned, so ``latest`` is pointed back at the last good one (a rerun resumes there)."""
        msg = (f'Non-finite loss ({loss}) or gradient at step {step}: training stopped; the '
               f'update was not applied.')
        poisoned = self._unverified
        if poisoned is not None and self.backend.is_chief:
            if self._good is not None:
                self.manager.point_to(self._good)
                msg += (f' The newest checkpoint {poisoned} holds the weights that gave it; '
                        f'"latest" now points at {self._good}.')
            else:
                msg += f' The weights of {poisoned} gave it (no earlier checkpoint was verified).'
        good = self._good or 'none'
        return msg + f' Last good checkpoint: {good}. Lower solver.lr or check the data.'

    def save(self):
        if self.backend.is_chief:
            prefix = self.manager.save(self.model, int(self.step.numpy()), extra=self._extra())
            self._unverified = prefix
            self.log.info(f'Saved checkpoint {prefix}')
        self.backend.barrier()

    # ------------------------------------------------------------------ loop
    def train(self, until=None):
        """Run the phases until ``solver.total_steps`` (or global step ``until``, or
        ``solver.time_limit_minutes`` of wall time; then with a checkpoint); returns the final
        step. ``until`` lets a caller train in stretches with the full run's schedule (e.g. to
        evaluate along the way); the next call resumes from the checkpoint.

        A phase's ``on_start`` runs when training is at its first step (a fresh run, the end of
        the previous phase, or a resume at exactly that step). Raises
        :class:`NonFiniteLossError` (after logging it) when the loss becomes non-finite; the
        weights of that step are not applied and the last checkpoint stays the newest.
        """
        cfg, s = self.cfg, self.cfg.solver
        if self.backend.is_chief:
            os.makedirs(self.ckpt_dir, exist_ok=True)
            if not os.access(self.ckpt_dir, os.W_OK):
                raise OSError(f'output_dir {cfg.output_dir} is not writable')
        start = self.resume()
        variables = list(self.model.variables) + list(self.optimizer.variables)
        for _, opt, _ in self.groups.values():
            variables += list(opt.variables)
        self.backend.broadcast_initial(variables)
        stop = int(s.total_steps) if until is None else min(int(until), int(s.total_steps))
        if start >= stop:
            self.log.info(f'Nothing to do: step {start} >= solver.total_steps {s.total_steps}'
                          if stop == s.total_steps else f'Nothing to do: step {start} >= {stop}')
            return start
        limit = float(s.time_limit_minutes) * 60.0
        if limit > 0 and not self.backend.stops_on_time:
            raise ValueError('solver.time_limit_minutes works with one process or Horovod '
                             '(solver.distributed=horovod), not with tf.distribute')
        self._writer = (tf.summary.create_file_writer(os.path.join(cfg.output_dir, 'tensorboard'))
                        if self.backend.is_chief else None)
        self._data = iter(self.pipeline_fn(start))
        self._t_start = time.monotonic()
        self.log.info(f'Start training at step {start + 1} of {s.total_steps} '
                      f'(batch {cfg.data.batch_size} x {self.backend.world_size} workers)'
                      + (f', time limit {s.time_limit_minutes:g} min' if limit > 0 else ''))
        step = start
        for index, phase in enumerate(self.phases):
            begin = self.phases[index - 1].until if index else 0
            if step >= phase.until:
                continue
            if phase.description:
                self.log.info(phase.description)
            if step == begin and phase.on_start is not None and phase.on_start(self):
                self.save()  # the newest checkpoint holds what on_start changed
            step, stopped = self._run_phase(index, step, limit, stop)
            if stopped or step >= stop:
                break
        if self.backend.world_size > 1:
            div = self.backend.weight_divergence(self.model.trainable_variables)
            self.log.info(f'Weights on the {self.backend.world_size} ranks: max deviation from '
                          f'their mean {div:.3g}' + (' (in sync)' if div == 0.0 else ''))
        return step

    def _run_phase(self, index, step, limit, stop):
        """Steps ``step + 1 .. min(phases[index].until, stop)``; returns ``(step, stopped on
        time)``."""
        s = self.cfg.solver
        until = min(self.phases[index].until, stop)
        batch = self.cfg.data.batch_size * self.backend.world_size
        t_interval, n_interval, losses, t_first = 0.0, 0, [], 0.0
        begin = step  # the phase's first call includes tracing: not in the timing
        while step < until:
            step += 1
            lr = self._set_lr(index, step)
            inputs, target = next(self._data)
            t0 = time.perf_counter()
            loss, finite = self._phase_step(index)(inputs, target)
            loss = float(loss.numpy())
            elapsed = time.perf_counter() - t0
            if not bool(finite.numpy()) or not math.isfinite(loss):
                msg = self._non_finite(loss, step)
                self.log.error(msg)
                raise NonFiniteLossError(msg)
            if self._unverified is not None:  # its weights gave a finite loss
                self._good, self._unverified = self._unverified, None
            self.step.assign(step)
            if step > begin + 1 or until - begin == 1:
                t_interval += elapsed
                n_interval += 1
            elif n_interval == 0:
                t_first = elapsed
            losses.append(loss)
            if step % s.print_interval == 0 or step == stop:
                avg = t_interval / n_interval if n_interval else t_first
                fps = batch / avg if avg > 0 else 0.0
                self.log.info(f'Step:{step}, lr:{lr:.8f}, loss:{np.mean(losses):.8f}, '
                              f'time:{avg * 1000:.2f}ms, fps:{fps:.2f}')
                if self._writer is not None:
                    with self._writer.as_default(step=step):
                        tf.summary.scalar('loss', np.mean(losses))
                        tf.summary.scalar('lr', lr)
                        tf.summary.scalar('fps', fps)
                    self._writer.flush()
                t_interval, n_interval, losses = 0.0, 0, []
            out_of_time = limit > 0 and bool(  # every rank stops at the same step
                self.backend.all_true(time.monotonic() - self._t_start >= limit))
            if step % s.checkpoint_interval == 0 or step == stop or out_of_time:
                self.save()
            if out_of_time:
                self.log.info(f'Time limit of {s.time_limit_minutes:g} min reached at step {step} '
                              f'of {s.total_steps}: stopped (rerun to continue)')
                return step, True
        return step, False


def train(cfg, task, factory, logger, backend=None):
    """Build the model with ``factory(cfg)`` (initial weights from ``model.checkpoint`` on a
    fresh run) and train it as ``task`` says; returns ``(trainer, final step)``.

    Args:
        cfg: the frozen config tree.
        task: the model's :class:`ascendcv.runner.task.Task`.
        factory: ``factory(cfg, **overrides) -> model``.
        logger: a ``logging.Logger``.
        backend: a distributed backend (default: built from ``solver.distributed``).
    """
    from ascendcv.runner.distributed import build_backend

    if not task.trainable:
        raise ValueError(f'model.name={cfg.model.name!r} has no weights to train '
                         f'(use --mode eval)')
    backend = backend or build_backend(cfg)
    if not backend.is_chief:  # rank 0 alone logs (warnings and errors still show)
        for h in list(logger.handlers):
            if isinstance(h, logging.FileHandler):
                logger.removeHandler(h)
        logger.setLevel(logging.WARNING)
    if backend.is_chief:  # the config of these checkpoints: eval/inference/freeze default to it
        from ascendcv.utils.fileio import atomic_write_text
        atomic_write_text(os.path.join(cfg.output_dir, 'config.yaml'), cfg.dump())
    keras.utils.set_random_seed(cfg.seed)
    fresh = not CheckpointManager(os.path.join(cfg.output_dir, 'checkpoints')).latest()
    with backend.scope():
        model, prefix = build_and_restore(factory, cfg, cfg.model.checkpoint if fresh else '')
        if prefix:
            logger.info(f'Initialised weights from {prefix}')
        trainer = Trainer(cfg, model, task, logger, backend)
    if backend.world_size > 1:
        logger.info(f'Distributed training ({backend.name}): {backend.world_size} workers, '
                    f'this is rank {backend.rank}')
    return trainer, trainer.train()
