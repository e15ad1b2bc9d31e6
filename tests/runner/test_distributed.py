"""Two-process training on localhost with each backend (tf.distribute, Horovod).

Every multi-process run is bounded by ``timeout -k`` and its process group is killed afterwards.
"""
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from runner_helpers import ROOT, TINY3

BACKENDS = ['tf', 'horovod']
STEPS = 4
COMMON = [*TINY3, 'edvr.tsa_iter=0', 'solver.print_interval=1', 'solver.checkpoint_interval=2',
          'solver.keep_checkpoints=5', f'solver.total_steps={STEPS}', 'solver.collective_timeout=20']


def horovod_available():
    try:
        import horovod.tensorflow  # noqa: F401
        return True
    except ImportError:
        return False


def launch(backend, data, out, extra=(), timeout=400):
    """Start scripts/run_8p_train.sh with 2 processes in its own process group."""
    env = dict(os.environ, PYTHON=sys.executable, BACKEND=backend, OUT_8P=str(out) + '_8p',
               TF_CPP_MIN_LOG_LEVEL='3', CONFIG=os.path.join(ROOT, 'configs', 'edvr.yaml'))
    cmd = ['timeout', '-k', '10', str(timeout), 'bash', os.path.join(ROOT, 'scripts', 'run_8p_train.sh'),
           '2', f'data.data_dir={data}', f'output_dir={out}', *COMMON, *extra]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)


def finish(proc, timeout=420):
    try:
        out, _ = proc.communicate(timeout=timeout)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return proc.returncode, out


def weights(prefix):
    return {n: tf.train.load_variable(prefix, n) for n, _ in tf.train.list_variables(prefix)
            if n.startswith('weights/')}


@pytest.fixture(scope='module')
def single_process_reference(sample_dataset, tmp_path_factory):
    """One process with the combined batch (2 ranks x batch 2 = batch 4): tools/main.py's main
    run in this process (no second Python + TensorFlow start)."""
    from ascendvsr.cli import main
    out = tmp_path_factory.mktemp('single') / 'run'
    assert main(['--config-file', os.path.join(ROOT, 'configs', 'edvr.yaml'), '--mode', 'train',
                 f'data.data_dir={sample_dataset}', f'output_dir={out}', *COMMON,
                 'data.batch_size=4']) == 0
    return weights(str(out / 'checkpoints' / f'ckpt-{STEPS}'))


@pytest.mark.parametrize('backend', BACKENDS)
def test_two_ranks_match_single_process_on_combined_batch(backend, sample_dataset, tmp_path,
                                                          single_process_reference):
    if backend == 'horovod' and not horovod_available():
        pytest.skip('Horovod is not installed (bash scripts/install_horovod.sh)')
    out = tmp_path / backend
    code, log = finish(launch(backend, sample_dataset, out))
    assert code == 0, log[-4000:]
    assert re.search(r'max deviation from their mean 0 \(in sync\)', log), log[-2000:]
    assert re.search(r'Start training at step 1 of 4 \(batch 2 x 2 workers\)', log)
    steps = re.findall(r'Step:(\d+), lr', log)
    assert steps == ['1', '2', '3', '4'], steps  # rank 0 alone logs
    names = sorted(os.listdir(out / 'checkpoints'))
    assert names == ['ckpt-2.data-00000-of-00001', 'ckpt-2.index', 'ckpt-4.data-00000-of-00001',
                     'ckpt-4.index', 'latest'], names  # written once, by rank 0
    ours = weights(str(out / 'checkpoints' / f'ckpt-{STEPS}'))
    ref = single_process_reference
    assert ours.keys() == ref.keys()
    worst = max(float(np.abs(ours[k] - ref[k]).max()) for k in ref)
    assert worst <= 1e-5, worst


def _pids_of_rank(out, rank):
    """PIDs of training processes of this run (by output_dir) with the given rank."""
    pids = []
    for pid in os.listdir('/proc'):
        if not pid.isdigit():
            continue
        try:
            cmd = open(f'/proc/{pid}/cmdline', 'rb').read().split(b'\0')
            env = open(f'/proc/{pid}/environ', 'rb').read().split(b'\0')
        except OSError:
            continue
        if f'output_dir={out}'.encode() not in cmd or not any(c.endswith(b'tools/main.py') for c in cmd):
            continue
        envd = dict(e.split(b'=', 1) for e in env if b'=' in e)
        r = envd.get(b'HOROVOD_RANK')
        if r is None and b'TF_CONFIG' in envd:
            r = str(json.loads(envd[b'TF_CONFIG'])['task']['index']).encode()
        if r == str(rank).encode():
            pids.append(int(pid))
    return pids


@pytest.mark.parametrize('backend', BACKENDS)
def test_dead_rank_stops_the_others_and_rerun_resumes(backend, sample_dataset, tmp_path):
    if backend == 'horovod' and not horovod_available():
        pytest.skip('Horovod is not installed (bash scripts/install_horovod.sh)')
    out = tmp_path / backend
    proc = launch(backend, sample_dataset, out, ['solver.total_steps=400'])
    latest = out / 'checkpoints' / 'latest'
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and not latest.exists():
        time.sleep(0.2)
    assert latest.exists(), 'no checkpoint before the deadline'
    victims = _pids_of_rank(out, 1)
    assert victims, 'rank 1 not found'
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    t0 = time.time()
    code, log = finish(proc, timeout=120)
    stopped_after = time.time() - t0
    assert code != 0 and stopped_after < 60, (code, stopped_after, log[-3000:])
    assert not _pids_of_rank(out, 0), 'rank 0 still running'
    last = int(latest.read_text().strip().split('-')[1])
    # the same command resumes from the last checkpoint (shortened to finish quickly)
    code, log = finish(launch(backend, sample_dataset, out, [f'solver.total_steps={last + 2}']))
    assert code == 0, log[-4000:]
    assert f'Resumed from {out}/checkpoints/ckpt-{last} at step {last}' in log
    assert f'Step:{last + 2}, lr' in log
