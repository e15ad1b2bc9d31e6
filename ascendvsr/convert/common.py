"""Shared machinery for official-checkpoint converters: key and shape checks, assignment."""
import numpy as np

from ascendcv.layers.torch_compat import torch_state_variables
from ascendcv.utils.torch_checkpoint import CheckpointError


def _fmt(keys, limit=20):
    keys = sorted(keys)
    more = f' ... (+{len(keys) - limit} more)' if len(keys) > limit else ''
    return ', '.join(keys[:limit]) + more


def assign_state_dict(model, state_dict, source='checkpoint'):
    """Copy a PyTorch-named state dict into ``model``'s variables (after layout conversion).

    Raises :class:`CheckpointError` listing missing and unexpected keys, or the first tensors
    whose shapes differ, before any variable is touched.
    """
    targets = torch_state_variables(model)
    missing = set(targets) - set(state_dict)
    unexpected = set(state_dict) - set(targets)
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f'missing keys ({len(missing)}): {_fmt(missing)}')
        if unexpected:
            parts.append(f'unexpected keys ({len(unexpected)}): {_fmt(unexpected)}')
        raise CheckpointError(f'{source} does not match the {model.name} model: ' + '; '.join(parts))
    converted, bad = {}, []
    for key, (var, to_tf) in targets.items():
        value = to_tf(np.asarray(state_dict[key], dtype=np.float32))
        if tuple(value.shape) != tuple(var.shape):
            bad.append(f'{key}: checkpoint {tuple(value.shape)} vs model {tuple(var.shape)}')
        converted[key] = value
    if bad:
        raise CheckpointError(f'{source}: tensor shapes differ from the {model.name} model '
                              f'({len(bad)}): ' + '; '.join(bad[:10]))
    for key, (var, _) in targets.items():
        var.assign(converted[key])
    return len(targets)
