"""Atomic file writes: write a temporary file beside the target, then ``os.replace`` it.

A reader (or a crash) never sees a half-written file under the final name, and an existing file
stays intact until the new one is complete. Temporary files are hidden, ``.tmp-<token>-<name>``
(:func:`temp_path`: same folder, so the rename is atomic; same extension, so tools that pick a
format from it still work), and removed whenever the write fails or is interrupted.
"""
import json
import math
import os
import shutil
import uuid

import numpy as np

TMP_PREFIX = '.tmp-'
"""Name prefix of the temporary files (frame listings skip hidden files, so leftovers of a
killed process are never read as data)."""


def temp_path(path, tag=''):
    """A unique hidden name ``.tmp-[<tag>-]<token>-<name>`` beside ``path`` (absolute)."""
    folder, name = os.path.split(os.path.abspath(os.fspath(path)))
    tag = f'{tag}-' if tag else ''
    return os.path.join(folder, f'{TMP_PREFIX}{tag}{uuid.uuid4().hex[:8]}-{name}')


def remove_path(path):
    """Remove a file, a symlink (not its target) or a folder tree at ``path``, if any."""
    if os.path.islink(path) or os.path.isfile(path):
        os.remove(path)
    elif os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)


def atomic_write_via(path, write_fn):
    """Call ``write_fn(tmp_path)`` to create a temporary file, folder or symlink beside ``path``,
    then rename it to ``path``; creates the parent folder. On any error or interruption the
    temporary entry is removed and ``path`` is left as it was. Returns ``path``.

    A folder can only replace a missing or empty folder (``os.replace`` semantics).
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = temp_path(path)
    try:
        write_fn(tmp)
        os.replace(tmp, path)
    finally:
        remove_path(tmp)
    return path


def atomic_write_bytes(path, data):
    """Write ``data`` (bytes) to ``path`` atomically, creating parent folders.

    Raises ``OSError`` naming ``path`` when the folder is not writable; no temporary file remains.
    """
    def write(tmp):
        with open(tmp, 'wb') as f:
            f.write(data)

    try:
        return atomic_write_via(path, write)
    except OSError as err:
        raise OSError(f'cannot write {path}: {err}') from err


def atomic_write_text(path, text):
    """Write the string ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_write_bytes`)."""
    return atomic_write_bytes(path, text.encode('utf-8'))


def strict_json(obj):
    """``obj`` with every non-finite float (NaN, +-inf: not JSON) replaced by ``None`` (JSON
    ``null``), recursively through dicts, lists and tuples; numpy scalars become Python ones."""
    if isinstance(obj, dict):
        return {k: strict_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_json(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def atomic_write_json(path, obj, indent=1):
    """Write ``obj`` as strict JSON (:func:`strict_json`: NaN/inf become ``null``) to ``path``
    atomically (trailing newline)."""
    return atomic_write_text(path, json.dumps(strict_json(obj), indent=indent,
                                              allow_nan=False) + '\n')
