"""Training: log lines, checkpoints, resume after kill -9, TSA warm-up, non-finite loss.

Every ``tools/main.py`` launch costs a fresh Python + TensorFlow start and a trace of the training
step, so launches are shared: one uninterrupted run is inspected for its logs, is the reference of
the kill -9 resume and is continued with an absurd learning rate; the two time-limited runs (one
step, then one more after resuming) also show the TSA warm-up. Errors raised before any training
run :func:`ascendvsr.cli.main` in this process.
"""
import os
import re
import shutil
import signal
import subprocess
import time

import numpy as np
import pytest
import tensorflow as tf

from runner_helpers import ROOT, TINY3, main_cmd, run_main

STEPS = 8  # of the shared uninterrupted run (TSA warm-up: steps 1-3)


def train_args(data, out, steps, *extra):
    return ['--config-file', 'configs/edvr.yaml', '--mode', 'train', f'data.data_dir={data}',
            f'output_dir={out}', f'solver.total_steps={steps}', 'solver.print_interval=2',
            'solver.checkpoint_interval=2', 'solver.keep_checkpoints=2', *TINY3, *extra]


def weights(prefix):
    return {n: tf.train.load_variable(prefix, n) for n, _ in tf.train.list_variables(prefix)
            if n.startswith('weights/')}


def main_in_process(*args):
    """The exit code of ``tools/main.py args``, run by :func:`ascendvsr.cli.main` here."""
    from ascendvsr.cli import main
    return main(list(args))


@pytest.fixture(scope='module')
def uninterrupted(sample_dataset, tmp_path_factory):
    """One uninterrupted run of STEPS steps: ``(output_dir, its process)``."""
    out = tmp_path_factory.mktemp('train') / 'ref'
    return out, run_main(*train_args(sample_dataset, out, STEPS))


def test_train_logs_checkpoints_and_tensorboard(uninterrupted):
    out, proc = uninterrupted
    lines = re.findall(r'^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d Step:(\d+), lr:(\d+\.\d{8}), '
                       r'loss:(\d+\.\d{8}), time:(\d+\.\d\d)ms, fps:(\d+\.\d\d)$', proc.stdout, re.M)
    assert [int(l[0]) for l in lines] == [2, 4, 6, 8], proc.stdout
    assert all(float(l[4]) > 0 for l in lines)
    assert 'Only train the fusion (TSA) module' in proc.stdout and 'Train all the parameters' in proc.stdout
    ckpts = sorted(p for p in os.listdir(out / 'checkpoints') if p.endswith('.index'))
    assert ckpts == ['ckpt-6.index', 'ckpt-8.index']  # keep_checkpoints=2
    assert (out / 'checkpoints' / 'latest').read_text().strip() == 'ckpt-8'
    assert not [p for p in os.listdir(out / 'checkpoints') if p.startswith('.tmp')]
    assert os.path.getsize(out / 'log.txt') > 0 and 'Step:8' in (out / 'log.txt').read_text()
    assert [p for p in os.listdir(out / 'tensorboard') if p.startswith('events.out.tfevents')]


