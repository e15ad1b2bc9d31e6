"""TF checkpoints of our models, keyed by stable variable paths.

Keras 3 keeps sub-layers held in Python lists/dicts out of ``tf.train.Checkpoint``'s object graph,
so saving ``Checkpoint(model=model)`` would silently drop them. We therefore save an explicit map
``{name: variable}`` where the name is the variable's PyTorch state-dict key (e.g.
``pcd_align.dcn_pack.l3.weight``; stable, hierarchical, and the same across frameworks), or
``other/<keras path>`` for weights that have no PyTorch counterpart, plus any extra
trackables (optimizer variables, step counter) the trainer adds. Restoring checks that every model
variable is present with the same shape and names what is missing, so a checkpoint of another
model or configuration is a clear error, not a silent partial load.

Writes are atomic: files go to a temporary folder beside the target and are renamed into place.
"""
import os
import re
import shutil
import tempfile
from collections import OrderedDict

import tensorflow as tf

from ascendcv.layers.torch_compat import torch_state_variables
from ascendcv.utils.fileio import atomic_write_bytes
from ascendcv.utils.torch_checkpoint import CheckpointError

WEIGHTS_KEY = 'weights'
TMP_CKPT_PREFIX = '.tmp_ckpt_'


class DamagedCheckpointError(CheckpointError):
    """A checkpoint whose files are missing, truncated or corrupt (``prefix`` names it)."""

    def __init__(self, prefix, detail):
        self.prefix = prefix
        super().__init__(f'checkpoint {prefix} is damaged or incomplete: {detail}')


def _first_line(err):
    text = getattr(err, 'message', None) or str(err) or type(err).__name__
    return text.strip().splitlines()[0]


def _data_files(prefix):
    return sorted(tf.io.gfile.glob(prefix + '.data-*'))


def check_files(prefix):
    """Raise :class:`DamagedCheckpointError` when the shards ``prefix.index`` names are not all
    there (an index without its data, e.g. copied alone)."""
    shards = _data_files(prefix)
    expected = None
    for path in shards:
        m = re.search(r'\.data-\d+-of-(\d+)$', path)
        if m:
            expected = int(m.group(1))
    if not shards or (expected is not None and len(shards) != expected):
        raise DamagedCheckpointError(prefix, f'{prefix}.index is there but its data files are '
                                     f'not ({len(shards)} of {expected or "at least 1"} '
                                     f'{os.path.basename(prefix)}.data-* found)')


def named_variables(model):
    """``OrderedDict{name: variable}`` for every weight of ``model`` (see module docstring)."""
    out = OrderedDict((key, var) for key, (var, _) in torch_state_variables(model).items())
    seen = {id(v) for v in out.values()}
    for v in model.weights:
        if id(v) in seen:
            continue
        base = 'other/' + (getattr(v, 'path', None) or v.name)
        name, i = base, 1
        while name in out:
            name, i = f'{base}_{i}', i + 1
        out[name] = v
        seen.add(id(v))
    return out


def _checkpoint(model, extra=None):
    return tf.train.Checkpoint(**{WEIGHTS_KEY: dict(named_variables(model))}, **(extra or {}))


def save_checkpoint(model, prefix, extra=None):
    """Write ``model``'s weights (and ``extra`` trackables) at ``prefix`` atomically.

    Returns ``prefix``; the files are ``prefix.index`` and ``prefix.data-*``.
    """
    prefix = os.path.abspath(prefix)
    folder = os.path.dirname(prefix)
    os.makedirs(folder, exist_ok=True)
    if not os.access(folder, os.W_OK):
        raise OSError(f'cannot write checkpoints to {folder}: folder is not writable')
    tmp = tempfile.mkdtemp(prefix=TMP_CKPT_PREFIX, dir=folder)
    try:
        try:
            written = _checkpoint(model, extra).write(os.path.join(tmp, 'ckpt'))
        except (tf.errors.OpError, OSError) as err:
            raise CheckpointError(f'could not write checkpoint {prefix} ({_first_line(err)}; '
                                  f'disk full?): the checkpoints already in {folder} are '
                                  f'intact') from None
        parts = tf.io.gfile.glob(written + '*')
        # An older checkpoint of the same name loses its index first, then data go in, the
        # index last: at no moment does an index sit beside data that are not its own.
        for old in [prefix + '.index'] + _data_files(prefix):
            if os.path.exists(old):
                os.remove(old)
        for path in sorted(parts, key=lambda p: p.endswith('.index')):
            os.replace(path, prefix + os.path.basename(path)[len('ckpt'):])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return prefix


