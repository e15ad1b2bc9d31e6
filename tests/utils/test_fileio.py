"""Atomic writes: complete file or the old one, never a half-written file or a leftover temp."""
import json
import os

import pytest

from ascendcv.utils.fileio import atomic_write_bytes, atomic_write_json


def test_write_and_replace(tmp_path):
    p = tmp_path / 'sub' / 'report.json'
    atomic_write_json(str(p), {'psnr': 30.5})
    assert json.loads(p.read_text()) == {'psnr': 30.5}
    atomic_write_bytes(str(p), b'new')
    assert p.read_bytes() == b'new'
    assert os.listdir(p.parent) == ['report.json']


def test_unwritable_target_keeps_old_file_and_names_path(tmp_path):
    blocker = tmp_path / 'file'
    blocker.write_text('x')
    with pytest.raises(OSError, match='cannot write .*file/out.pb'):
        atomic_write_bytes(str(blocker / 'out.pb'), b'data')
    p = tmp_path / 'keep.json'
    atomic_write_json(str(p), [1])
    with pytest.raises(TypeError):
        atomic_write_json(str(p), {'bad': object()})  # not serialisable: nothing replaced
    assert json.loads(p.read_text()) == [1] and sorted(os.listdir(tmp_path)) == ['file', 'keep.json']
