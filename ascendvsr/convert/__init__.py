"""Official PyTorch checkpoints -> TF checkpoints, one module per model.

``convert_checkpoint(cfg)`` builds the configured model, loads ``cfg.convert.source`` through the
model's converter and writes a TF checkpoint the rest of the toolkit loads (``model.checkpoint``).
"""
import os

from ascendcv.runner.checkpoint import save_checkpoint

_CONVERTERS = {}


def _converters():
    if not _CONVERTERS:
        from ascendvsr.convert.edvr import load_edvr_weights
        _CONVERTERS['EDVR'] = load_edvr_weights
        from ascendvsr.convert.revsci import load_revsci_weights
        _CONVERTERS['RevSCI'] = load_revsci_weights
        from ascendvsr.convert.nerv import load_nerv_weights
        _CONVERTERS['NeRV'] = load_nerv_weights
    return _CONVERTERS


def convert_checkpoint(cfg, logger=print):
    """Convert ``cfg.convert.source`` for ``cfg.model.name``; returns the written TF prefix."""
    from ascendvsr.models import build_model
    name = cfg.model.name
    if name not in _converters():
        raise ValueError(f'no converter for model.name={name!r}; available: {sorted(_converters())}')
    if not cfg.convert.source:
        raise ValueError('convert.source is empty: give the official .pth checkpoint to convert')
    model = build_model(cfg)
    _converters()[name](model, cfg.convert.source, key=cfg.convert.key or None)
    prefix = cfg.convert.output or os.path.join(cfg.output_dir, 'converted', name.lower())
    save_checkpoint(model, prefix)
    n_params = sum(int(v.shape.num_elements()) for v in model.weights)
    logger(f'Converted {cfg.convert.source} -> {prefix} ({n_params:,} parameters); '
           f'use it with model.checkpoint={prefix}')
    return prefix
