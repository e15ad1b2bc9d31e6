"""Global magnitude pruning, as NeRV's ``train_nerv.py`` does it with ``torch.nn.utils.prune``.

Which weights: those of ``model.prunable_layers()`` -- for NeRV every stem Linear weight and every
block convolution weight; heads, biases and norms are never pruned (official ``param_to_prune``).

How: ``prune.global_unstructured(..., L1Unstructured, amount)`` ranks the magnitudes of all those
weights together and zeroes the ``round(amount * n)`` smallest of the ``n`` weights *still
unpruned* (its ``PruningContainer`` applies a new amount to the remaining entries only).

Schedule (official ``--prune_ratio R --prune_steps s_1 .. s_k``): ``base = R ** (1/k)``; at the
start of epoch ``int(s_j * epochs)`` the amount ``1 - base**j`` is applied to the remaining
weights. So ``R`` is the fraction of prunable weights **kept** (``--prune_ratio 0.4`` zeroes 60 %,
although the README calls it "the amount to be pruned"); with the default single step
``[0.]`` the kept fraction is exactly ``R``. With several steps the amounts compound (the
kept fraction ends at ``prod_j base**j = R**((k+1)/2)``, e.g. 0.4 -> 0.253 for 2 steps), which
:func:`prune_schedule` reproduces and reports.

Our models keep pruned weights at exactly zero while fine-tuning (``pruning=True``: zero weights
get no gradient), so the mask is the set of non-zero weights and needs no extra variables;
:func:`mask_optimizer_state` clears Adam's moments of newly pruned weights so they cannot drift
back.
"""
from collections import OrderedDict

import numpy as np

__all__ = ['prunable_variables', 'global_magnitude_prune', 'prune_model', 'prune_schedule',
           'sparsity', 'mask_optimizer_state']


def prunable_variables(model):
    """``OrderedDict{torch weight name: kernel variable}`` of the prunable weights."""
    return OrderedDict((f'{prefix}.weight', layer.kernel)
                       for prefix, layer in model.prunable_layers().items())


def global_magnitude_prune(arrays, amount):
    """Masks (bool arrays, True = kept) after pruning ``amount`` of the unpruned entries.

    ``arrays``: list of numpy arrays; entries that are exactly zero count as already pruned and
    stay pruned. Ties at the threshold are broken by position (stable sort).
    """
    if not 0.0 <= amount <= 1.0:
        raise ValueError(f'pruning amount must be in [0, 1]; got {amount}')
    flat = np.concatenate([np.abs(np.asarray(a, np.float64)).ravel() for a in arrays])
    alive = np.flatnonzero(flat != 0)
    n_prune = int(round(amount * alive.size))  # torch: round(amount * tensor_size)
    keep = flat != 0
    if n_prune:
        order = np.argsort(flat[alive], kind='stable')
        keep[alive[order[:n_prune]]] = False
    masks, start = [], 0
    for a in arrays:
        size = np.size(a)
        masks.append(keep[start:start + size].reshape(np.shape(a)))
        start += size
    return masks


def prune_model(model, amount):
    """Zero ``amount`` of the still-unpruned prunable weights of ``model`` (global magnitude).

    Returns a dict with the kept fraction of the prunable weights and of all parameters.
    """
    variables = prunable_variables(model)
    arrays = [v.numpy() for v in variables.values()]
    masks = global_magnitude_prune(arrays, amount)
    for var, arr, mask in zip(variables.values(), arrays, masks):
        var.assign(np.where(mask, arr, 0.0).astype(arr.dtype))
    return sparsity(model)


def sparsity(model):
    """Zero fractions: ``prunable_sparsity`` (of the prunable weights), ``sparsity`` (of all
    parameters, the official printout), and the counts behind them."""
    from ascendcv.layers.torch_compat import torch_state_variables
    prunable = prunable_variables(model)
    n_prunable = sum(int(np.prod(v.shape)) for v in prunable.values())
    z_prunable = sum(int(np.sum(v.numpy() == 0)) for v in prunable.values())
    params = [v for v, _ in torch_state_variables(model).values()]
    n_all = sum(int(np.prod(v.shape)) for v in params)
    z_all = sum(int(np.sum(v.numpy() == 0)) for v in params)
    return dict(prunable_params=n_prunable, prunable_zeros=z_prunable,
                prunable_sparsity=z_prunable / max(n_prunable, 1), params=n_all, zeros=z_all,
                sparsity=z_all / max(n_all, 1))


def prune_schedule(prune_ratio, prune_steps, epochs):
    """Official schedule: ``[(epoch, amount_on_remaining, kept_fraction_after), ...]``."""
    if not 0.0 < prune_ratio <= 1.0:
        raise ValueError(f'nerv.prune_ratio (fraction of prunable weights kept) must be in '
                         f'(0, 1]; got {prune_ratio}')
    steps = list(prune_steps) or [0.0]
    base = prune_ratio ** (1.0 / len(steps))
    out, kept = [], 1.0
    for j, frac in enumerate(steps, start=1):
        amount = 1.0 - base ** j
        kept *= 1.0 - amount
        out.append((int(frac * epochs), amount, kept))
    return out


def mask_optimizer_state(optimizer, variables):
    """Zero the Adam moments of the zero entries of ``variables`` (after pruning mid-run), so
    the update of a pruned weight stays exactly 0. Returns the number of slots touched."""
    touched = 0
    for var in variables:
        try:
            idx = optimizer._get_variable_index(var)
        except (AttributeError, KeyError):
            continue
        keep = (var.numpy() != 0).astype(np.float32)
        for slots in ('_momentums', '_velocities', '_velocity_hats'):
            lst = getattr(optimizer, slots, None)
            if lst and idx < len(lst):
                lst[idx].assign(lst[idx].numpy() * keep)
                touched += 1
    return touched
