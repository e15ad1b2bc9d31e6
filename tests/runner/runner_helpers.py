"""Helpers for the workflow tests: a tiny EDVR configuration and a tools/main.py runner."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# a tiny EDVR that trains in well under a second per step on CPU
TINY = ['edvr.num_feat=8', 'edvr.deformable_groups=2', 'edvr.num_extract_block=1',
        'edvr.num_reconstruct_block=1', 'data.crop_size=16', 'data.batch_size=2',
        'data.num_threads=2', 'data.train_data_queue_size=2', 'edvr.tsa_iter=3',
        'solver.lr_schedule=constant', 'solver.loss_reduction=mean', 'data.eval_batch_size=2',
        'data.eval_in_size=[16,20]']
# the same with 3 input frames instead of 5: the same code (PCD alignment per frame, TSA fusion
# over the frames) in ~40% smaller graphs, which are what a tools/main.py launch spends its time
# tracing, freezing and converting to ONNX (the launch-heavy runner tests use it)
TINY3 = ['edvr.num_frame=3', *TINY]


def main_cmd(*args):
    return [sys.executable, os.path.join(ROOT, 'tools', 'main.py'), *args]


def run_main(*args, check=True, timeout=600):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3')
    proc = subprocess.run(main_cmd(*args), capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=timeout)
    if check and proc.returncode:
        raise AssertionError(f'exit {proc.returncode}\nSTDOUT\n{proc.stdout}\nSTDERR\n{proc.stderr[-3000:]}')
    return proc
