"""Tests for the REDS preparation scripts on tiny fake REDS trees (no network needed)."""
import http.server
import importlib.util
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import zipfile

import numpy as np
import pytest
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPTS = os.path.join(REPO, 'scripts')


def _load(name):
    path = os.path.join(SCRIPTS, f'{name}.py')
    spec = importlib.util.spec_from_file_location(f'_reds_{name}', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


download = _load('download_REDS')
regroup = _load('regroup_reds_dataset')
make = _load('make_reds_dataset')


def _png_bytes(size, seed):
    arr = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format='PNG')
    return buf.getvalue()


def _fake_raw(root, train=('000', '001', '011', '015', '020'), val=('000', '001'), frames=3,
              gt=16, lr=4):
    """REDS raw tree after extraction: train_sharp, train_sharp_bicubic/X4, val_* (PNG frames)."""
    seed = 0
    for split, clips in (('train', train), ('val', val)):
        for clip in clips:
            lr_sub = os.path.join(f'{split}_sharp_bicubic', 'X4')
            for sub, size in ((f'{split}_sharp', gt), (lr_sub, lr)):
                folder = os.path.join(root, sub, clip)
                os.makedirs(folder, exist_ok=True)
                for i in range(frames):
                    seed += 1
                    with open(os.path.join(folder, f'{i:08d}.png'), 'wb') as f:
                        f.write(_png_bytes(size, seed))
    return root


def _tree(folder):
    """{relative path: bytes} of every file under folder."""
    out = {}
    for r, _, files in os.walk(folder):
        for f in files:
            p = os.path.join(r, f)
            with open(p, 'rb') as fh:
                out[os.path.relpath(p, folder)] = fh.read()
    return out


def _size(path):
    with Image.open(path) as img:
        return img.size[::-1]


# --------------------------------------------------------------------------- regroup

def test_regroup_moves_val_clips_to_240_and_is_idempotent(tmp_path):
    root = _fake_raw(str(tmp_path / 'raw'))
    val_gt = _tree(os.path.join(root, 'val_sharp', '001'))
    val_lr = _tree(os.path.join(root, 'val_sharp_bicubic', 'X4', '000'))

    assert regroup.main(['--root', root]) == 0
    assert sorted(os.listdir(os.path.join(root, 'train_sharp'))) == \
        ['000', '001', '011', '015', '020', '240', '241']
    assert sorted(os.listdir(os.path.join(root, 'train_sharp_bicubic', 'X4'))) == \
        ['000', '001', '011', '015', '020', '240', '241']
    assert _tree(os.path.join(root, 'train_sharp', '241')) == val_gt
    assert _tree(os.path.join(root, 'train_sharp_bicubic', 'X4', '240')) == val_lr
    assert os.listdir(os.path.join(root, 'val_sharp')) == []  # moved, not copied

    before = _tree(root)
    assert regroup.regroup(root, log=lambda *_: None) == {
        os.path.join(root, 'train_sharp'): (0, 0),
        os.path.join(root, 'train_sharp_bicubic', 'X4'): (0, 0)}
    assert _tree(root) == before
    # also fine once the emptied val folders are deleted
    shutil.rmtree(os.path.join(root, 'val_sharp'))
    shutil.rmtree(os.path.join(root, 'val_sharp_bicubic'))
    assert regroup.main(['--root', root]) == 0 and _tree(root) == before


def test_regroup_copy_mode_and_zip_layout(tmp_path):
    # the REDS zips extract to <root>/train/train_sharp, <root>/val/val_sharp ...
    flat = _fake_raw(str(tmp_path / 'flat'), train=('000',), val=('005',))
    root = str(tmp_path / 'raw')
    for split in ('train', 'val'):
        for part in (f'{split}_sharp', f'{split}_sharp_bicubic'):
            shutil.move(os.path.join(flat, part), os.path.join(root, split, part))
    assert regroup.main(['--root', root, '--copy']) == 0
    assert os.path.isdir(os.path.join(root, 'train', 'train_sharp', '245'))
    assert os.path.isdir(os.path.join(root, 'train', 'train_sharp_bicubic', 'X4', '245'))
    assert os.path.isdir(os.path.join(root, 'val', 'val_sharp', '005'))  # copies keep the source
    assert regroup.main(['--root', root, '--copy']) == 0  # already in place: skipped


