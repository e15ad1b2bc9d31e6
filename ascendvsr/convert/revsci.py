"""Official RevSCI-net checkpoints -> our RevSCI.

Reads, without torch and without the official classes (:mod:`ascendcv.utils.torch_checkpoint`):

* whole pickled modules, what the official ``train.py`` writes (``torch.save(net)``; zip or
  legacy format, also wrapped in ``DataParallel``): the weights **and** the sensing mask, the
  module attribute ``mask`` ``(cr, H, W)``, which is not part of the state dict;
* plain state dicts (``torch.save(net.state_dict())``, also ``{'state_dict': sd}`` etc. and
  legacy files with storages on ``cuda:0``): the weights only; the model keeps the stored mask it
  has (from ``build_revsci(cfg, mask=...)`` or :meth:`RevSCI.set_mask`; none by default). That is
  enough for everything the SCI task does -- training, evaluation, inference and the frozen
  graph pass each measurement's mask (``sci.mask_file`` or the benchmark file's own) -- only a
  call without a mask, ``model(meas_re)``, needs a stored one.

The variant (``re_3dcnn`` / ``re_3dcnn1`` / ``color``, the colour model, recognised by its
``fuse_r`` weights), ``num_block`` and ``num_group`` are inferred from the
keys and compared with the model's; a mismatch, a mask of another size, missing or unexpected
keys raise :class:`CheckpointError` naming the file and what differs.
"""
import re

import numpy as np

from ascendcv.utils.torch_checkpoint import (CheckpointError, PickledObject, get_attr,
                                             load_state_dict, load_torch_file, module_state_dict)
from ascendvsr.convert.common import assign_state_dict

_WRAPPERS = ('DataParallel', 'DistributedDataParallel')


def infer_revsci_arch(sd):
    """``{'variant', 'num_block', 'num_group'}`` implied by an official RevSCI state dict.

    ``num_group`` is None for ``re_3dcnn1``. Raises :class:`CheckpointError` for other models.
    """
    blocks = {int(m.group(1)) for k in sd for m in [re.match(r'layers\.(\d+)\.', k)] if m}
    if 'fuse_r.0.weight' in sd:  # only the colour model has fuse_r (and 2 input channels)
        variant, num_group = 'color', None
    elif any(re.match(r'layers\.\d+\.f\.\d+\.nn_layer\.', k) for k in sd):
        variant = 're_3dcnn'
        groups = {int(m.group(1)) for k in sd
                  for m in [re.match(r'layers\.0\.f\.(\d+)\.nn_layer\.', k)] if m}
        num_group = max(groups) + 1 if groups else 0
    elif any(re.match(r'layers\.\d+\.(f1|g1)\.', k) for k in sd):
        variant, num_group = 're_3dcnn1', None
    elif 'conv1.0.weight' in sd and 'conv2.6.weight' in sd and not blocks:
        variant, num_group = None, None  # no blocks: either variant fits
    else:
        sample = ', '.join(list(sd)[:5])
        raise CheckpointError(f'not a RevSCI checkpoint (no conv1/conv2/layers.* RevSCI weights; '
                              f'first keys: {sample})')
    return dict(variant=variant, num_block=max(blocks) + 1 if blocks else 0, num_group=num_group)


def read_revsci_checkpoint(path, key=None):
    """``(state_dict, mask or None, class_name or None)`` from an official RevSCI file.

    ``mask`` is the pickled module's ``mask`` attribute as stored, ``(cr, H, W)``.
    """
    obj = load_torch_file(path)
    if key is None and isinstance(obj, PickledObject):
        if obj.name in _WRAPPERS:
            obj = get_attr(obj, 'module')
        try:
            sd = module_state_dict(obj)
        except CheckpointError as err:
            raise CheckpointError(f'{path}: {err}') from err
        try:
            mask = np.asarray(get_attr(obj, 'mask'), dtype=np.float32)
        except AttributeError:
            mask = None
        return sd, mask, f'{obj.module}.{obj.name}'
    return load_state_dict(path, key=key), None, None


def load_revsci_weights(model, path, key=None):
    """Load an official RevSCI ``.pth`` (whole module or state dict) into ``model``.

    With a whole-module checkpoint the model's stored mask is replaced by the checkpoint's; a
    state dict leaves it as it is. Returns ``model``.
    """
    sd, mask, cls = read_revsci_checkpoint(path, key)
    return assign_revsci_state(model, sd, mask, source=f'{path} ({cls or "state dict"})',
                               class_name=cls)


def assign_revsci_state(model, sd, mask=None, source='checkpoint', class_name=None):
    """Check an official RevSCI state dict (+ optional mask ``(cr, H, W)``) against ``model``
    and copy it in. ``source`` names the origin in error messages."""
    arch = infer_revsci_arch(sd)
    official = (class_name or '').split('.')[-1]
    # the colour model's official class is also named re_3dcnn1 (in "color model/models.py")
    allowed = {'re_3dcnn': ('re_3dcnn',), 're_3dcnn1': ('re_3dcnn1', 'color')}.get(official)
    if allowed and arch['variant'] not in (None, *allowed):
        raise CheckpointError(f'{source}: class {official} but {arch["variant"]} weight names')
    if official in ('re_3dcnn', 're_3dcnn1') and arch['variant'] is None:
        arch['variant'] = official
    diffs = [f'{k}: checkpoint {v} vs model {model.arch[k]}' for k, v in arch.items()
             if v is not None and model.arch.get(k) != v]
    if diffs:
        raise CheckpointError(f'{source} holds a RevSCI with other hyper-parameters than the '
                              f'configured model: ' + '; '.join(diffs)
                              + ' (set revsci.variant / revsci.num_block / revsci.num_group)')
    if 'mask' in sd:
        raise CheckpointError(f'{source}: unexpected tensor "mask" among the weights')
    sd = dict(sd)
    if mask is not None:
        mask = np.asarray(mask, dtype=np.float32)
        expected = (model.compress_ratio, *model.mask_size)
        if mask.shape != expected:
            raise CheckpointError(f'{source}: its mask is (cr, H, W) = {mask.shape}, the model was '
                                  f'built for {expected} (set sci.compression_ratio and '
                                  f'revsci.mask_size to match)')
        sd['mask'] = mask
    else:  # a state dict carries no mask: keep the model's (all zeros when none was stored)
        sd['mask'] = np.transpose(model.mask.numpy(), (2, 0, 1))
    assign_state_dict(model, sd, source=source)
    return model
