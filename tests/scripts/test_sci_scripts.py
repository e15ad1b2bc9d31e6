"""scripts/get_sci_data.sh: copy from a folder (keeping present files), or download with a SHA-1
check that refuses a wrong file and leaves nothing half-written."""
import functools
import http.server
import os
import subprocess
import threading

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(REPO, 'scripts', 'get_sci_data.sh')


def run(*args, **env):
    return subprocess.run(['bash', SCRIPT, *args], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, **env))


def test_copy_from_a_folder_keeps_present_files(tmp_path):
    src = tmp_path / 'src'
    (src / 'masks').mkdir(parents=True)
    (src / 'traffic48_cacti.mat').write_bytes(b'traffic')
    (src / 'masks' / 'revsci_train_mask.mat').write_bytes(b'mask')
    dest = tmp_path / 'dest'
    (dest).mkdir()
    (dest / 'traffic48_cacti.mat').write_bytes(b'mine')
    proc = run(str(src), SCI_DATA_DIR=str(dest))
    assert proc.returncode == 0, proc.stderr
    assert (dest / 'traffic48_cacti.mat').read_bytes() == b'mine'   # kept
    assert (dest / 'masks' / 'revsci_train_mask.mat').read_bytes() == b'mask'
    assert 'keep' in proc.stdout and 'copied' in proc.stdout
    assert not list(dest.rglob('*.part'))


def test_download_checks_sha1(tmp_path):
    served = tmp_path / 'site'
    (served / 'train').mkdir(parents=True)
    (served / 'train' / 'mask.mat').write_bytes(b'not the official mask')
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        dest = tmp_path / 'dest'
        proc = run(str(tmp_path / 'no_such_folder'), SCI_DATA_DIR=str(dest),
                   SCI_DATA_URL=f'http://127.0.0.1:{server.server_address[1]}')
    finally:
        server.shutdown()
    assert proc.returncode != 0
    assert 'is not the expected 2c143075' in proc.stderr
    assert not list(dest.rglob('*.mat')) and not list(dest.rglob('*.part'))