def _step_key(name):
    """Sort key of checkpoint prefixes: the trailing step number (``ckpt-10`` after ``ckpt-5``),
    then the name."""
    digits = re.search(r'(\d+)$', name)
    return (int(digits.group(1)) if digits else -1, name)


def resolve_checkpoint(path):
    """A checkpoint prefix from a prefix or a folder.

    A folder resolves to the checkpoint its ``latest`` pointer names (written by the trainer),
    else to TF's ``checkpoint`` file, else to the complete checkpoint (``.index``) with the
    highest step number.
    """
    if os.path.isdir(path):
        latest = CheckpointManager(path).pointed()
        if latest is None:
            latest = tf.train.latest_checkpoint(path)
        if latest is None:
            cands = sorted((p[:-len('.index')] for p in os.listdir(path) if p.endswith('.index')),
                           key=_step_key)
            if not cands:
                raise CheckpointError(f'no TF checkpoint (*.index) found in folder {path}')
            latest = os.path.join(path, cands[-1])
        return latest
    if path.endswith('.index'):
        path = path[:-len('.index')]
    if not os.path.exists(path + '.index'):
        hint = ' (this is a PyTorch file: convert it first with --mode convert)' \
            if path.endswith(('.pth', '.pt')) else ''
        raise CheckpointError(f'TF checkpoint not found: {path} (expected {path}.index){hint}')
    return path


def restore_checkpoint(model, path, extra=None):
    """Restore ``model`` (and ``extra``) from ``path`` (prefix or folder); returns the prefix.

    Raises :class:`CheckpointError` naming the checkpoint when it lacks model variables or their
    shapes differ (a checkpoint of another model or configuration).
    """
    prefix = resolve_checkpoint(path)
    try:
        stored = dict(tf.train.list_variables(prefix))
    except (tf.errors.OpError, ValueError, IndexError) as err:
        raise DamagedCheckpointError(prefix, f'its index is not readable '
                                     f'({_first_line(err)})') from None
    expected = named_variables(model)
    escaped = {name: f'{WEIGHTS_KEY}/{name.replace(".", ".."). replace("/", ".S")}/.ATTRIBUTES/VARIABLE_VALUE'
               for name in expected}
    missing = [n for n, key in escaped.items() if key not in stored]
    wrong = [f'{n}: checkpoint {stored[k]} vs model {list(expected[n].shape)}'
             for n, k in escaped.items() if k in stored and list(stored[k]) != list(expected[n].shape)]
    if missing or wrong:
        detail = []
        if missing:
            detail.append(f'{len(missing)} model variables missing (e.g. {", ".join(missing[:5])})')
        if wrong:
            detail.append(f'{len(wrong)} shapes differ (e.g. {"; ".join(wrong[:5])})')
        raise CheckpointError(f'{prefix} is not a checkpoint of this {model.name} model: '
                              + '; '.join(detail))
    check_files(prefix)
    try:
        status = _checkpoint(model, extra).read(prefix)
    except (tf.errors.OpError, IndexError, ValueError) as err:  # truncated or bit-flipped data
        raise DamagedCheckpointError(prefix, _first_line(err)) from None
    status.expect_partial()
    return prefix


