"""Atomic writes: complete file or the old one, never a half-written file or a leftover temp."""
import json
import os
import shutil

import pytest

from ascendcv.utils.fileio import (atomic_write_bytes, atomic_write_json, atomic_write_text,
                                  atomic_write_via, temp_path)


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


def test_atomic_write_via_folders_links_and_failures(tmp_path):
    src = tmp_path / 'src'
    src.mkdir()
    (src / 'a.txt').write_text('a')
    dst = tmp_path / 'out' / 'copy'
    atomic_write_via(str(dst), lambda tmp: shutil.copytree(src, tmp))
    assert (dst / 'a.txt').read_text() == 'a'
    link = tmp_path / 'out' / 'link'
    atomic_write_via(str(link), lambda tmp: os.symlink(src, tmp, target_is_directory=True))
    assert os.path.islink(link) and os.path.realpath(link) == os.path.realpath(src)

    def half_written(tmp):
        os.makedirs(tmp)
        (tmp_path / 'seen').write_text(os.path.basename(tmp))
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write_via(str(tmp_path / 'out' / 'never'), half_written)
    assert (tmp_path / 'seen').read_text().startswith('.tmp-')
    assert sorted(os.listdir(tmp_path / 'out')) == ['copy', 'link']  # nothing half-written

    atomic_write_text(str(tmp_path / 'marker'), 'done\n')
    assert (tmp_path / 'marker').read_text() == 'done\n'
    tmp = temp_path(str(tmp_path / 'clip.mp4'), 'extract')
    assert os.path.dirname(tmp) == str(tmp_path)
    assert os.path.basename(tmp).startswith('.tmp-extract-') and tmp.endswith('-clip.mp4')
