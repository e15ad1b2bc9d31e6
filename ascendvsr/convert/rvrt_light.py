"""MindSpore checkpoints of mindediting's RVRT_LIGHT (and RVRT) -> our RVRT models.

mindediting (``mindediting/models/mutil_task/rvrt_light.py``, ``rvrt.py``) mirrors the module
tree of the official PyTorch RVRT (``models/network_rvrt.py``): the same attribute names, the same
``SequentialCell`` indices (``feat_extract.main.1`` conv, ``.main.3`` / ``.main.7`` LayerNorms,
``.main.5.<i>.residual_group.blocks.<j>`` Swin blocks, ``deform_align.<module>.proj_q.1`` ...,
``upsampler.0/5/10``). Its ``.ckpt`` names are therefore the PyTorch ``state_dict`` keys up to
these rules (applied here, then loaded with the PyTorch-named machinery of
:func:`ascendvsr.convert.common.assign_state_dict`):

* ``nn.LayerNorm`` parameters are ``gamma`` / ``beta`` -> ``weight`` / ``bias``.
* ``nn.Dense.weight`` is ``(out, in)`` like ``torch.nn.Linear.weight``, ``nn.Conv3d.weight`` is
  ``(out, in/groups, kd, kh, kw)`` like torch: same names, same layouts, no transposition here.
* ``<...>.attn.relative_position_bias`` (windows with relative position encoding) is derived
  state, ``table[index[:N, :N]]`` for the configured input size, used only when training on
  Ascend; mindediting writes it back into the table before saving and rebuilds it from the table
  after loading (``utils/checkpoint.py`` ``load_vrt``), so the table is the weight: it is dropped.
* ``relative_position_bias_table``, ``relative_position_index`` (an Int64 parameter),
  ``spynet.mean`` / ``spynet.std`` keep their names (PyTorch buffers of the same names).

The two MindSpore models differ from the PyTorch RVRT numerically (tanh-approximate GELU,
LayerNorm epsilon 1e-7): build ours with ``approximate_gelu=True, norm_eps=1e-7`` to run these
weights as mindediting ran them. Names are checked strictly: missing and unexpected names are
listed, and a checkpoint of the other RVRT variant, or of another model, is a clear error.
"""
import re
import warnings
from collections import OrderedDict

import numpy as np

from ascendcv.utils.mindspore_checkpoint import load_mindspore_checkpoint
from ascendcv.utils.torch_checkpoint import CheckpointError, load_state_dict
from ascendvsr.convert.common import assign_state_dict

__all__ = ['mindspore_to_torch_names', 'checkpoint_kind', 'read_rvrt_family_checkpoint',
           'load_rvrt_light_weights', 'load_rvrt_mindspore_weights']

_LN_RULES = ((re.compile(r'\.gamma$'), '.weight'), (re.compile(r'\.beta$'), '.bias'))
_DERIVED = re.compile(r'\.attn\.relative_position_bias$')


def mindspore_to_torch_names(tensors, source='checkpoint'):
    """MindSpore parameter names of the RVRT family -> PyTorch ``state_dict`` keys (rules in the
    module docstring). ``str`` entries (``append_dict`` metadata such as ``epoch_num``) and the
    derived ``relative_position_bias`` are left out."""
    out = OrderedDict()
    for name, value in tensors.items():
        if isinstance(value, str) or _DERIVED.search(name):
            continue
        new = name
        for pattern, repl in _LN_RULES:
            new = pattern.sub(repl, new)
        if new in out:
            raise CheckpointError(f'{source}: two entries map to the PyTorch name {new!r}')
        out[new] = value
    return out


def checkpoint_kind(names):
    """``'rvrt'`` (guided deformable attention: SpyNet / ``conv_offset`` weights),
    ``'rvrt_light'`` (recurrent stages without them) or ``None`` (not the RVRT family)."""
    names = list(names)
    if not any(n.startswith('deform_align.') for n in names) or \
            not any(n.startswith('backbone.') for n in names):
        return 'rvrt' if any(n.startswith('spynet.') for n in names) else None
    if any(n.startswith('spynet.') or '.conv_offset.' in n for n in names):
        return 'rvrt'
    return 'rvrt_light'


def _is_mindspore(path):
    with open(path, 'rb') as f:
        return f.read(1) == b'\x0a'  # a field-1 record; zip ('PK') and pickles (0x80) differ


