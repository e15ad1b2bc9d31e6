"""Distributed backends, invisible to models. ``solver.distributed``: none | horovod | tf.

A backend tells the trainer its ``rank``/``world_size``, whether it is the chief (the only rank
that writes logs, TensorBoard and checkpoints), how to average gradients (``wrap_tape``) and
scalars, and how to broadcast initial variables.
"""


class SingleDevice:
    """One process, one device."""
    rank, world_size, is_chief = 0, 1, True

    def wrap_tape(self, tape):
        return tape

    def average_scalar(self, x):
        return x

    def broadcast_initial(self, *variable_lists):
        pass

    def barrier(self):
        pass


def build_backend(cfg):
    kind = cfg.solver.distributed
    if kind == 'none':
        return SingleDevice()
    raise ValueError(f"solver.distributed={kind!r} is not available yet; use 'none'")
