"""Post-training weight quantisation as NeRV's evaluation does it (``utils.quantize_per_tensor``).

For a tensor ``t`` (PyTorch layout), bit width ``b`` and ``axis``:

* ranges come from the **non-zero** entries only (``t != 0``): per tensor (``axis=-1``), per
  index of dim 0 (``axis=0``: output channels of Conv2d/Linear weights) or of dim 1
  (``axis=1``); a slice with no non-zero entry gets min = max = 0;
* ``scale = (max - min) / 2**b``, ``q = round((t - min) / (scale + 1e-19))``,
  ``t' = min + scale * q``.

So ``q`` spans ``0 .. 2**b`` -- ``2**b + 1`` levels, one more than ``b`` bits hold (an official
quirk we keep so numbers match; the bpp accounting charges ``b`` bits per value, as the paper).

Which tensors (official ``evaluate``): every state-dict tensor; weights of rank 2 or 4 whose name
has no ``bias`` use ``quant_axis``, all others (biases, norm parameters) are per tensor. The
official code re-quantises pruned zeros too, so they come back as small non-zero values (within
``scale / 2`` of 0). With ``keep_zeros=True`` (our default) entries that were exactly zero stay
zero, which is what the bpp accounting assumes (zeros are not stored); ``keep_zeros=False``
reproduces the official weights exactly.
"""
import numpy as np

from ascendcv.layers.torch_compat import torch_state_dict, torch_state_variables

__all__ = ['quantize_per_tensor', 'quantize_state_dict', 'quantize_model', 'tensor_axis']


def quantize_per_tensor(t, bit=8, axis=-1):
    """Official ``quantize_per_tensor`` in numpy (float32): returns ``(q, dequantised)``.

    ``q`` holds the integer codes (as float32, ``0 .. 2**bit``), ``dequantised`` the weights.
    """
    t = np.asarray(t, np.float32)
    if axis not in (-1, 0, 1):
        raise ValueError(f'quant_axis must be -1 (per tensor), 0 or 1; got {axis}')
    if axis == -1 or t.ndim < 2:
        valid = t[t != 0]
        t_min = valid.min() if valid.size else np.float32(0)
        t_max = valid.max() if valid.size else np.float32(0)
        scale = (t_max - t_min) / np.float32(2 ** bit)
    else:
        moved = np.moveaxis(t, axis, 0).reshape(t.shape[axis], -1)
        mins = np.zeros(len(moved), np.float32)
        maxs = np.zeros(len(moved), np.float32)
        for i, row in enumerate(moved):
            valid = row[row != 0]
            if valid.size:
                mins[i], maxs[i] = valid.min(), valid.max()
        shape = [1] * t.ndim
        shape[axis] = -1
        t_min = mins.reshape(shape)
        scale = ((maxs - mins) / np.float32(2 ** bit)).reshape(shape)
    q = np.round((t - t_min) / (scale + np.float32(1e-19))).astype(np.float32)
    return q, (t_min + scale * q).astype(np.float32)


def tensor_axis(name, array, quant_axis):
    """The axis the official code quantises ``name`` with (``quant_axis`` or -1)."""
    large = np.ndim(array) in (2, 4) and 'bias' not in name
    return quant_axis if large else -1


def quantize_state_dict(state_dict, bit, axis=0, keep_zeros=True):
    """Quantise a PyTorch-layout state dict; returns ``(new_state_dict, codes)`` where
    ``codes[name]`` are the integer codes of the stored (non-zero) entries."""
    if not 1 <= int(bit) <= 32:
        raise ValueError(f'quant_bit must be in 1..32; got {bit}')
    new, codes = {}, {}
    for name, value in state_dict.items():
        value = np.asarray(value, np.float32)
        q, deq = quantize_per_tensor(value, bit, tensor_axis(name, value, axis))
        nonzero = value != 0
        if keep_zeros:
            deq = np.where(nonzero, deq, np.float32(0))
        new[name] = deq
        codes[name] = q[nonzero].astype(np.int64)
    return new, codes


def quantize_model(model, bit, axis=0, keep_zeros=True):
    """Quantise every parameter of ``model`` in place (official per-tensor/per-axis rule, on
    PyTorch layouts so ``axis=0`` means output channels). Returns the integer codes of the
    stored values (``{torch name: int64 array}``) for entropy/bpp accounting."""
    targets = torch_state_variables(model)
    new, codes = quantize_state_dict(torch_state_dict(model), bit, axis, keep_zeros)
    for name, (var, to_tf) in targets.items():
        var.assign(to_tf(new[name]).astype(np.float32))
    return codes
