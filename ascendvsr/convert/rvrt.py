"""Official RVRT checkpoints -> our RVRT (no torch).

* **RVRT releases** (JingyunLiang/RVRT ``model_zoo``: ``001_RVRT_videosr_bi_REDS_30frames.pth``,
  ``002_RVRT_videosr_bi_Vimeo_14frames.pth`` ...): ``{'params': state_dict}`` with every key of
  the model, including ``spynet.*`` and the ``relative_position_index`` / ``spynet.mean`` /
  ``spynet.std`` buffers; loaded with strict key matching (``main_test_rvrt.py`` loads them
  with ``strict=True``): missing or unexpected keys are an error that lists them.
* **SpyNet releases** (``spynet_sintel_final-3d2a1287.pth``: ``{'params':
  {'basic_module...'}}``) load on their own into ``model.spynet`` with
  :func:`load_rvrt_spynet`; given as a whole RVRT checkpoint they are refused with that hint.
* RVRT checkpoints whose state dict lacks ``spynet.*`` (e.g. the split test fixture) load with
  ``spynet=<SpyNet release>``: the two are merged as ``'spynet.' + key``.
* MindSpore checkpoints (``.ckpt``): mindediting's RVRT weights go to
  :func:`ascendvsr.convert.rvrt_light.load_rvrt_mindspore_weights` (MindSpore names mapped;
  checked with mindediting-named copies of the official weights, no real mindediting RVRT
  release was at hand); they should run with ``rvrt.approximate_gelu=true rvrt.norm_eps=1e-7``.
  An RVRT Light one points to ``model.name=RVRT-Light``.
"""
from collections import OrderedDict

from ascendcv.layers.spynet import load_spynet_weights
from ascendcv.utils.torch_checkpoint import CheckpointError, load_state_dict
from ascendvsr.convert.common import assign_state_dict

SPYNET_PREFIX = 'spynet.'


def _is_mindspore_ckpt(path):
    """True for a MindSpore ``.ckpt``: a protobuf stream of ``Checkpoint.Value`` records
    (field 1, length-delimited: byte 0x0A, a varint length, then the record's own field 1, the
    parameter name: 0x0A again). Torch files start with 'PK' (zip) or 0x80 (pickle)."""
    try:
        with open(path, 'rb') as f:
            head = f.read(16)
    except OSError:
        return False
    if head[:1] != b'\x0a':
        return False
    i = 1
    while i < len(head) and head[i] & 0x80:  # skip the varint length
        i += 1
    return i + 1 < len(head) and head[i + 1:i + 2] == b'\x0a'


def _mindspore_message(path):
    """Why a MindSpore ``.ckpt`` is refused, after a look at its parameter names."""
    from ascendcv.utils.mindspore_checkpoint import load_mindspore_checkpoint
    try:
        names = list(load_mindspore_checkpoint(path))
    except CheckpointError as err:
        return f'{path} looks like a MindSpore checkpoint but cannot be read: {err}'
    light = any(n.startswith('deform_align.') for n in names) and not any(
        '.conv_offset.' in n or n.startswith('spynet.') for n in names)
    if light:
        return (f'{path} is a MindSpore RVRT Light checkpoint (mindediting; no SpyNet, no '
                f'conv_offset), not an official PyTorch RVRT release: load it with '
                f'model.name=RVRT-Light')
    return (f'{path} is a MindSpore checkpoint ({len(names)} parameters, first '
            f'{names[:3]}), not an official PyTorch RVRT release ({{"params": state_dict}} .pth); '
            f'mindediting RVRT weights are not converted here: use the official PyTorch release '
            f'(model_zoo of JingyunLiang/RVRT)')


def _is_spynet_release(sd):
    return bool(sd) and all(k.startswith('basic_module.') or k in ('mean', 'std') for k in sd)


