"""Official NeRV checkpoints -> our NeRV.

The official ``train_nerv.py`` saves ``{'epoch', 'state_dict', 'optimizer', 'train_best_psnr',
...}``; ``state_dict`` holds the ``Generator`` weights (``module.``-prefixed after
DistributedDataParallel training). Checkpoints written while pruning (``--prune_ratio < 1``, e.g.
``nerv_S_pruned.pth``) hold ``<layer>.weight_orig`` and ``<layer>.weight_mask`` instead of
``<layer>.weight`` (``torch.nn.utils.prune``); the effective weight is ``weight_orig *
weight_mask``, which is what we load (pruned entries become exact zeros, which our
``pruning=True`` models keep at zero when fine-tuned). BatchNorm ``num_batches_tracked``
counters are dropped (they only matter for momentum=None).
"""
import re
from collections import OrderedDict

import numpy as np

from ascendcv.utils.torch_checkpoint import CheckpointError, load_state_dict
from ascendvsr.convert.common import assign_state_dict


def fold_pruning(state_dict):
    """Replace ``X.weight_orig`` / ``X.weight_mask`` pairs by ``X.weight = orig * mask``."""
    out = OrderedDict()
    for key, value in state_dict.items():
        if key.endswith('.weight_mask'):
            if key[:-len('_mask')] + '_orig' not in state_dict:
                raise CheckpointError(f'{key} has no matching weight_orig')
            continue
        if key.endswith('.weight_orig'):
            mask_key = key[:-len('_orig')] + '_mask'
            if mask_key not in state_dict:
                raise CheckpointError(f'{key} has no matching weight_mask')
            out[key[:-len('_orig')]] = (np.asarray(value, np.float32)
                                        * np.asarray(state_dict[mask_key], np.float32))
        else:
            out[key] = value
    return out


def clean_state_dict(state_dict):
    """Official key clean-up: ``blocks.0.`` removed (as ``train_nerv.py`` does on load),
    ``module.`` prefixes removed, pruning folded, ``num_batches_tracked`` dropped."""
    sd = OrderedDict()
    for key, value in state_dict.items():
        key = key.replace('blocks.0.', '')
        if key.startswith('module.'):
            key = key[len('module.'):]
        if key.endswith('num_batches_tracked'):
            continue
        sd[key] = value
    return fold_pruning(sd)


def infer_nerv_arch(sd):
    """Structure implied by a (cleaned) NeRV state dict, for comparison with a model.

    Returns a dict: ``embed_length``, ``stem_dims`` (output sizes of the stem Linears),
    ``block_out_channels`` (conv weight output channels per block), ``heads`` (stage indices
    with an RGB head), ``conv_type``, ``norm`` ('bn' when BN weights exist, else 'none/in').
    """
    def indices(prefix):
        return sorted({int(m.group(1)) for k in sd for m in [re.match(prefix + r'\.(\d+)\.', k)]
                       if m})
    arch = {}
    stem = indices('stem')
    if stem:
        arch['embed_length'] = int(np.shape(sd[f'stem.{stem[0]}.weight'])[1])
        arch['stem_dims'] = [int(np.shape(sd[f'stem.{i}.weight'])[0]) for i in stem]
    blocks = indices('layers')
    outs, conv_type = [], 'conv'
    for k in blocks:
        if f'layers.{k}.conv.up_scale.weight' in sd:
            conv_type = 'bilinear'
            outs.append(int(np.shape(sd[f'layers.{k}.conv.up_scale.weight'])[0]))
        elif f'layers.{k}.conv.conv.weight' in sd:
            w = np.shape(sd[f'layers.{k}.conv.conv.weight'])
            if w[2] == w[3] and w[2] != 3:  # ConvTranspose2d (in, out, s, s)
                conv_type = 'deconv'
                outs.append(int(w[1]))
            else:
                outs.append(int(w[0]))
    arch['block_out_channels'] = outs
    arch['conv_type'] = conv_type
    arch['heads'] = indices('head_layers')
    arch['norm'] = 'bn' if any(k.endswith('norm.running_mean') for k in sd) else 'none/in'
    return arch


def _model_arch(model):
    """The same summary as :func:`infer_nerv_arch` for a built model."""
    from ascendcv.layers.torch_compat import torch_state_dict
    return infer_nerv_arch(torch_state_dict(model))


def _describe(model):
    a = model.arch
    return (f'embed {a["embed"]}, stem_dim_num {a["stem_dim_num"]}, fc_hw_dim {a["fc_hw_dim"]}, '
            f'strides {a["strides"]}, expansion {a["expansion"]}, reduction {a["reduction"]}, '
            f'lower_width {a["lower_width"]}, num_blocks {a["num_blocks"]}, conv_type '
            f'{a["conv_type"]}, norm {a["norm"]}, single_res {a["single_res"]}')


def load_nerv_weights(model, path, key=None):
    """Load an official NeRV ``.pth`` (plain or pruned) into ``model``.

    Raises :class:`CheckpointError` naming the file when it is not a NeRV checkpoint or when it
    holds a NeRV of another configuration (listing what differs and the model's settings).
    """
    return assign_nerv_state_dict(model, load_state_dict(path, key=key or None), source=str(path))


def assign_nerv_state_dict(model, state_dict, source='state dict'):
    """:func:`load_nerv_weights` for a state dict already in memory (official key names)."""
    sd = clean_state_dict(state_dict)
    path = source
    if not any(k.startswith('stem.') for k in sd) or not any(k.startswith('layers.') for k in sd):
        sample = ', '.join(list(sd)[:5])
        raise CheckpointError(f'{path} is not a NeRV checkpoint (no stem.* / layers.* weights; '
                              f'first keys: {sample})')
    got, want = infer_nerv_arch(sd), _model_arch(model)
    diffs = [f'{k}: checkpoint {got.get(k)} vs model {want[k]}' for k in want
             if got.get(k) != want[k]]
    if not diffs:
        stem_last = f'stem.{2 * (len(want["stem_dims"]) - 1)}.weight'
        if stem_last in sd:
            fc = int(np.shape(sd[stem_last])[0])
            if fc != model.fc_h * model.fc_w * model.fc_dim:
                diffs.append(f'stem output {fc} vs model fc_h*fc_w*fc_dim '
                             f'{model.fc_h * model.fc_w * model.fc_dim}')
    if diffs:
        raise CheckpointError(f'{path} holds a NeRV of another configuration: '
                              + '; '.join(diffs) + f'. The configured model has {_describe(model)}'
                              ' (set the nerv.* config keys to match the checkpoint)')
    assign_state_dict(model, sd, source=str(path))
    return model
