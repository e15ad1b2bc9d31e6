"""Value checks of the generic config keys, run by :func:`ascendvsr.config.load_config` once the
tree is merged, so a value that cannot work is refused before any data is read or a model built.

Each rule names its key and what it expects; :func:`validate` raises
:class:`ascendvsr.config.ConfigError` with every broken rule. Type checks happen during the merge
(a key keeps its default's type); these are the range and length checks types cannot express.
"""


def _positive_int(v):
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1


def _int_list(n):
    def check(v):
        return (isinstance(v, (list, tuple)) and len(v) == n
                and all(isinstance(x, int) and not isinstance(x, bool) for x in v))
    return check


POSITIVE = 'a positive integer'

RULES = (
    # key, check, what it expects
    ('solver.total_steps', _positive_int, POSITIVE),
    ('solver.print_interval', _positive_int, POSITIVE),
    ('solver.checkpoint_interval', _positive_int, POSITIVE),
    ('solver.keep_checkpoints', _positive_int, f'{POSITIVE} (checkpoints to keep)'),
    ('solver.lr', lambda v: 0 < v < float('inf'), 'a positive finite number'),
    ('data.batch_size', _positive_int, POSITIVE),
    ('data.num_threads', _positive_int, POSITIVE),
    ('data.train_data_queue_size', _positive_int, POSITIVE),
    ('data.eval_in_size', _int_list(2), 'two integers [H, W] (<= 0 = dynamic where allowed)'),
    ('data.interval_list', lambda v: len(v) > 0 and all(_positive_int(x) for x in v),
     'a non-empty list of positive integers'),
    ('inference.num_writers', _positive_int, f'{POSITIVE} (image-writer threads)'),
    ('inference.writer_queue_size', _positive_int, POSITIVE),
    ('inference.fps', lambda v: v > 0, 'a positive number'),
    ('device_id', lambda v: v >= 0, 'a device index >= 0'),
    ('rank_size', _positive_int, POSITIVE),
    ('model.precision', lambda v: v in ('float32', 'bfloat16', 'int8'),
     "one of 'float32', 'bfloat16', 'int8'"),
    ('precision.max_drop_bfloat16', lambda v: v >= 0, 'a number of dB >= 0'),
    ('precision.max_drop_int8', lambda v: v >= 0, 'a number of dB >= 0'),
    ('precision.calibration_batches', lambda v: v >= 0, 'a number of model calls >= 0'),
    ('precision.ort_threads', lambda v: v >= 0, 'a thread count >= 0 (0 = default)'),
)


def _get(cfg, key):
    node = cfg
    for part in key.split('.'):
        if part not in node:
            return _MISSING
        node = node[part]
    return node


_MISSING = object()


def problems(cfg):
    """``['key: expects ..., got ...', ...]`` for every rule ``cfg`` breaks."""
    out = []
    for key, check, expected in RULES:
        value = _get(cfg, key)
        if value is _MISSING:
            continue
        try:
            ok = bool(check(value))
        except TypeError:
            ok = False
        if not ok:
            out.append(f'{key} must be {expected}; got {value!r}')
    return out