def read_rvrt_state_dict(path, spynet=None, key=None):
    """The official RVRT state dict of ``path`` (``'spynet.'`` keys merged from the SpyNet
    release ``spynet`` when given). CheckpointError for SpyNet-only files, MindSpore files and
    files that are not RVRT."""
    path = str(path)
    if _is_mindspore_ckpt(path):
        raise CheckpointError(_mindspore_message(path))
    sd = load_state_dict(path, key=key or None)
    if _is_spynet_release(sd):
        raise CheckpointError(f'{path} holds only a SpyNet (basic_module.* keys), not a whole '
                              f'RVRT; load it into the flow network with '
                              f'ascendvsr.convert.rvrt.load_rvrt_spynet(model, path) or pass it as '
                              f'spynet= next to the RVRT checkpoint')
    if not any(k.startswith('feat_extract.') for k in sd) or not any(
            k.startswith('deform_align.') for k in sd):
        sample = ', '.join(list(sd)[:5])
        raise CheckpointError(f'{path} is not an RVRT checkpoint (no feat_extract.* / '
                              f'deform_align.* weights; first keys: {sample})')
    sd = OrderedDict(sd)
    if spynet is not None:
        spy = load_state_dict(str(spynet))
        if not _is_spynet_release(spy):
            raise CheckpointError(f'{spynet} is not an official SpyNet checkpoint '
                                  f'(expected basic_module.* keys; first keys: '
                                  f'{", ".join(list(spy)[:5])})')
        clash = [k for k in spy if SPYNET_PREFIX + k in sd]
        if [k for k in clash if k.startswith('basic_module.')]:
            raise CheckpointError(f'{path} already holds SpyNet weights; do not pass spynet='
                                  f'{spynet}')
        for k, v in spy.items():
            sd.setdefault(SPYNET_PREFIX + k, v)
    return sd


def _check_attention(model, sd, path):
    guided = any('.conv_offset.' in k for k in sd if k.startswith('deform_align.'))
    if getattr(model, 'attention', 'guided') == 'local' and guided:
        raise CheckpointError(f'{path} holds an RVRT with guided deformable attention '
                              f'(deform_align.*.conv_offset); the model is built with '
                              f'attention=local (RVRT Light): build RVRT (rvrt.attention=guided)')
    if getattr(model, 'attention', 'guided') == 'guided' and not guided:
        raise CheckpointError(f'{path} holds an RVRT without guided deformable attention (no '
                              f'deform_align.*.conv_offset); set rvrt.attention=local')


def load_rvrt_weights(model, path, key=None, spynet=None):
    """Load an official RVRT release into ``model`` (strict: every key, every shape).

    Args:
        model: :class:`ascendvsr.models.rvrt.RVRT`.
        path: ``{'params': state_dict}`` ``.pth`` (``params_ema`` preferred when present).
        key: top-level entry to read instead of the automatic choice.
        spynet: optional official SpyNet release, merged as ``spynet.*`` (for checkpoints
            saved without SpyNet).

    Raises:
        CheckpointError: listing missing / unexpected keys or shape mismatches, or naming the
            kind of file given (SpyNet alone, MindSpore, not RVRT, other attention).
    """
    if _is_mindspore_ckpt(str(path)) and spynet is None:  # mindediting's RVRT .ckpt
        from ascendvsr.convert.rvrt_light import load_rvrt_mindspore_weights
        return load_rvrt_mindspore_weights(model, path, key=key)
    sd = read_rvrt_state_dict(path, spynet=spynet, key=key)
    _check_attention(model, sd, path)
    assign_state_dict(model, sd, source=str(path))
    return model


def load_rvrt_spynet(model, path):
    """Load an official SpyNet release (``{'params': {'basic_module...'}}``) into
    ``model.spynet`` (strict on its keys)."""
    if getattr(model, 'attention', 'guided') != 'guided':
        raise CheckpointError('this RVRT has no SpyNet (attention=local)')
    return load_spynet_weights(model.spynet, path)
