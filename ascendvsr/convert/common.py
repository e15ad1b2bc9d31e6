"""Shared machinery for official-checkpoint converters: key checks, layout maps, TF save."""
import os
import shutil
import tempfile

import numpy as np
import tensorflow as tf

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


def save_tf_checkpoint(model, prefix):
    """Write ``model``'s weights as a TF checkpoint at ``prefix`` atomically.

    The files are written under a temporary name in the same folder and renamed into place, so an
    interrupted conversion never leaves a half-written checkpoint under the final name.
    Returns the prefix.
    """
    folder = os.path.dirname(os.path.abspath(prefix))
    os.makedirs(folder, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix='.tmp_ckpt_', dir=folder)
    try:
        written = tf.train.Checkpoint(model=model).write(os.path.join(tmp, 'ckpt'))
        for path in tf.io.gfile.glob(written + '*'):
            suffix = os.path.basename(path)[len('ckpt'):]
            os.replace(path, os.path.abspath(prefix) + suffix)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return prefix


def load_tf_checkpoint(model, prefix):
    """Restore ``model`` from a TF checkpoint prefix (or a folder holding one); all weights
    must be present (a checkpoint of another model is an error naming both)."""
    if os.path.isdir(prefix):
        latest = tf.train.latest_checkpoint(prefix)
        if latest is None:
            raise CheckpointError(f'no TF checkpoint found in folder {prefix}')
        prefix = latest
    if not tf.io.gfile.exists(prefix + '.index'):
        raise CheckpointError(f'TF checkpoint not found: {prefix} (expected {prefix}.index)')
    try:
        status = tf.train.Checkpoint(model=model).read(prefix)
        # every variable of the model must receive a value; extra entries (optimizer slots,
        # step counters of a training checkpoint) are allowed
        status.assert_existing_objects_matched()
        status.expect_partial()
    except (AssertionError, ValueError, tf.errors.OpError) as err:
        raise CheckpointError(f'{prefix} is not a checkpoint of this {model.name} model '
                              f'({type(err).__name__}: {str(err).splitlines()[0][:300]})') from err
    return prefix
