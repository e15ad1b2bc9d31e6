"""Distributed backends, invisible to models. ``solver.distributed``: none | horovod | tf.

A backend tells the trainer its ``rank`` / ``world_size``, whether it is the chief (the only rank
that writes logs, TensorBoard and checkpoints), and supplies the collective pieces of a training
step:

* ``scope()`` -- context in which the model and optimizer are created;
* ``run(fn, *args)`` -- run the per-replica step ``fn`` and return its local results;
* ``reduce_gradients(grads)`` -- what to hand to the optimizer so the update uses the gradient
  averaged over all ranks;
* ``all_true(flag)`` -- the same boolean on every rank (so a non-finite loss stops them all);
* ``mean_scalar(x)`` -- average of a scalar over ranks (the logged loss);
* ``broadcast_initial(variables)`` -- make every rank start from rank 0's values.

Each rank reads its own shard of the data (``ascendcv.dataloader.pipeline`` takes rank and
world size), so ``world_size`` ranks with batch B see the samples one process with batch
``world_size * B`` would, and (with a mean loss) take the same step.
"""
import contextlib
import json
import os

import tensorflow as tf


class DistributedError(RuntimeError):
    """A peer failed or the cluster description is wrong."""


class SingleDevice:
    """One process, one device."""
    rank, world_size, is_chief, name = 0, 1, True, 'none'
    conditional_apply = True  # the optimizer update may sit inside tf.cond
    stops_on_time = True  # every rank can agree to stop at a wall-time limit (solver.time_limit_minutes)

    def scope(self):
        return contextlib.nullcontext()

    def run(self, fn, *args):
        return fn(*args)

    def reduce_gradients(self, grads):
        return grads

    def all_true(self, flag):
        return flag

    def mean_scalar(self, x):
        return x

    def broadcast_initial(self, variables):
        pass

    def barrier(self):
        pass

    def weight_divergence(self, variables):
        """Max over ranks and weights of ``|w_rank - mean_ranks(w)|`` (0.0 when in sync)."""
        return 0.0


class HorovodBackend(SingleDevice):
    """Horovod (Gloo on CPU, NCCL on GPU): ``horovodrun -np N ... --gloo``.

    Gradients are averaged with one grouped allreduce per step (what ``DistributedGradientTape``
    does); initial weights and optimizer state are broadcast from rank 0 after resuming.
    """
    name = 'horovod'

    def __init__(self):
        try:
            import horovod.tensorflow as hvd
        except ImportError as err:
            raise DistributedError(
                f'solver.distributed=horovod needs Horovod ({err}); build it with '
                f'bash scripts/install_horovod.sh, or use solver.distributed=tf') from err
        hvd.init()
        self.hvd = hvd
        self.rank, self.world_size = hvd.rank(), hvd.size()
        self.is_chief = self.rank == 0
        gpus = tf.config.list_physical_devices('GPU')
        if gpus:  # one GPU per local rank
            tf.config.set_visible_devices(gpus[hvd.local_rank() % len(gpus)], 'GPU')

    def reduce_gradients(self, grads):
        return self.hvd.grouped_allreduce(list(grads), op=self.hvd.Average)

    def all_true(self, flag):
        return self.hvd.allreduce(tf.cast(flag, tf.float32), op=self.hvd.Min) > 0.5

    def mean_scalar(self, x):
        return self.hvd.allreduce(x, op=self.hvd.Average)

    def broadcast_initial(self, variables):
        # Keras variables wrap a tf.Variable (.value), which is what Horovod assigns to
        self.hvd.broadcast_variables([getattr(v, 'value', v) for v in variables], root_rank=0)

    def barrier(self):
        self.hvd.allreduce(tf.constant(0.0), op=self.hvd.Sum, name='barrier')

    def weight_divergence(self, variables):
        hvd = self.hvd
        values = [tf.convert_to_tensor(v) for v in variables]
        means = hvd.grouped_allreduce(values, op=hvd.Average)
        local = tf.reduce_max([tf.reduce_max(tf.abs(v - m)) for v, m in zip(values, means)])
        return float(hvd.allreduce(local, op=hvd.Max).numpy())


class TFDistributeBackend(SingleDevice):
    """``tf.distribute.MultiWorkerMirroredStrategy``, one worker process per device, cluster from
    the ``TF_CONFIG`` environment variable (``scripts/prepare_8p.sh`` writes it).

    Keras' optimizer sums gradients over replicas, so each replica hands it ``grad / world_size``.
    Collectives time out after ``solver.collective_timeout`` seconds, so a dead peer makes the
    others fail with an error instead of hanging.
    """
    name = 'tf'
    stops_on_time = False  # no collective outside the step to agree on it
    conditional_apply = False  # MultiWorkerMirroredStrategy cannot synchronise inside tf.cond

    def __init__(self, timeout_seconds=60):
        raw = os.environ.get('TF_CONFIG')
        if not raw:
            raise DistributedError('solver.distributed=tf needs the TF_CONFIG environment variable '
                                   '(cluster + task); launch with bash scripts/run_8p_train.sh')
        try:
            tf_config = json.loads(raw)
            self.rank = int(tf_config['task']['index'])
            workers = tf_config['cluster']['worker']
        except (ValueError, KeyError, TypeError) as err:
            raise DistributedError(f'TF_CONFIG is not a valid cluster description: {err}') from err
        options = tf.distribute.experimental.CommunicationOptions(
            implementation=tf.distribute.experimental.CommunicationImplementation.RING,
            timeout_seconds=float(timeout_seconds))
        self.strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
        self.world_size = self.strategy.num_replicas_in_sync
        if self.world_size != len(workers):
            raise DistributedError(f'TF_CONFIG lists {len(workers)} workers but the strategy has '
                                   f'{self.world_size} replicas; use one device per worker')
        self.is_chief = self.rank == 0

    def scope(self):
        return self.strategy.scope()

    def run(self, fn, *args):
        out = self.strategy.run(fn, args=args)
        return tuple(self.strategy.experimental_local_results(o)[0] for o in out)

    def reduce_gradients(self, grads):
        return [g / self.world_size for g in grads]

    def all_true(self, flag):
        ctx = tf.distribute.get_replica_context()
        bad = ctx.all_reduce(tf.distribute.ReduceOp.SUM, 1.0 - tf.cast(flag, tf.float32))
        return bad < 0.5

    def mean_scalar(self, x):
        return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.MEAN, x)

    def weight_divergence(self, variables):
        # MirroredVariables hold one local copy per worker; compare those copies across workers
        values = [tf.identity(self.strategy.experimental_local_results(v.value if hasattr(v, 'value') else v)[0])
                  for v in variables]

        @tf.function
        def divergence():
            def replica_fn():
                ctx = tf.distribute.get_replica_context()
                means = ctx.all_reduce(tf.distribute.ReduceOp.MEAN, values)
                local = tf.reduce_max([tf.reduce_max(tf.abs(v - m)) for v, m in zip(values, means)])
                # all_reduce has no MAX: gather every worker's maximum instead
                return ctx.all_gather(local[None], axis=0)
            out = self.strategy.run(replica_fn)
            return tf.reduce_max(self.strategy.experimental_local_results(out)[0])

        return float(divergence().numpy())


def build_backend(cfg):
    kind = cfg.solver.distributed
    if kind == 'none':
        return SingleDevice()
    if kind == 'horovod':
        return HorovodBackend()
    if kind == 'tf':
        return TFDistributeBackend(cfg.solver.collective_timeout)
    raise ValueError(f"solver.distributed must be none, horovod or tf; got {kind!r}")