def test_regroup_reports_missing_folders(tmp_path, capsys):
    assert regroup.main(['--root', str(tmp_path / 'nope')]) == 1
    assert 'nope' in capsys.readouterr().err

    root = _fake_raw(str(tmp_path / 'raw'), val=())
    shutil.rmtree(os.path.join(root, 'val_sharp'), ignore_errors=True)
    with pytest.raises(regroup.RegroupError, match='val_sharp'):
        regroup.regroup(root, log=lambda *_: None)
    shutil.rmtree(os.path.join(root, 'train_sharp'))
    with pytest.raises(regroup.RegroupError, match='train_sharp.*download_REDS.py'):
        regroup.regroup(root, log=lambda *_: None)


def test_regroup_refuses_conflicting_target(tmp_path):
    root = _fake_raw(str(tmp_path / 'raw'), train=('000', '240'), val=('000',))
    with pytest.raises(regroup.RegroupError, match='240'):
        # train_sharp/240 exists with other content (one frame fewer)
        os.remove(os.path.join(root, 'train_sharp', '240', '00000002.png'))
        regroup.regroup(root, log=lambda *_: None)
    assert os.path.isdir(os.path.join(root, 'val_sharp', '000'))  # nothing was moved


# --------------------------------------------------------------------------- make_reds_dataset

@pytest.mark.parametrize('link', [False, True])
def test_make_reds_dataset_builds_layout(tmp_path, link):
    raw = _fake_raw(str(tmp_path / 'raw'))
    regroup.regroup(raw, log=lambda *_: None)
    out = str(tmp_path / 'reds')
    argv = ['--raw', raw, '--out', out, '--quiet'] + (['--link'] if link else [])
    assert make.main(argv) == 0

    clips = ['000', '001', '011', '015', '020', '240', '241']
    assert sorted(os.listdir(os.path.join(out, 'images'))) == clips
    with open(os.path.join(out, 'sets', 'train.json')) as f:
        assert json.load(f) == ['001', '240', '241']
    with open(os.path.join(out, 'sets', 'val.json')) as f:
        assert json.load(f) == ['000', '011', '015', '020']
    for clip in clips:
        truth = os.path.join(out, 'images', clip, 'truth')
        blur4 = os.path.join(out, 'images', clip, 'blur4')
        assert sorted(os.listdir(truth)) == sorted(os.listdir(blur4)) == \
            ['00000000.png', '00000001.png', '00000002.png']
        assert _size(os.path.join(truth, '00000001.png')) == (16, 16)
        assert _size(os.path.join(blur4, '00000001.png')) == (4, 4)
        assert os.path.islink(truth) == link
    # the regrouped val clip 000 became 240: same frames as the raw train_sharp/240
    assert _tree(os.path.join(out, 'images', '240', 'truth')) == \
        _tree(os.path.join(raw, 'train_sharp', '240'))
    if link:
        assert os.path.realpath(os.path.join(out, 'images', '240', 'blur4')) == \
            os.path.realpath(os.path.join(raw, 'train_sharp_bicubic', 'X4', '240'))

    summary = make.make_reds_dataset(raw, out, link=link, progress=False, log=lambda *_: None)
    assert summary['placed'] == 0  # re-run: every clip already in place


def test_make_reds_dataset_size_mismatch_names_clip_and_file(tmp_path):
    raw = _fake_raw(str(tmp_path / 'raw'), val=())
    bad = os.path.join(raw, 'train_sharp_bicubic', 'X4', '015', '00000000.png')
    with open(bad, 'wb') as f:
        f.write(_png_bytes(5, 99))  # 5x5 * 4 != 16x16
    out = str(tmp_path / 'reds')
    with pytest.raises(make.DatasetError) as info:
        make.make_reds_dataset(raw, out, progress=False, log=lambda *_: None)
    msg = str(info.value)
    assert 'Clip 015' in msg and bad in msg and '5x5' in msg and '16x16' in msg
    assert not os.path.exists(out)  # validated before writing anything


