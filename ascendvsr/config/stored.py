"""The config a checkpoint was trained with, stored beside it (``output_dir/config.yaml``).

Training writes the whole merged config tree to ``output_dir/config.yaml``
(:func:`ascendcv.runner.trainer.train`, atomically). ``--mode eval | inference | freeze`` with a
``model.checkpoint`` and no ``--config-file`` then loads that file (:func:`load_run_config`), so a
checkpoint runs with the model it was trained as; an explicit config file (with the command-line
overrides) that disagrees with it on a model-defining key (:func:`model_keys`) is a
:class:`ascendvsr.config.ConfigError` naming both files and the keys.
"""
import os

STORED_NAME = 'config.yaml'
PREDICT_MODES = ('eval', 'inference', 'freeze')


def stored_config(checkpoint):
    """The ``config.yaml`` stored with ``checkpoint`` (a checkpoint folder or prefix, or a frozen
    ``.pb``), or None: beside it, or in the run's ``output_dir`` when it lies in the trainer's
    ``checkpoints`` folder."""
    if not checkpoint:
        return None
    path = os.path.abspath(checkpoint)
    if path.endswith('.index'):
        path = path[:-len('.index')]
    folder = path if os.path.isdir(path) else os.path.dirname(path)
    candidates = [os.path.join(folder, STORED_NAME)]
    if os.path.basename(folder) == 'checkpoints':
        candidates.append(os.path.join(os.path.dirname(folder), STORED_NAME))
    return next((c for c in candidates if os.path.isfile(c)), None)


def model_keys(cfg):
    """The config keys that define the weights of ``cfg.model.name``: ``model.name``,
    ``model.scale`` and every key of the model's registered config node(s), except the task's
    ``runtime_keys`` (training or implementation settings, e.g. ``edvr.tsa_iter``)."""
    from ascendcv.registry import resolve
    from ascendvsr.zoo import get_entry, registered_models
    keys = ['model.name', 'model.scale']
    if cfg.model.name not in registered_models():
        return keys
    entry = get_entry(cfg.model.name)
    skip = set(getattr(resolve(entry.task), 'runtime_keys', ()))
    for node_name, node in entry.config.items():
        keys += [k for k in (f'{node_name}.{key}' for key in node) if k not in skip]
    return keys


def _value(cfg, key):
    node = cfg
    for part in key.split('.'):
        node = node[part]
    return list(node) if isinstance(node, (list, tuple)) else node


def differences(cfg, stored_cfg):
    """``[(key, stored value, given value)]`` for the model-defining keys that differ."""
    if cfg.model.name != stored_cfg.model.name:
        return [('model.name', stored_cfg.model.name, cfg.model.name)]
    return [(k, _value(stored_cfg, k), _value(cfg, k)) for k in model_keys(stored_cfg)
            if _value(stored_cfg, k) != _value(cfg, k)]


def load_run_config(config_file, opts):
    """``(cfg, stored path or None)``: the config of a run of ``tools/main.py``.

    For ``mode`` eval / inference / freeze with a ``model.checkpoint`` among ``opts`` that has a
    stored config: without ``config_file`` the stored one is loaded (then ``opts``); with one, it
    is loaded and must agree with the stored one on :func:`model_keys` (a frozen ``.pb`` is
    self-describing: not checked). Otherwise ``load_config(config_file, opts)``.
    """
    from ascendvsr.config import ConfigError, load_config, parse_overrides
    given = dict(parse_overrides(list(opts)))
    checkpoint = given.get('model.checkpoint', '')
    stored = stored_config(checkpoint) if given.get('mode') in PREDICT_MODES else None
    if stored is None:
        return load_config(config_file or None, opts), None
    if not config_file:
        return load_config(stored, opts), stored
    cfg = load_config(config_file, opts)
    if checkpoint.endswith('.pb'):
        return cfg, None
    diff = differences(cfg, load_config(stored))
    if diff:
        listed = '; '.join(f'{k}: {stored_v!r} in {STORED_NAME}, {given_v!r} given'
                           for k, stored_v, given_v in diff)
        raise ConfigError(f'{config_file} (with the command-line overrides) disagrees with '
                          f'{stored}, the config the checkpoint {checkpoint} was trained with, on '
                          f'{listed}. Leave out --config-file (CONFIG) to use the stored one, or '
                          f'give the matching config')
    return cfg, stored
