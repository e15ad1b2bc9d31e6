"""Official EDVR checkpoints -> our EDVR.

Accepts BasicSR checkpoints (``{'params'|'params_ema': sd}`` or raw; key names as in
``basicsr/archs/edvr_arch.py``) and checkpoints of the original EDVR repository
(xinntao/EDVR, ``EDVR_arch.py``: ``pcd_align.L3_dcnpack``, ``tsa_fusion.tAtt_1``, ``recon_trunk``,
``HRconv``, ``pre_deblur.RB_L1_1`` ...), which are renamed to BasicSR names first. The rename
rules follow BasicSR's own ``scripts/model_conversion/convert_models.py::convert_edvr`` (note that
the original ``tAtt_2`` is BasicSR's ``temporal_attn1`` and ``tAtt_1`` is ``temporal_attn2``).
"""
import re
from collections import OrderedDict

from ascendcv.utils.torch_checkpoint import CheckpointError, load_state_dict
from ascendvsr.convert.common import assign_state_dict

# original EDVR name -> BasicSR name; applied in order, the first matching rule wins
_ORIGINAL_RULES = [
    (r'^pre_deblur\.conv_first_1\.', 'predeblur.conv_first.'),
    (r'^pre_deblur\.conv_first_2\.', 'predeblur.stride_conv_hr1.'),
    (r'^pre_deblur\.conv_first_3\.', 'predeblur.stride_conv_hr2.'),
    (r'^pre_deblur\.conv_first\.', 'predeblur.conv_first.'),
    (r'^pre_deblur\.deblur_L2_conv\.', 'predeblur.stride_conv_l2.'),
    (r'^pre_deblur\.deblur_L3_conv\.', 'predeblur.stride_conv_l3.'),
    (r'^pre_deblur\.RB_L3_1\.', 'predeblur.resblock_l3.'),
    (r'^pre_deblur\.RB_L2_(\d)\.', r'predeblur.resblock_l2_\1.'),
    (r'^pre_deblur\.RB_L1_(\d)\.', lambda m: f'predeblur.resblock_l1.{int(m.group(1)) - 1}.'),
    (r'^fea_L([23])_conv(\d)\.', r'conv_l\1_\2.'),
    (r'^pcd_align\.L(\d)_dcnpack\.conv_offset_mask\.', r'pcd_align.dcn_pack.l\1.conv_offset.'),
    (r'^pcd_align\.L(\d)_dcnpack\.', r'pcd_align.dcn_pack.l\1.'),
    (r'^pcd_align\.L(\d)_offset_conv(\d)\.', r'pcd_align.offset_conv\2.l\1.'),
    (r'^pcd_align\.L(\d)_fea_conv\.', r'pcd_align.feat_conv.l\1.'),
    (r'^pcd_align\.cas_dcnpack\.conv_offset_mask\.', 'pcd_align.cas_dcnpack.conv_offset.'),
    (r'^tsa_fusion\.tAtt_2\.', 'fusion.temporal_attn1.'),
    (r'^tsa_fusion\.tAtt_1\.', 'fusion.temporal_attn2.'),
    (r'^tsa_fusion\.fea_fusion\.', 'fusion.feat_fusion.'),
    (r'^tsa_fusion\.sAtt_add_(\d)\.', r'fusion.spatial_attn_add\1.'),
    (r'^tsa_fusion\.sAtt_L(\d)\.', r'fusion.spatial_attn_l\1.'),
    (r'^tsa_fusion\.sAtt_(\d)\.', r'fusion.spatial_attn\1.'),
    (r'^tsa_fusion\.', 'fusion.'),  # without TSA the fusion is a plain 1x1 conv
    (r'^recon_trunk\.', 'reconstruction.'),
    (r'^HRconv\.', 'conv_hr.'),
]


def is_original_edvr(state_dict):
    """True when the keys follow the original xinntao/EDVR naming."""
    return any(k.startswith(('pcd_align.L1_', 'recon_trunk.', 'HRconv.', 'tsa_fusion.'))
               for k in state_dict)


def original_to_basicsr(state_dict):
    """Rename original EDVR keys to BasicSR keys (other keys pass through unchanged)."""
    out = OrderedDict()
    for key, value in state_dict.items():
        new = key
        for pattern, repl in _ORIGINAL_RULES:
            new, n = re.subn(pattern, repl, key)
            if n:
                break
        if new in out:
            raise CheckpointError(f'two original keys map to {new!r}')
        out[new] = value
    return out


def infer_edvr_arch(sd):
    """EDVR hyper-parameters implied by a (BasicSR-named) state dict, for error messages."""
    def count(prefix):
        idx = {int(m.group(1)) for k in sd for m in [re.match(prefix + r'\.(\d+)\.', k)] if m}
        return max(idx) + 1 if idx else 0
    arch = {}
    if 'conv_last.weight' in sd:
        arch['num_out_ch'] = int(sd['conv_last.weight'].shape[0])
    first = sd.get('conv_first.weight', sd.get('predeblur.conv_first.weight'))
    if first is not None:
        arch['num_feat'], arch['num_in_ch'] = int(first.shape[0]), int(first.shape[1])
    arch['num_extract_block'] = count('feature_extraction')
    arch['num_reconstruct_block'] = count('reconstruction')
    arch['with_predeblur'] = any(k.startswith('predeblur.') for k in sd)
    arch['hr_in'] = 'predeblur.stride_conv_hr1.weight' in sd
    arch['with_tsa'] = 'fusion.temporal_attn1.weight' in sd
    off = sd.get('pcd_align.dcn_pack.l1.conv_offset.weight')
    if off is not None:
        arch['deformable_groups'] = int(off.shape[0]) // 27
    fusion = sd.get('fusion.feat_fusion.weight', sd.get('fusion.weight'))
    if fusion is not None and 'num_feat' in arch:
        arch['num_frame'] = int(fusion.shape[1]) // arch['num_feat']
    return arch


def load_edvr_weights(model, path, key=None):
    """Load an official EDVR ``.pth`` (BasicSR or original naming) into ``model``.

    Raises :class:`CheckpointError` naming the file when it is not an EDVR checkpoint or when its
    hyper-parameters differ from the model's (listing both).
    """
    sd = load_state_dict(path, key=key or None)
    if is_original_edvr(sd):
        sd = original_to_basicsr(sd)
    if not any(k.startswith('pcd_align.') for k in sd):
        sample = ', '.join(list(sd)[:5])
        raise CheckpointError(f'{path} is not an EDVR checkpoint (no pcd_align.* weights; '
                              f'first keys: {sample})')
    arch = infer_edvr_arch(sd)
    diffs = [f'{k}: checkpoint {v} vs model {model.arch[k]}' for k, v in arch.items()
             if k in model.arch and model.arch[k] != v]
    if diffs:
        raise CheckpointError(f'{path} holds an EDVR with other hyper-parameters than the '
                              f'configured model: ' + '; '.join(diffs)
                              + ' (set the edvr.* config keys to match)')
    assign_state_dict(model, sd, source=str(path))
    return model