def test_make_reds_dataset_frame_list_mismatch_and_missing_folders(tmp_path, capsys):
    raw = _fake_raw(str(tmp_path / 'raw'), val=())
    os.remove(os.path.join(raw, 'train_sharp_bicubic', 'X4', '011', '00000002.png'))
    with pytest.raises(make.DatasetError, match=r'Clip 011.*X4/011/00000002\.png is missing'):
        make.make_reds_dataset(raw, str(tmp_path / 'reds'), progress=False, log=lambda *_: None)

    shutil.rmtree(os.path.join(raw, 'train_sharp_bicubic'))
    assert make.main(['--raw', raw, '--out', str(tmp_path / 'reds'), '--quiet']) == 1
    assert 'train_sharp_bicubic' in capsys.readouterr().err


def test_make_reds_dataset_requires_val_clips(tmp_path):
    raw = _fake_raw(str(tmp_path / 'raw'), train=('000', '001'), val=())
    with pytest.raises(make.DatasetError, match="'011'"):
        make.make_reds_dataset(raw, str(tmp_path / 'reds'), progress=False, log=lambda *_: None)


# --------------------------------------------------------------------------- download_REDS

def _zip_bytes(split, part, clips, size):
    """A zip organised like the official ones: <split>/<part>[/X4]/<clip>/%08d.png."""
    buf = io.BytesIO()
    inner = f'{split}/{part}/X4' if part.endswith('bicubic') else f'{split}/{part}'
    with zipfile.ZipFile(buf, 'w') as zf:
        for c, clip in enumerate(clips):
            for i in range(2):
                zf.writestr(f'{inner}/{clip}/{i:08d}.png', _png_bytes(size, 10 * c + i))
    return buf.getvalue()


class _Server:
    """Local HTTP server serving {name: bytes}; honours 'Range: bytes=N-' requests."""

    def __init__(self, files):
        self.files, self.requests = files, []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.requests.append((self.path, self.headers.get('Range')))
                data = outer.files.get(self.path.lstrip('/'))
                if data is None:
                    self.send_error(404)
                    return
                start = 0
                rng = self.headers.get('Range')
                if rng and rng.startswith('bytes='):
                    start = int(rng[6:].split('-')[0])
                    self.send_response(206)
                    self.send_header('Content-Range', f'bytes {start}-{len(data) - 1}/{len(data)}')
                else:
                    self.send_response(200)
                self.send_header('Content-Length', str(len(data) - start))
                self.end_headers()
                self.wfile.write(data[start:])

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.url = f'http://127.0.0.1:{self.httpd.server_address[1]}/'

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv('no_proxy', '127.0.0.1,localhost')
    monkeypatch.setenv('NO_PROXY', '127.0.0.1,localhost')
    files = {'val_sharp.zip': _zip_bytes('val', 'val_sharp', ['000', '001'], 16),
             'val_sharp_bicubic.zip': _zip_bytes('val', 'val_sharp_bicubic', ['000', '001'], 4)}
    srv = _Server(files)
    yield srv
    srv.close()


