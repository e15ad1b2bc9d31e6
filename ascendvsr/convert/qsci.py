"""Official Q-SCI checkpoints -> our Q-SCI, and the QAT start from a full-precision EfficientSCI.

Reads, without torch (:mod:`ascendcv.utils.torch_checkpoint`): the official ``tools/train.py``
format ``{'epoch', 'model_state_dict', 'optim_state_dict'}`` (only the weights are used) and raw
state dicts (what ``tools/test.py`` also accepts).

**Q-SCI checkpoints** (:func:`load_qsci_weights`, ``--mode convert`` and evaluation): the module
tree is inferred from the keys -- the 8-bit tree (``fem.0.*``, ``vrm.4.*``) or the low-bit tree
(``fem_conv1_1.*`` ... with the parallel 8-bit branches, bit depths 2..7) -- with ``in_ch``,
``units``, ``group_num`` and ``color_ch`` from the shapes, and compared with the configured
model before anything is assigned. The official loader (``load_checkpoints(strict=True)``
inside a bare ``try``) only prints "load model error!" and evaluates with uninitialised
quantizers; ours raises :class:`CheckpointError` naming what differs, e.g. a 4-bit checkpoint
into an 8-bit config. A full-precision EfficientSCI checkpoint (no quantizer parameters) is
refused too, pointing at the QAT start below. Then every key and shape must match
(:func:`ascendvsr.convert.common.assign_state_dict`). The checkpoint does not record *which* of
2..7 bits a low-bit model was trained with (the tree and every shape are the same, as in the
official code, where ``bit_depth`` is a config value): set ``qsci.bit_depth`` to the file's
(the released files are named ``2bit.pth`` ... ``8bit.pth``).

**QAT from full precision** (:func:`init_qsci_from_float`, ``qsci.init_from``): the official
config (``configs/quantized_sci/quantized_sci.py``:
``checkpoints="checkpoints/full_precision.pth"``) starts training from a full-precision EfficientSCI through ``tools/train.py``'s non-strict
``load_checkpoints``: every tensor whose name and shape exist in the Q-SCI tree is copied, the
rest of the checkpoint is ignored and the rest of the model keeps its initialisation. Hence

* ``bit_depth == 8``: every weight and bias (the trees have the same names) comes from the
  EfficientSCI; the quantizers (``alpha``, ``zero_point``, ``moveq``/``movek``...) are not in it
  and stay uninitialised until the first training iteration sets them (the calibration pass);
* ``bit_depth < 8``: the ResDNet units and ``up_conv`` come from the EfficientSCI; its
  ``fem.*`` and ``vrm.*`` are not used (no such modules), so the twelve ``fem_conv*`` /
  ``vrm_conv*`` convs keep their random PyTorch-default initialisation and train from scratch;
  quantizers as above.

Ours does the same, except that an EfficientSCI of another size (``in_ch`` / ``units`` /
``group_num`` / ``color_ch``) is refused (the official loader would skip every mismatched
tensor silently). The source is an official ``.pth`` or a TF checkpoint of our EfficientSCI
(e.g. trained with ``configs/efficientsci_small.yaml``).
"""
import os
import re

import numpy as np

from ascendcv.layers.torch_compat import torch_state_dict, torch_state_variables
from ascendcv.utils.torch_checkpoint import CheckpointError
from ascendvsr.convert.common import assign_state_dict
from ascendvsr.convert.efficientsci import infer_efficientsci_arch, read_efficientsci_state_dict

__all__ = ['infer_qsci_arch', 'assign_qsci_state', 'load_qsci_weights', 'read_float_state_dict',
           'init_qsci_from_float']

TREE_8 = '8-bit tree (fem.0/2/4, vrm.0/2/4)'
TREE_LOW = 'low-bit tree (bit_depth < 8: fem_conv*/vrm_conv* with parallel 8-bit 1x1 branches)'


def _shape(sd, key):
    return tuple(np.shape(sd[key])) if key in sd else None


def infer_qsci_arch(sd, source='checkpoint'):
    """``{'tree', 'quantized', 'in_ch', 'units', 'group_num', 'color_ch'}`` of an official
    Q-SCI (or full-precision EfficientSCI) state dict; ``tree`` is :data:`TREE_8` or
    :data:`TREE_LOW`, ``quantized`` whether it holds quantizer parameters (``*.alpha``)."""
    if 'fem.0.weight' in sd:
        tree, first, last = TREE_8, 'fem.0.weight', 'vrm.4.weight'
    elif 'fem_conv1_1.0.weight' in sd:
        tree, first, last = TREE_LOW, 'fem_conv1_1.0.weight', 'vrm_conv3_1.weight'
    else:
        raise CheckpointError(f'{source} is not a Q-SCI / EfficientSCI state dict (neither '
                              f'fem.0.weight nor fem_conv1_1.0.weight; first keys: '
                              f'{", ".join(list(sd)[:5])})')
    fem, vrm = _shape(sd, first), _shape(sd, last)
    units = {int(m.group(1)) for k in sd for m in [re.match(r'resdnet_list\.(\d+)\.', k)] if m}
    groups = {int(m.group(1)) for k in sd
              for m in [re.match(r'resdnet_list\.0\.cformer_list\.(\d+)\.', k)] if m}
    return dict(tree=tree, quantized=any(k.endswith('.alpha') for k in sd),
                in_ch=int(fem[0]), units=max(units) + 1 if units else 0,
                group_num=max(groups) + 1 if groups else None,
                color_ch=int(vrm[0]) if vrm else None)


