"""Atomic file writes: write a temporary file beside the target, then ``os.replace`` it.

A reader (or a crash) never sees a half-written file under the final name, and an existing file
stays intact until the new one is complete.
"""
import json
import os
import uuid


def atomic_write_bytes(path, data):
    """Write ``data`` (bytes) to ``path`` atomically, creating parent folders.

    Raises ``OSError`` naming ``path`` when the folder is not writable; no temporary file remains.
    """
    folder = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(folder, f'.tmp-{uuid.uuid4().hex[:8]}-{os.path.basename(path)}')
    try:
        os.makedirs(folder, exist_ok=True)
        with open(tmp, 'wb') as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError as err:
        raise OSError(f'cannot write {path}: {err}') from err
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def atomic_write_json(path, obj, indent=1):
    """``json.dump`` ``obj`` to ``path`` atomically (trailing newline)."""
    return atomic_write_bytes(path, (json.dumps(obj, indent=indent) + '\n').encode())
