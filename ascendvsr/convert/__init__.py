"""Official checkpoints -> TF checkpoints, one module per model (declared by its registration).

``convert_checkpoint(cfg, entry)`` builds the configured model, loads ``cfg.convert.source``
through the entry's converter and writes a TF checkpoint the rest of the toolkit loads
(``model.checkpoint``).
"""
import os

from ascendcv.runner.checkpoint import save_checkpoint


def convert_checkpoint(cfg, entry, logger=print):
    """Convert ``cfg.convert.source`` with ``entry`` (an :class:`ascendcv.registry.ModelEntry`);
    returns the written TF prefix."""
    if entry.converter is None:
        raise ValueError(f'model.name={entry.name!r} has no converter of official checkpoints')
    if not cfg.convert.source:
        raise ValueError('convert.source is empty: give the official .pth checkpoint to convert')
    model = entry.build(cfg)
    entry.load_official(model, cfg.convert.source, key=cfg.convert.key or None)
    prefix = cfg.convert.output or os.path.join(cfg.output_dir, 'converted', entry.name.lower())
    save_checkpoint(model, prefix)
    n_params = sum(int(v.shape.num_elements()) for v in model.weights)
    logger(f'Converted {cfg.convert.source} -> {prefix} ({n_params:,} parameters); '
           f'use it with model.checkpoint={prefix}')
    return prefix