def _size_diffs(arch, model):
    return [f'{k}: checkpoint {arch[k]} vs model {model.arch[k]}'
            for k in ('in_ch', 'units', 'group_num', 'color_ch')
            if arch.get(k) is not None and arch[k] != model.arch[k]]


def assign_qsci_state(model, sd, source='checkpoint'):
    """Check an official Q-SCI state dict against ``model`` (tree, sizes, then keys and
    shapes) and copy it in; returns ``model``."""
    arch = infer_qsci_arch(sd, source)
    if not arch['quantized']:
        raise CheckpointError(f'{source} is a full-precision EfficientSCI checkpoint (no '
                              f'quantizer parameters), not a Q-SCI one: to start quantization-'
                              f'aware training from it, as the official config does, set '
                              f'qsci.init_from={source} and train')
    want = TREE_8 if model.bit_depth == 8 else TREE_LOW
    if arch['tree'] != want:
        held = '8-bit' if arch['tree'] == TREE_8 else 'low-bit (2..7-bit)'
        raise CheckpointError(f'{source} holds a {held} Q-SCI, the {arch["tree"]}, but the '
                              f'model is configured with qsci.bit_depth={model.bit_depth}, the '
                              f'{want}: set qsci.bit_depth to the checkpoint\'s')
    diffs = _size_diffs(arch, model)
    if diffs:
        raise CheckpointError(f'{source} holds a Q-SCI of another size than the configured '
                              f'model: ' + '; '.join(diffs)
                              + ' (set qsci.in_ch / units / group_num / color_ch)')
    assign_state_dict(model, sd, source=source)
    return model


def load_qsci_weights(model, path, key=None):
    """Load an official Q-SCI ``.pth`` into ``model``; returns ``model``."""
    return assign_qsci_state(model, read_efficientsci_state_dict(path, key), source=path)


def _is_tf_checkpoint(path):
    return os.path.isdir(path) or os.path.exists(path + '.index')


def read_float_state_dict(path, model, key=None):
    """The PyTorch-named state dict of a full-precision EfficientSCI: an official ``.pth`` or a
    TF checkpoint (prefix or folder) of our EfficientSCI of ``model``'s size."""
    if not _is_tf_checkpoint(path):
        return read_efficientsci_state_dict(path, key)
    from ascendcv.runner.checkpoint import restore_checkpoint
    from ascendvsr.models.efficientsci import EfficientSCI
    a = model.arch
    float_model = EfficientSCI(a['in_ch'], a['units'], a['group_num'], a['color_ch'],
                               model.compress_ratio, name='EfficientSCI')
    try:
        restore_checkpoint(float_model, path)
    except CheckpointError as err:
        raise CheckpointError(f'qsci.init_from={path}: not a TF checkpoint of an EfficientSCI '
                              f'of the Q-SCI\'s size {dict(a)} ({err})') from None
    return torch_state_dict(float_model)


def init_qsci_from_float(model, path, key=None, logger=None):
    """The official QAT start: copy a full-precision EfficientSCI into ``model`` by name and
    shape (see the module docstring). Returns ``dict(loaded, unused, kept)``: the model keys
    copied, the checkpoint keys without a counterpart, the model keys left as they are."""
    sd = read_float_state_dict(path, model, key)
    if any(k.endswith('.alpha') for k in sd):
        raise CheckpointError(f'qsci.init_from={path} holds quantizer parameters (a Q-SCI '
                              f'checkpoint): give a full-precision EfficientSCI, or load the '
                              f'Q-SCI checkpoint with model.checkpoint / --mode convert')
    arch = infer_efficientsci_arch(sd, source=path)
    diffs = _size_diffs(arch, model)
    if diffs:
        raise CheckpointError(f'qsci.init_from={path} holds an EfficientSCI of another size '
                              f'than the Q-SCI: ' + '; '.join(diffs))
    targets = torch_state_variables(model)
    loaded, bad = [], []
    for name, value in sd.items():
        if name in targets:
            var, to_tf = targets[name]
            value = to_tf(np.asarray(value, np.float32))
            if tuple(value.shape) != tuple(var.shape):
                bad.append(f'{name}: {value.shape} vs {tuple(var.shape)}')
            loaded.append((name, var, value))
    if bad:
        raise CheckpointError(f'qsci.init_from={path}: shapes differ from the Q-SCI: '
                              + '; '.join(bad[:8]))
    for _, var, value in loaded:
        var.assign(value)
    names = {n for n, _, _ in loaded}
    report = dict(loaded=sorted(names), unused=sorted(set(sd) - names),
                  kept=sorted(set(targets) - names))
    if logger is not None:
        logger(f'Q-SCI initialised from the full-precision {path}: {len(names)} tensors copied, '
               f'{len(report["unused"])} of the checkpoint unused'
               + (f' ({", ".join(report["unused"][:4])} ...)' if report['unused'] else '')
               + f', {len(report["kept"])} model tensors kept (quantizers'
               + (', the parallel-branch FEM/VRM' if model.bit_depth < 8 else '') + ')')
    return report
