"""Config loading: defaults + YAML + CLI overrides, with helpful errors for unknown keys."""
import ast
import difflib
import os

from yacs.config import CfgNode

from ascendvsr.config.defaults import get_cfg_defaults
from ascendvsr.config.validate import problems


class ConfigError(ValueError):
    """A config file or override is invalid (unknown key, bad value type, missing file)."""


def _all_keys(node, prefix=''):
    keys = []
    for k, v in node.items():
        full = f'{prefix}{k}'
        keys.extend(_all_keys(v, full + '.') if isinstance(v, CfgNode) else [full])
    return keys


def _unknown_key_error(cfg, key, source):
    close = difflib.get_close_matches(key, _all_keys(cfg), n=1, cutoff=0.5)
    hint = f"; did you mean '{close[0]}'?" if close else ''
    return ConfigError(f"unknown config key '{key}' in {source}{hint}")


def _check_keys(cfg, other, source, prefix=''):
    for k, v in other.items():
        full = f'{prefix}{k}'
        if k not in cfg:
            raise _unknown_key_error(get_cfg_defaults(), full, source)
        if isinstance(cfg[k], CfgNode):
            if not isinstance(v, dict):
                raise ConfigError(f"{source}: '{full}' is a section of keys (e.g. "
                                  f"{full}.{next(iter(cfg[k]))}), not a value; got {v!r}")
            _check_keys(cfg[k], v, source, full + '.')
        elif isinstance(v, dict):
            raise ConfigError(f"{source}: config key '{full}' takes a value "
                              f"(default {cfg[k]!r}), not a section {v!r}")


def _read_yaml(path):
    """The mapping at the top of the YAML file ``path`` (ConfigError naming the file and the
    line of a syntax error, or a file whose top level is not a mapping)."""
    import yaml
    try:
        with open(path) as f:
            data = yaml.safe_load(f)
    except yaml.YAMLError as err:
        mark = getattr(err, 'problem_mark', None)
        where = f' (line {mark.line + 1}, column {mark.column + 1})' if mark else ''
        problem = getattr(err, 'problem', None) or str(err).splitlines()[0]
        raise ConfigError(f'{path}: invalid YAML{where}: {problem}') from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f'{path}: cannot read the config file: {err}') from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f'{path}: the top level must be a mapping of config keys (e.g. '
                          f'"solver: {{lr: 1e-4}}"), got a {type(data).__name__}')
    return data


def parse_overrides(opts):
    """``['a.b', '1', 'c.d=x']`` -> ``[('a.b', '1'), ('c.d', 'x')]`` (both CLI styles mixed)."""
    pairs, i = [], 0
    while i < len(opts):
        item = opts[i]
        if '=' in item:
            key, value = item.split('=', 1)
            i += 1
        else:
            if i + 1 >= len(opts):
                raise ConfigError(f"config override '{item}' has no value (use KEY VALUE or KEY=VALUE)")
            key, value = item, opts[i + 1]
            i += 2
        pairs.append((key.strip(), value))
    return pairs


def _coerce(value, default, key):
    """Parse a CLI string to the type of the default (yacs literal rules, strings kept as is)."""
    if not isinstance(value, str):
        return value
    try:
        parsed = ast.literal_eval(value)
    except (ValueError, SyntaxError):
        parsed = value
    if isinstance(default, bool):
        if isinstance(parsed, bool):
            return parsed
        if str(value).lower() in ('true', 'false'):
            return str(value).lower() == 'true'
        raise ConfigError(f"config key '{key}' expects true/false, got '{value}'")
    if isinstance(default, float) and isinstance(parsed, int) and not isinstance(parsed, bool):
        return float(parsed)
    if isinstance(default, str):
        return value
    if isinstance(default, (list, tuple)) and isinstance(parsed, (list, tuple)):
        return type(default)(parsed)
    if type(parsed) is not type(default):
        raise ConfigError(f"config key '{key}' expects {type(default).__name__} "
                          f"(default {default!r}), got '{value}'")
    return parsed


def _merge_yaml(cfg, other, source, prefix=''):
    """Merge a loaded YAML tree into ``cfg`` keeping YAML's own types.

    Unlike yacs' merge, strings are not literal-evaluated, so a string default stays a string
    (yacs would turn NeRV's ``'1.25_40'`` into the float 1.254). Quote such values in YAML.
    """
    for k, v in other.items():
        key = f'{prefix}{k}'
        default = cfg[k]
        if isinstance(default, CfgNode):
            _merge_yaml(default, v, source, key + '.')
            continue
        if isinstance(default, str) and not isinstance(v, str):
            raise ConfigError(f"{source}: config key '{key}' expects a string, got {v!r}; quote it "
                              f"in YAML (e.g. '{v}')")
        if isinstance(v, str):
            v = _coerce(v, default, key) if not isinstance(default, str) else v
        elif isinstance(default, bool) != isinstance(v, bool):
            raise ConfigError(f"{source}: config key '{key}' expects {type(default).__name__}, "
                              f"got {v!r}")
        elif isinstance(default, float) and isinstance(v, int):
            v = float(v)
        elif isinstance(default, (list, tuple)) and isinstance(v, (list, tuple)):
            v = type(default)(v)
        elif type(v) is not type(default):
            raise ConfigError(f"{source}: config key '{key}' expects {type(default).__name__} "
                              f"(default {default!r}), got {v!r}")
        cfg[k] = v


def load_config(config_file=None, opts=(), freeze=True):
    """Defaults <- YAML file <- overrides. Raises :class:`ConfigError` naming the bad key/file."""
    cfg = get_cfg_defaults()
    if config_file:
        if not os.path.isfile(config_file):
            raise ConfigError(f'config file not found: {config_file}')
        other = _read_yaml(config_file)
        _check_keys(cfg, other, config_file)
        _merge_yaml(cfg, other, config_file)
    for key, value in parse_overrides(list(opts)):
        node, parts = cfg, key.split('.')
        for p in parts[:-1]:
            if p not in node or not isinstance(node[p], CfgNode):
                raise _unknown_key_error(cfg, key, 'command-line overrides')
            node = node[p]
        if parts[-1] not in node:
            raise _unknown_key_error(cfg, key, 'command-line overrides')
        if isinstance(node[parts[-1]], CfgNode):
            raise ConfigError(f"command-line override '{key}' names a section, not a key; set "
                              f"one of its keys (e.g. {key}.{next(iter(node[parts[-1]]))})")
        node[parts[-1]] = _coerce(value, node[parts[-1]], key)
    broken = problems(cfg)
    if broken:
        source = f'{config_file} + overrides' if config_file else 'config overrides'
        raise ConfigError(f'{source}: ' + '; '.join(broken))
    if freeze:
        cfg.freeze()
    return cfg