def read_rvrt_family_checkpoint(path, key=None):
    """``(PyTorch-named state dict, format)`` of a MindSpore ``.ckpt`` (format ``'mindspore'``)
    or a PyTorch ``.pth`` (``'pytorch'``, e.g. the official ``{'params': sd}`` releases)."""
    path = str(path)
    try:
        mindspore = _is_mindspore(path)
    except OSError as err:
        raise CheckpointError(f'{path}: cannot read checkpoint ({err})') from err
    if mindspore:
        return mindspore_to_torch_names(load_mindspore_checkpoint(path), path), 'mindspore'
    try:
        return load_state_dict(path, key=key or None), 'pytorch'
    except CheckpointError as err:
        raise CheckpointError(f'{path}: neither a MindSpore .ckpt nor a PyTorch checkpoint '
                              f'({err})') from err


def _sample(names, limit=5):
    return ', '.join(list(names)[:limit])


_MODELS = {'rvrt': ('RVRT', 'guided deformable attention: SpyNet and conv_offset weights'),
           'rvrt_light': ('RVRT Light', 'local attention, no SpyNet, no conv_offset')}


def _check_kind(sd, path, fmt, expected):
    kind = checkpoint_kind(sd)
    if kind == expected:
        return
    origin = 'MindSpore' if fmt == 'mindspore' else 'PyTorch'
    name = _MODELS[expected][0]
    if kind is None:
        if sd and all(k.startswith('basic_module.') or k in ('mean', 'std') for k in sd):
            raise CheckpointError(f'{path} holds only a SpyNet (basic_module.* weights), not '
                                  f'{name}')
        raise CheckpointError(f'{path} is a {origin} checkpoint of another model, not {name}: it '
                              f'has no deform_align.* / backbone.* weights (first names: '
                              f'{_sample(sd)})')
    found, detail = _MODELS[kind]
    if kind == 'rvrt_light':
        hint = 'load it with model.name=RVRT-Light'
    elif fmt == 'mindspore':
        hint = ('load it into model.name=RVRT (rvrt.approximate_gelu=true, rvrt.norm_eps=1e-7) '
                'with ascendvsr.convert.rvrt_light.load_rvrt_mindspore_weights')
    else:
        hint = 'load it with model.name=RVRT'
    raise CheckpointError(f'{path} is a {origin} {found} checkpoint ({detail}), but the model is '
                          f'{name}; {hint}')


def _check_model(model, path, expected, fmt):
    """The model must be the expected variant; MindSpore weights want MindSpore numerics."""
    attention = getattr(model, 'attention', None)
    want = 'local' if expected == 'rvrt_light' else 'guided'
    if attention != want:
        raise CheckpointError(f'{path}: the model ({type(model).__name__} '
                              f'attention={attention!r}) is not {_MODELS[expected][0]} '
                              f'(attention={want!r})')
    arch = getattr(model, 'arch', {})
    if fmt == 'mindspore' and (not arch.get('approximate_gelu') or arch.get('norm_eps') != 1e-7):
        warnings.warn(f'{path}: MindSpore weights loaded into a model with approximate_gelu='
                      f'{arch.get("approximate_gelu")}, norm_eps={arch.get("norm_eps")}; '
                      f'mindediting ran them with tanh GELU and LayerNorm eps 1e-7 (set '
                      f'approximate_gelu=true, norm_eps=1e-7 to reproduce its outputs)',
                      stacklevel=3)


def _assign(model, sd, path):
    # integer buffers (relative_position_index) load as float32 like every weight; they are exact
    sd = OrderedDict((k, np.asarray(v, np.float32)) for k, v in sd.items())
    assign_state_dict(model, sd, source=str(path))
    return model


def load_rvrt_light_weights(model, path, key=None):
    """Load mindediting's RVRT_LIGHT ``.ckpt`` (or a PyTorch-named RVRT Light state dict) into
    our RVRT built as RVRT Light. An RVRT checkpoint (PyTorch or MindSpore) or one of another
    model raises :class:`CheckpointError` saying what it is."""
    sd, fmt = read_rvrt_family_checkpoint(path, key)
    _check_kind(sd, path, fmt, 'rvrt_light')
    _check_model(model, path, 'rvrt_light', fmt)
    return _assign(model, sd, path)


def load_rvrt_mindspore_weights(model, path, key=None):
    """Load mindediting's full RVRT ``.ckpt`` (with its SpyNet) into our RVRT (guided
    deformable attention); an RVRT Light checkpoint or one of another model is an error."""
    path = str(path)
    sd, fmt = read_rvrt_family_checkpoint(path, key)
    if fmt != 'mindspore':
        raise CheckpointError(f'{path} is a PyTorch checkpoint; this loader reads mindediting\'s '
                              f'MindSpore .ckpt (official PyTorch RVRT weights load with the '
                              f'RVRT converter)')
    _check_kind(sd, path, fmt, 'rvrt')
    _check_model(model, path, 'rvrt', fmt)
    return _assign(model, sd, path)