def test_download_extracts_resumes_and_skips(tmp_path, server):
    root = str(tmp_path / 'raw')
    os.makedirs(root)
    data = server.files['val_sharp_bicubic.zip']
    with open(os.path.join(root, 'val_sharp_bicubic.zip.part'), 'wb') as f:
        f.write(data[:100])  # an interrupted earlier download

    argv = ['--root', root, '--parts', 'val_sharp', 'val_sharp_bicubic', '--base-url', server.url,
            '--quiet']
    assert download.main(argv) == 0
    assert ('/val_sharp_bicubic.zip', 'bytes=100-') in server.requests  # resumed, not restarted
    with open(os.path.join(root, 'val_sharp_bicubic.zip'), 'rb') as f:
        assert f.read() == data
    assert not [n for n in os.listdir(root) if n.endswith('.part') or n.startswith('.tmp-')]
    # the zips' val/ folder is dropped: <root>/<part>/...
    assert sorted(os.listdir(os.path.join(root, 'val_sharp'))) == ['000', '001']
    assert sorted(os.listdir(os.path.join(root, 'val_sharp_bicubic', 'X4', '001'))) == \
        ['00000000.png', '00000001.png']
    assert _size(os.path.join(root, 'val_sharp_bicubic', 'X4', '001', '00000001.png')) == (4, 4)
    assert not os.path.exists(os.path.join(root, 'val'))

    count = len(server.requests)
    assert download.main(argv) == 0  # everything done: no request, nothing changes
    assert len(server.requests) == count


def test_download_http_error_names_url(tmp_path, server, capsys):
    root = str(tmp_path / 'raw')
    assert download.main(['--root', root, '--parts', 'train_sharp', '--base-url', server.url,
                          '--quiet']) == 1
    err = capsys.readouterr().err
    assert server.url + 'train_sharp.zip' in err and 'HTTP 404' in err
    assert download.MANUAL_PAGE in err
    assert not os.path.exists(os.path.join(root, 'train_sharp.zip'))


def test_prepare_reds_dataset_sh_with_predownloaded_zips(tmp_path):
    """The whole pipeline 1 -> 2 -> 3 offline: zips already in ROOT/REDS_raw are extracted."""
    raw = tmp_path / 'data' / 'REDS_raw'
    raw.mkdir(parents=True)
    train = ['000', '011', '015', '020', '021']
    zips = {'train_sharp': _zip_bytes('train', 'train_sharp', train, 16),
            'train_sharp_bicubic': _zip_bytes('train', 'train_sharp_bicubic', train, 4),
            'val_sharp': _zip_bytes('val', 'val_sharp', ['000', '029'], 16),
            'val_sharp_bicubic': _zip_bytes('val', 'val_sharp_bicubic', ['000', '029'], 4)}
    for part, data in zips.items():
        (raw / f'{part}.zip').write_bytes(data)
    env = dict(os.environ, PYTHON=sys.executable, REDS_COPY='1')
    cmd = ['bash', os.path.join(SCRIPTS, 'prepare_reds_dataset.sh'), str(tmp_path / 'data')]
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    out = tmp_path / 'data' / 'reds'
    assert sorted(os.listdir(out / 'images')) == train + ['240', '269']
    assert json.loads((out / 'sets' / 'train.json').read_text()) == ['021', '240', '269']
    assert json.loads((out / 'sets' / 'val.json').read_text()) == ['000', '011', '015', '020']
    assert _size(out / 'images' / '269' / 'truth' / '00000001.png') == (16, 16)
    assert _size(out / 'images' / '269' / 'blur4' / '00000001.png') == (4, 4)
    assert not os.path.islink(out / 'images' / '269' / 'truth')
    # re-running the whole pipeline is a no-op
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr


def _reachable(host, port, timeout=5):
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def test_download_offline_fails_fast_naming_url(tmp_path):
    url = download.part_url('val_sharp_bicubic')
    if _reachable('data.cv.snu.ac.kr', 8008):
        pytest.skip('the REDS server is reachable; the offline failure cannot be tested here')
    root = tmp_path / 'raw'
    start = time.monotonic()
    run = subprocess.run([sys.executable, os.path.join(SCRIPTS, 'download_REDS.py'), '--root',
                          str(root), '--parts', 'val_sharp_bicubic'],
                         capture_output=True, text=True, timeout=120)
    elapsed = time.monotonic() - start
    assert run.returncode != 0
    assert elapsed < 30
    assert url in run.stderr and download.MANUAL_PAGE in run.stderr
    assert not (root / 'val_sharp_bicubic.zip').exists()
