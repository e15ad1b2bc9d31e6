"""Evaluation, inference and freezing from the user's entry point, on a tiny trained EDVR.

A ``tools/main.py`` launch costs a fresh Python + TensorFlow start plus tracing: the evaluation
from the checkpoint and the freezing with a dynamic batch are run once (module fixtures) and
inspected by the tests that need them; errors raised before any prediction run
:func:`ascendvsr.cli.main` in this process.
"""
import json
import os
import re

import numpy as np
import pytest
import tensorflow as tf

from runner_helpers import TINY3, run_main


@pytest.fixture(scope='module')
def trained(sample_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp('wf') / 'run'
    run_main('--config-file', 'configs/edvr.yaml', '--mode', 'train', f'data.data_dir={sample_dataset}',
             f'output_dir={out}', 'solver.total_steps=2', 'solver.checkpoint_interval=2', *TINY3)
    return str(out)


def common(sample_dataset, out):
    return ['--config-file', 'configs/edvr.yaml', f'data.data_dir={sample_dataset}',
            f'output_dir={out}', *TINY3]


def main_in_process(*args):
    """The exit code of ``tools/main.py args``, run by :func:`ascendvsr.cli.main` here."""
    from ascendvsr.cli import main
    return main(list(args))


@pytest.fixture(scope='module')
def evaluated(sample_dataset, trained, tmp_path_factory):
    """Evaluation of the trained checkpoint: ``(output_dir, process)``."""
    out = tmp_path_factory.mktemp('wf_eval') / 'eval'
    proc = run_main('--mode', 'eval', *common(sample_dataset, out), f'model.checkpoint={trained}/checkpoints',
                    'eval.compare_bicubic=True', 'eval.save_images=True')
    return out, proc


# freezing with a dynamic batch at the val frames' size: checked against eager and ONNX, and the
# graph the evaluation from a frozen graph uses
DYNAMIC = ('data.eval_batch_size=-1', 'data.eval_in_size=[36,44]')


@pytest.fixture(scope='module')
def freeze(sample_dataset, trained, tmp_path_factory):
    """``freeze(*options) -> (output_dir, process)``; each set of options is frozen once."""
    done = {}

    def run(*options):
        if options not in done:
            out = tmp_path_factory.mktemp('wf_frz') / 'frz'
            proc = run_main('--mode', 'freeze', *common(sample_dataset, out),
                            f'model.checkpoint={trained}/checkpoints', *options)
            done[options] = out, proc
        return done[options]
    return run


def test_evaluation_report_matches_metrics(sample_dataset, evaluated):
    out, proc = evaluated
    val = json.load(open(os.path.join(sample_dataset, 'sets', 'val.json')))
    for clip in val:
        assert f'Evaluate {clip}' in proc.stdout
    videos = re.findall(r'Video (\d+) PSNR = ([\d.]+) dB, SSIM = ([\d.]+) \(bicubic ([\d.]+) dB', proc.stdout)
    assert [v[0] for v in videos] == val
    assert 'Average PSNR' in proc.stdout
    report = json.load(open(out / 'eval' / 'report.json'))
    clip = videos[0][0]
    entry = report['videos'][clip]
    assert abs(entry['psnr'] - float(videos[0][1])) < 1e-4
    # recompute the PSNR of the saved frames independently (numpy, RGB, no crop)
    from ascendcv.utils.video_io import read_frame_folder
    restored = read_frame_folder(str(out / 'eval' / clip))
    gt = read_frame_folder(os.path.join(sample_dataset, 'images', clip, 'truth'))
    mse = ((restored.astype(np.float64) - gt.astype(np.float64)) ** 2).mean(axis=(1, 2, 3))
    assert abs(np.mean(10 * np.log10(255.0 ** 2 / mse)) - entry['psnr']) < 1e-6
    assert len(entry['psnr_per_frame']) == len(gt)
    # the picture: bicubic | model | ground truth of the middle frame, labelled with PSNRs
    from PIL import Image
    strip = np.asarray(Image.open(entry['strip']))
    h, w, mid = gt.shape[1], gt.shape[2], len(gt) // 2
    band, gap = 14, 4
    assert strip.shape == (h + band + 2 * gap, 3 * w + 4 * gap, 3)
    tile = lambda k: strip[gap + band:gap + band + h, gap + k * (w + gap):gap + k * (w + gap) + w]
    np.testing.assert_array_equal(tile(1), restored[mid])
    np.testing.assert_array_equal(tile(2), gt[mid])
    assert f'Pictures (bicubic | EDVR | ground truth)' in proc.stdout


def test_eval_with_checkpoint_of_another_configuration(sample_dataset, trained, tmp_path, capsys):
    # the config stored with the checkpoint disagrees: a config error naming both and the key
    code = main_in_process('--mode', 'eval', *common(sample_dataset, tmp_path), 'edvr.num_feat=16',
                           f'model.checkpoint={trained}/checkpoints')
    err = capsys.readouterr().err
    assert code == 2 and f'{trained}/config.yaml' in err
    assert 'edvr.num_feat: 8 in config.yaml, 16 given' in err
    # without a stored config, restoring names the checkpoint
    import shutil
    alone = tmp_path / 'alone'
    alone.mkdir()
    for name in os.listdir(f'{trained}/checkpoints'):
        if name.startswith('ckpt-2'):
            shutil.copy(f'{trained}/checkpoints/{name}', alone / name)
    code = main_in_process('--mode', 'eval', *common(sample_dataset, tmp_path), 'edvr.num_feat=16',
                           f'model.checkpoint={alone}/ckpt-2')
    assert code == 1 and 'is not a checkpoint of this EDVR model' in capsys.readouterr().err


def test_inference_on_video_file_and_folder(sample_dataset, trained, tmp_path):
    from ascendcv.utils.video_io import read_frame_folder, write_video
    lr = read_frame_folder(os.path.join(sample_dataset, 'images', '001', 'blur4'))
    video = tmp_path / 'clip.mp4'
    write_video(str(video), lr, fps=10)
    out = tmp_path / 'inf'
    proc = run_main('--mode', 'inference', *common(sample_dataset, out), f'model.checkpoint={trained}/checkpoints',
                    f'inference.source={video}', 'inference.save_video=True')
    frames = sorted(os.listdir(out / 'test' / 'clip'))
    assert frames == [f'{i:08d}.png' for i in range(len(lr))]
    restored = read_frame_folder(str(out / 'test' / 'clip'))
    assert restored.shape == (len(lr), lr.shape[1] * 4, lr.shape[2] * 4, 3)
    assert os.path.exists(out / 'test' / 'clip.mp4')
    # a frame folder works the same way
    out2 = tmp_path / 'inf2'
    run_main('--mode', 'inference', *common(sample_dataset, out2), f'model.checkpoint={trained}/checkpoints',
             f'inference.source={sample_dataset}/images/001/blur4', 'inference.max_frames=3')
    assert len(os.listdir(out2 / 'test' / 'blur4')) == 3


def test_inference_errors(sample_dataset, trained, tmp_path, capsys):
    bad = tmp_path / 'bad.mp4'
    bad.write_bytes(b'not a video at all')
    code = main_in_process('--mode', 'inference', *common(sample_dataset, tmp_path),
                           f'model.checkpoint={trained}/checkpoints', f'inference.source={bad}')
    assert code == 1 and 'bad.mp4' in capsys.readouterr().err
    code = main_in_process('--mode', 'inference', *common(sample_dataset, tmp_path), 'model.checkpoint=',
                           f'inference.source={bad}')
    assert code == 1 and 'model.checkpoint is empty' in capsys.readouterr().err


@pytest.mark.parametrize('options', [
    list(DYNAMIC),
    ['model.input_format_dimension=4', 'export.batch_size=2'],
    ['model.convert_output_to_uint8=True', 'data.eval_batch_size=-1', 'export.pb_xla_dcn=False'],
])
def test_freeze_matches_eager_and_onnx(freeze, options):
    out, proc = freeze(*options)
    pb_diff = float(re.search(r'Frozen graph vs live model: max abs diff (\S+)', proc.stdout).group(1))
    onnx_diff = float(re.search(r'onnxruntime vs TF(?: float32)?: max abs diff (\S+)',
                                proc.stdout).group(1))
    assert pb_diff <= 1e-5 and onnx_diff <= 1e-4 * (255 if 'uint8' in ' '.join(options) else 1)
    graph = tf.compat.v1.GraphDef()
    graph.ParseFromString(open(out / 'EDVR.pb', 'rb').read())
    ops = {n.op for n in graph.node}
    assert not ops & {'VarHandleOp', 'ReadVariableOp', 'VariableV2'}
    xla = any('_XlaMustCompile' in n.attr for n in graph.node) or any(
        '_XlaMustCompile' in f.attr for f in graph.library.function)
    assert xla == ('export.pb_xla_dcn=False' not in options)  # DCN kept XLA-compiled by default
    meta = json.load(open(out / 'EDVR.json'))
    if 'data.eval_batch_size=-1' in options:
        assert meta['inputs'][0]['shape'][0] is None
    if 'model.input_format_dimension=4' in options:
        assert meta['inputs'][0]['shape'] == [6, 16, 20, 3]  # export.batch_size 2 x 3 frames (TINY3)
    assert meta['output_dtype'] == ('uint8' if 'model.convert_output_to_uint8=True' in options else 'float32')
    assert os.path.getsize(out / 'EDVR.onnx') > 1000


def test_eval_from_frozen_graph_matches_checkpoint(sample_dataset, evaluated, freeze, tmp_path):
    frozen, _ = freeze(*DYNAMIC)
    a_out, a = evaluated  # from the checkpoint
    b = run_main('--mode', 'eval', *common(sample_dataset, tmp_path / 'b'), f'model.checkpoint={frozen}/EDVR.pb',
                 'eval.compute_ssim=False')
    pa = json.load(open(a_out / 'eval' / 'report.json'))['average_psnr']
    pb = json.load(open(tmp_path / 'b' / 'eval' / 'report.json'))['average_psnr']
    assert abs(pa - pb) < 1e-3, (a.stdout, b.stdout)