def test_resume_after_kill_matches_uninterrupted_run(sample_dataset, tmp_path, uninterrupted):
    steps = STEPS
    ref = uninterrupted[0]

    out = tmp_path / 'killed'
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3')
    proc = subprocess.Popen(main_cmd(*train_args(sample_dataset, out, steps)), cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    latest = out / 'checkpoints' / 'latest'
    deadline = time.time() + 300
    try:
        while time.time() < deadline and proc.poll() is None:
            if latest.exists() and latest.read_text().strip() in ('ckpt-2', 'ckpt-4'):
                break
            time.sleep(0.05)
        assert proc.poll() is None, 'training finished before it could be killed'
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    killed_at = latest.read_text().strip()
    assert killed_at in ('ckpt-2', 'ckpt-4', 'ckpt-6')

    again = run_main(*train_args(sample_dataset, out, steps))
    assert f'Resumed from' in again.stdout and f'{killed_at} at step' in again.stdout
    a = weights(str(ref / 'checkpoints' / f'ckpt-{steps}'))
    b = weights(str(out / 'checkpoints' / f'ckpt-{steps}'))
    assert a.keys() == b.keys() and len(a) > 20
    worst = max(float(np.abs(a[k] - b[k]).max()) for k in a)
    assert worst <= 1e-6, worst


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(sample_dataset, tmp_path,
                                                            uninterrupted):
    out = tmp_path / 'nan'
    shutil.copytree(uninterrupted[0], out)  # a run with good checkpoints, continued below
    good = weights(str(out / 'checkpoints' / f'ckpt-{STEPS}'))
    # an absurd learning rate makes the weights (and then the loss) blow up
    proc = run_main(*train_args(sample_dataset, out, 40, 'solver.lr=1e30', 'edvr.tsa_iter=0'),
                    check=False)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert re.search(r'Non-finite loss \(\w+\) or gradient at step \d+: training stopped', proc.stdout)
    latest = (out / 'checkpoints' / 'latest').read_text().strip()
    for name in os.listdir(out / 'checkpoints'):
        if name.endswith('.index'):
            w = weights(str(out / 'checkpoints' / name[:-len('.index')]))
            assert all(np.isfinite(v).all() for v in w.values()), name
    assert latest.startswith('ckpt-')
    del good


def test_unwritable_output_dir_is_a_clear_error(sample_dataset, tmp_path, capsys):
    blocker = tmp_path / 'file'
    blocker.write_text('x')
    code = main_in_process(*train_args(sample_dataset, blocker / 'out', 2))
    err = capsys.readouterr().err
    assert code == 1 and 'output_dir' in err and str(blocker) in err


def test_missing_dataset_is_a_clear_error(tmp_path, capsys):
    code = main_in_process(*train_args(tmp_path / 'nowhere', tmp_path / 'o', 2))
    assert code == 1 and 'nowhere' in capsys.readouterr().err


@pytest.fixture(scope='module')
def time_limited(sample_dataset, tmp_path_factory):
    """A run stopped by its time limit after step 1, then the same command again: ``(output_dir,
    first process, latest after it, second process, latest after it)``."""
    out = tmp_path_factory.mktemp('limit') / 'limited'
    args = train_args(sample_dataset, out, 50, 'solver.checkpoint_interval=100',
                      'solver.time_limit_minutes=0.0001',  # 6 ms: stops after the first step
                      'edvr.tsa_iter=10')  # both steps in the TSA warm-up
    latest = out / 'checkpoints' / 'latest'
    first = run_main(*args)
    first_latest = latest.read_text().strip()
    again = run_main(*args)  # the rerun resumes and runs one more step
    return out, first, first_latest, again, latest.read_text().strip()


def test_time_limit_stops_with_a_checkpoint_and_rerun_continues(time_limited):
    _, proc, first_latest, again, again_latest = time_limited
    assert 'Time limit of 0.0001 min reached at step 1 of 50' in proc.stdout, proc.stdout
    assert first_latest == 'ckpt-1'
    assert 'Resumed from' in again.stdout and 'reached at step 2 of 50' in again.stdout
    assert again_latest == 'ckpt-2'


def test_tsa_warmup_trains_only_fusion(time_limited):
    """Before edvr.tsa_iter only fusion.* weights move (BasicSR's TSA-only warm-up): the step
    from ckpt-1 to ckpt-2 of the time-limited runs is in it."""
    out = time_limited[0]
    w1, w2 = weights(str(out / 'checkpoints' / 'ckpt-1')), weights(str(out / 'checkpoints' / 'ckpt-2'))
    changed = {k for k in w1 if not np.array_equal(w1[k], w2[k])}
    assert changed and all(k.startswith('weights/fusion.') for k in changed), sorted(changed)[:5]
