"""The user's entry point: tools/main.py convert, run as a subprocess; a second conversion (no
config file) and the errors run :func:`ascendvsr.cli.main` in this process (a fresh Python +
TensorFlow start costs seconds)."""
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIX = os.path.join(ROOT, 'tests', 'fixtures')
TINY_A = ['edvr.num_feat', '16', 'edvr.deformable_groups=2', 'edvr.num_extract_block=1',
          'edvr.num_reconstruct_block', '2']


def run_main(*args, check=True):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
    proc = subprocess.run([sys.executable, os.path.join(ROOT, 'tools', 'main.py'), *args],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    if check and proc.returncode:
        raise AssertionError(f'exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}')
    return proc


def main_in_process(*args):
    """The exit code of ``tools/main.py args``, run by :func:`ascendvsr.cli.main` here."""
    from ascendvsr.cli import main
    return main(list(args))


def test_convert_writes_a_checkpoint_that_reproduces_basicsr(tmp_path):
    prefix = tmp_path / 'ckpt' / 'edvr_tiny'
    proc = run_main('--config-file', 'configs/edvr.yaml', '--mode', 'convert',
                    f'convert.source={FIX}/edvr_tiny_a_ckpt.pth', f'convert.output={prefix}', *TINY_A)
    assert 'Converted' in proc.stdout
    assert os.path.exists(f'{prefix}.index')
    assert not [p for p in os.listdir(prefix.parent) if p.startswith('.tmp')]  # atomic write

    from ascendvsr.config import load_config
    from ascendcv.runner.checkpoint import restore_checkpoint as load_tf_checkpoint
    from ascendvsr.models.edvr import build_edvr as build_model
    cfg = load_config(os.path.join(ROOT, 'configs', 'edvr.yaml'), TINY_A)
    model = build_model(cfg)
    load_tf_checkpoint(model, str(prefix))
    io = np.load(os.path.join(FIX, 'edvr_tiny_a_io.npz'))
    out = model(tf.constant(io['input'].transpose(0, 1, 3, 4, 2))).numpy().transpose(0, 3, 1, 2)
    assert np.abs(out - io['output']).max() <= 2e-6


def test_tf_checkpoint_of_another_configuration_is_rejected(tmp_path):
    from ascendcv.utils.torch_checkpoint import CheckpointError
    from ascendvsr.config import load_config
    from ascendcv.runner.checkpoint import restore_checkpoint as load_tf_checkpoint
    from ascendvsr.models.edvr import build_edvr as build_model
    prefix = tmp_path / 'tiny'
    assert main_in_process('--mode', 'convert', f'convert.source={FIX}/edvr_tiny_a_ckpt.pth',
                           f'convert.output={prefix}', f'output_dir={tmp_path}', *TINY_A) == 0
    wider = build_model(load_config(None, ['edvr.num_feat', '32', 'edvr.deformable_groups=2',
                                           'edvr.num_extract_block=1', 'edvr.num_reconstruct_block=2']))
    with pytest.raises(CheckpointError, match='not a checkpoint of this EDVR model'):
        load_tf_checkpoint(wider, str(prefix))
    with pytest.raises(CheckpointError, match='TF checkpoint not found'):
        load_tf_checkpoint(wider, str(tmp_path / 'nothing'))


def test_cli_errors_name_the_problem(tmp_path, capsys):
    code = main_in_process('--mode', 'convert', 'edvr.num_feats', '3')
    assert code == 2 and "did you mean 'edvr.num_feat'" in capsys.readouterr().err
    code = main_in_process('--mode', 'convert', f'convert.source={FIX}/revsci_g2b2_model.pth',
                           f'output_dir={tmp_path}', *TINY_A)
    assert code == 1 and 'is not an EDVR checkpoint' in capsys.readouterr().err
    code = main_in_process('--mode', 'convert', f'convert.source={tmp_path}/missing.pth',
                           f'output_dir={tmp_path}')
    assert code == 1 and 'missing.pth' in capsys.readouterr().err
    code = main_in_process('--mode', 'convert', f'convert.source={FIX}/edvr_tiny_a_ckpt.pth',
                           'edvr.impl=npu', f'output_dir={tmp_path}', *TINY_A)
    assert code == 1 and 'npu_bridge' in capsys.readouterr().err