def build_and_restore(factory, cfg, checkpoint, logger=None, **overrides):
    """``factory(cfg, **overrides)`` -> model, with the weights of ``checkpoint`` (a prefix or a
    folder; empty = the factory's initial weights). The one place a model is built and
    restored; returns ``(model, prefix or None)``."""
    model = factory(cfg, **overrides)
    if not checkpoint:
        return model, None
    try:
        prefix = restore_checkpoint(model, checkpoint)
    except DamagedCheckpointError as err:
        if not os.path.isdir(checkpoint):
            raise
        earlier = [p for p in CheckpointManager(checkpoint).candidates() if p != err.prefix]
        hint = (f'; an earlier checkpoint of the folder: {earlier[0]} (give it as the '
                f'checkpoint)' if earlier else '')
        raise DamagedCheckpointError(err.prefix, str(err).split(': ', 1)[1] + hint) from None
    if logger is not None:
        logger(f'Loaded {prefix}' + (f' (the latest checkpoint of the folder {checkpoint})'
                                     if os.path.isdir(checkpoint) else ''))
    return model, prefix


class CheckpointManager:
    """Numbered training checkpoints ``<folder>/ckpt-<step>`` keeping the last ``keep``.

    The newest complete checkpoint is recorded in ``<folder>/latest`` (one line, written to a
    temporary file and renamed), which is updated only after the checkpoint files are in place:
    a crash at any moment leaves the previous checkpoint usable.
    """

    def __init__(self, folder, keep=5):
        self.folder, self.keep = folder, max(int(keep), 1)

    def pointed(self):
        """The complete checkpoint the ``latest`` pointer names, or None."""
        pointer = os.path.join(self.folder, 'latest')
        if os.path.isfile(pointer):
            with open(pointer) as f:
                name = f.read().strip()
            prefix = os.path.join(self.folder, name)
            if name and os.path.exists(prefix + '.index'):
                return prefix
        return None

    def point_to(self, prefix):
        """Make ``latest`` name ``prefix`` (a checkpoint of this folder)."""
        atomic_write_bytes(os.path.join(self.folder, 'latest'),
                           f'{os.path.basename(prefix)}\n'.encode())

    def latest(self):
        """Prefix of the newest complete checkpoint (the ``latest`` pointer's, else the highest
        step), or None."""
        pointed = self.pointed()
        if pointed is not None:
            return pointed
        steps = self.steps()
        return os.path.join(self.folder, f'ckpt-{steps[-1]}') if steps else None

    def steps(self):
        if not os.path.isdir(self.folder):
            return []
        out = []
        for p in os.listdir(self.folder):
            if p.startswith('ckpt-') and p.endswith('.index'):
                try:
                    out.append(int(p[len('ckpt-'):-len('.index')]))
                except ValueError:
                    pass
        return sorted(out)

    def candidates(self):
        """Checkpoint prefixes to resume from, best first: the ``latest`` pointer's, then the
        others by decreasing step."""
        first = self.latest()
        rest = [os.path.join(self.folder, f'ckpt-{s}') for s in reversed(self.steps())]
        return ([first] if first else []) + [p for p in rest if p != first]

    def clean_leftovers(self):
        """Remove what a killed save leaves behind: temporary checkpoint folders, temporary
        pointer files and data shards without an index. Returns the removed names."""
        from ascendcv.utils.fileio import TMP_PREFIX, remove_path
        if not os.path.isdir(self.folder):
            return []
        removed = []
        indexed = {p[:-len('.index')] for p in os.listdir(self.folder) if p.endswith('.index')}
        for name in sorted(os.listdir(self.folder)):
            orphan = '.data-' in name and name.split('.data-')[0] not in indexed
            if name.startswith((TMP_CKPT_PREFIX, TMP_PREFIX)) or orphan:
                remove_path(os.path.join(self.folder, name))
                removed.append(name)
        return removed

    def save(self, model, step, extra=None):
        prefix = save_checkpoint(model, os.path.join(self.folder, f'ckpt-{step}'), extra)
        self.point_to(prefix)
        for old in self.steps()[:-self.keep]:
            for path in tf.io.gfile.glob(os.path.join(self.folder, f'ckpt-{old}.*')):
                os.remove(path)
        return prefix
