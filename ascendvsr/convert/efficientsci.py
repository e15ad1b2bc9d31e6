"""Official EfficientSCI checkpoints -> our EfficientSCI, without torch.

Reads (:mod:`ascendcv.utils.torch_checkpoint`, restricted unpickling):

* the official ``tools/train.py`` format ``{'epoch', 'model_state_dict', 'optim_state_dict'}``
  (only ``model_state_dict`` is used; the Adam state is not carried over);
* raw state dicts (``torch.save(model.state_dict())``; what ``tools/test.py`` also accepts),
  with a shared ``module.`` prefix (DataParallel) removed.

The architecture (``in_ch``, ``units``, ``group_num``, ``color_ch``) is inferred from the tensor
shapes and compared with the model's before anything is assigned: a checkpoint of another size
(e.g. EfficientSCI-B into an -S config) is refused naming each differing value (the official
loader would print "load model error!" and run with random weights); then missing / unexpected
keys and shape mismatches are listed (:func:`ascendvsr.convert.common.assign_state_dict`).
"""
import re

from ascendcv.utils.torch_checkpoint import CheckpointError, load_state_dict, load_torch_file
from ascendvsr.convert.common import assign_state_dict

__all__ = ['read_efficientsci_state_dict', 'infer_efficientsci_arch', 'assign_efficientsci_state',
           'load_efficientsci_weights']


def read_efficientsci_state_dict(path, key=None):
    """The flat state dict of an official EfficientSCI file (train.py dict or raw state dict;
    ``key`` selects a top-level entry explicitly)."""
    if key is None:
        obj = load_torch_file(path)
        if isinstance(obj, dict) and 'model_state_dict' in obj:
            key = 'model_state_dict'
    sd = load_state_dict(path, key=key)
    if not isinstance(sd, dict):
        raise CheckpointError(f'{path}: no state dict found (got {type(sd).__name__})')
    return sd


def _shape(sd, key):
    return tuple(getattr(sd[key], 'shape', ())) if key in sd else None


def infer_efficientsci_arch(sd, source='checkpoint'):
    """``{'in_ch', 'units', 'group_num', 'color_ch'}`` implied by an official state dict.

    ``in_ch`` and ``color_ch`` from ``fem.0.weight`` (in_ch, 1, 3, 7, 7) / ``vrm.4.weight``
    (color_ch, in_ch, 3, 3, 3); ``units`` from the ``resdnet_list.<u>`` indices; ``group_num``
    from the ``cformer_list.<g>`` indices of unit 0 (None without units).
    """
    fem = _shape(sd, 'fem.0.weight')
    if fem is None or len(fem) != 5:
        sample = ', '.join(list(sd)[:5])
        raise CheckpointError(f'{source} is not an EfficientSCI state dict (no 5-D fem.0.weight; '
                              f'first keys: {sample})')
    vrm = _shape(sd, 'vrm.4.weight')
    units = {int(m.group(1)) for k in sd for m in [re.match(r'resdnet_list\.(\d+)\.', k)] if m}
    groups = {int(m.group(1)) for k in sd
              for m in [re.match(r'resdnet_list\.0\.cformer_list\.(\d+)\.', k)] if m}
    return dict(in_ch=int(fem[0]), units=max(units) + 1 if units else 0,
                group_num=max(groups) + 1 if groups else None,
                color_ch=int(vrm[0]) if vrm else None)


def assign_efficientsci_state(model, sd, source='checkpoint'):
    """Check an official state dict against ``model`` (architecture first, then keys and
    shapes) and copy it in; returns ``model``."""
    arch = infer_efficientsci_arch(sd, source)
    diffs = [f'{k}: checkpoint {v} vs model {model.arch[k]}' for k, v in arch.items()
             if v is not None and model.arch[k] != v]
    if diffs:
        raise CheckpointError(f'{source} holds an EfficientSCI of another size than the '
                              f'configured model: ' + '; '.join(diffs)
                              + ' (set efficientsci.in_ch / units / group_num / color_ch; sizes '
                                'T/S/B/L = (16,8,2) / (32,8,2) / (64,8,4) / (64,12,4))')
    assign_state_dict(model, sd, source=source)
    return model


def load_efficientsci_weights(model, path, key=None):
    """Load an official EfficientSCI ``.pth`` into ``model``; returns ``model``."""
    return assign_efficientsci_state(model, read_efficientsci_state_dict(path, key), source=path)
