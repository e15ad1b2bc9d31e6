"""The config a checkpoint was trained with is stored beside it and used by default (issue #12
item 3): training writes output_dir/config.yaml; eval / inference / freeze with a checkpoint and
no config file use it (``bash scripts/run_freeze.sh OUT/checkpoints`` just works); an explicit
config that disagrees on the model's keys is a config error naming both files and the keys."""
import importlib.util
import os
import subprocess

import numpy as np
import pytest

from ascendvsr.config import ConfigError, load_config
from ascendvsr.config.stored import load_run_config, stored_config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# a tiny EDVR that is not configs/edvr.yaml's EDVR-M (3 frames: smaller graphs to trace/freeze)
TINY = ['edvr.num_frame=3', 'edvr.num_feat=8', 'edvr.deformable_groups=2', 'edvr.num_extract_block=1',
        'edvr.num_reconstruct_block=1', 'edvr.tsa_iter=0', 'edvr.dcn_jit_compile=False',
        'data.crop_size=16', 'data.batch_size=1', 'data.num_threads=1',
        'data.train_data_queue_size=1', 'data.eval_in_size=[16,20]', 'solver.total_steps=1',
        'solver.lr_schedule=constant', 'export.pb_xla_dcn=False', 'export.onnx=False']


def _main():
    spec = importlib.util.spec_from_file_location('_tools_main', os.path.join(ROOT, 'tools', 'main.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    from ascendcv.dataloader.prepare import prepare_dataset
    work = tmp_path_factory.mktemp('stored')
    data = str(work / 'data')
    prepare_dataset(['bikes'], data, clip_len=5, val_sources=['carphone'], max_frames=5,
                    progress=False)
    out = str(work / 'run')
    args = ['--config-file', os.path.join(ROOT, 'configs', 'edvr.yaml'), '--mode', 'train',
            f'data.data_dir={data}', f'output_dir={out}', *TINY]
    # a run at its last step (saved by the trainer itself, without the cost of a training step):
    # tools/main.py train then stores the config and has nothing left to do
    import logging
    from ascendcv.runner.trainer import Trainer
    from ascendvsr.zoo import get_entry
    cfg = load_config(args[1], args[4:])
    entry = get_entry('EDVR')
    trainer = Trainer(cfg, entry.build(cfg), entry.make_task(cfg), logging.getLogger('t'))
    trainer.step.assign(1)
    trainer.save()
    assert not os.path.exists(os.path.join(out, 'config.yaml'))
    assert _main()(args) == 0
    return out


def test_training_stores_its_config(trained):
    path = os.path.join(trained, 'config.yaml')
    assert os.path.isfile(path)
    assert not [p for p in os.listdir(trained) if p.startswith('.tmp')]  # written atomically
    cfg = load_config(path, ['mode', 'train'])
    assert cfg.edvr.num_feat == 8 and cfg.output_dir == trained


def test_checkpoint_finds_its_config(trained, tmp_path):
    path = os.path.join(trained, 'config.yaml')
    ckpts = os.path.join(trained, 'checkpoints')
    for ckpt in (ckpts, os.path.join(ckpts, 'ckpt-1'), os.path.join(ckpts, 'ckpt-1.index'),
                 os.path.join(trained, 'EDVR.pb')):
        assert stored_config(ckpt) == path, ckpt
    # a converted checkpoint in another folder of the run does not take the run's config
    os.makedirs(os.path.join(trained, 'converted'), exist_ok=True)
    assert stored_config(os.path.join(trained, 'converted', 'edvr_m')) is None
    cfg, stored = load_run_config('', ['model.checkpoint', ckpts, 'mode', 'eval', 'edvr.tsa_iter=5'])
    assert stored == path and cfg.edvr.num_feat == 8 and cfg.edvr.tsa_iter == 5
    # training ignores it; a config that agrees (runtime keys may differ) is accepted
    assert load_run_config('', ['model.checkpoint', ckpts, 'mode', 'train'])[1] is None
    edvr = os.path.join(ROOT, 'configs', 'edvr.yaml')
    cfg, _ = load_run_config(edvr, TINY + ['edvr.impl=npu', 'model.checkpoint', ckpts, 'mode', 'freeze'])
    assert cfg.edvr.impl == 'npu'


def test_explicit_config_that_disagrees_is_a_config_error(trained, capsys):
    ckpts = os.path.join(trained, 'checkpoints')
    edvr = os.path.join(ROOT, 'configs', 'edvr.yaml')
    with pytest.raises(ConfigError) as err:
        load_run_config(edvr, ['model.checkpoint', ckpts, 'mode', 'eval'])
    msg = str(err.value)
    assert edvr in msg and os.path.join(trained, 'config.yaml') in msg
    assert "edvr.num_feat: 8 in config.yaml, 64 given" in msg and 'edvr.num_extract_block' in msg
    assert 'edvr.tsa_iter' not in msg  # a training key, not the model's
    assert _main()(['--config-file', edvr, '--mode', 'inference', 'model.checkpoint', ckpts]) == 2
    assert 'disagrees with' in capsys.readouterr().err


def test_run_freeze_script_uses_the_stored_config(trained):
    env = {k: v for k, v in os.environ.items() if k != 'CONFIG'}
    env['TF_CPP_MIN_LOG_LEVEL'] = '3'
    proc = subprocess.run(['bash', os.path.join(ROOT, 'scripts', 'run_freeze.sh'),
                           os.path.join(trained, 'checkpoints')], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f'Config: {os.path.join(trained, "config.yaml")} (stored with the checkpoint)' in proc.stdout
    assert os.path.isfile(os.path.join(trained, 'EDVR.pb'))  # the run's output_dir
    assert 'Frozen graph vs live model' in proc.stdout


def test_python_api_restores_like_the_cli(trained, tmp_path):
    import glob

    from ascendcv.utils.video_io import read_frame_folder
    from ascendvsr.api import restore_video
    source = sorted(glob.glob(os.path.join(os.path.dirname(trained), 'data', 'images', '*',
                                           'blur4')))[-1]
    frames = restore_video(source, os.path.join(trained, 'checkpoints'),
                           output=str(tmp_path / 'api'), max_frames=3)
    lr = read_frame_folder(source, max_frames=3)
    assert frames.dtype == np.uint8 and frames.shape == (3, 4 * lr.shape[1], 4 * lr.shape[2], 3)
    assert _main()(['inference', 'model.checkpoint', os.path.join(trained, 'checkpoints'),
                    f'inference.source={source}', 'inference.max_frames=3',
                    f'output_dir={tmp_path / "cli"}']) == 0  # `ascendvsr inference ...`
    np.testing.assert_array_equal(read_frame_folder(str(tmp_path / 'cli' / 'test' / 'blur4')),
                                  frames)
    np.testing.assert_array_equal(read_frame_folder(str(tmp_path / 'api')), frames)
