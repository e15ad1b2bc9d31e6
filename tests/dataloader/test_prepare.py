"""Tests for ascendcv.dataloader.prepare and scripts/prepare_video_dataset.py (real files)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from ascendcv.dataloader.prepare import prepare_dataset
from ascendcv.utils.matlab_resize import bicubic_degrade
from ascendcv.utils.video_io import VideoError, read_video, sample_video_path, write_png

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLI = os.path.join(REPO, 'scripts', 'prepare_video_dataset.py')


def _png(path):
    with Image.open(path) as img:
        return np.asarray(img.convert('RGB'))


def _pngs(folder):
    return sorted(f for f in os.listdir(folder) if f.endswith('.png'))


def _all_files(folder):
    return sorted(os.path.relpath(os.path.join(r, f), folder)
                  for r, _, files in os.walk(folder) for f in files)


def _leftovers(folder):
    """Staging folders / temporary files a run must not leave behind."""
    return [name for name in os.listdir(folder) if name.startswith('.tmp-')]


def _frame_folder(folder, count, height, width, seed=0):
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, (count, height, width, 3), dtype=np.uint8)
    for i, frame in enumerate(frames):
        write_png(os.path.join(folder, f'frame_{i + 1}.png'), frame)  # natural order: 1..count
    return frames


def test_prepare_from_bundled_clips_builds_reds_layout(tmp_path):
    out = tmp_path / 'sample'
    meta = prepare_dataset(['bikes'], out, clip_len=5, val_sources=['carphone'], max_frames=10,
                           crop_multiple=32, progress=False)

    assert json.loads((out / 'sets' / 'train.json').read_text()) == ['000', '001']
    assert json.loads((out / 'sets' / 'val.json').read_text()) == ['002', '003']
    assert json.loads((out / 'meta.json').read_text()) == meta
    assert sorted(os.listdir(out / 'images')) == ['000', '001', '002', '003']
    assert len([f for f in _all_files(out) if f.endswith('.png')]) == 4 * 2 * 5

    # bikes is 272x640, carphone 144x176 (HxW): center crop to multiples of 32
    expected_gt = {'000': (256, 640), '001': (256, 640), '002': (128, 160), '003': (128, 160)}
    for clip, (h, w) in expected_gt.items():
        gt_dir, lr_dir = out / 'images' / clip / 'truth', out / 'images' / clip / 'blur4'
        assert _pngs(gt_dir) == _pngs(lr_dir) == [f'{i:08d}.png' for i in range(5)]
        gt, lr = _png(gt_dir / '00000000.png'), _png(lr_dir / '00000000.png')
        assert gt.shape == (h, w, 3) and lr.shape == (h // 4, w // 4, 3)
        assert h % 32 == 0 and w % 32 == 0

    # GT is the exact center crop of the decoded video; LR is the MATLAB bicubic of that GT
    video = read_video(sample_video_path('bikes'), max_frames=10)
    clip1_gt = np.stack([_png(out / 'images' / '001' / 'truth' / f'{i:08d}.png') for i in range(5)])
    np.testing.assert_array_equal(clip1_gt, video[5:10, 8:264, :, :])
    clip1_lr = np.stack([_png(out / 'images' / '001' / 'blur4' / f'{i:08d}.png') for i in range(5)])
    np.testing.assert_array_equal(clip1_lr, bicubic_degrade(clip1_gt, scale=4))

    assert meta['scale'] == 4 and meta['clip_len'] == 5 and meta['num_frames'] == 20
    bikes, carphone = meta['sources']
    assert (bikes['source'], bikes['role'], bikes['clips']) == ('bikes', 'train', ['000', '001'])
    assert (carphone['role'], carphone['clips']) == ('val', ['002', '003'])
    assert bikes['frames_read'] == 10 and bikes['frame_size'] == [272, 640]
    assert bikes['gt_size'] == [256, 640] and bikes['lr_size'] == [64, 160]
    assert carphone['frame_size'] == [144, 176] and carphone['gt_size'] == [128, 160]
    assert meta['clips']['003'] == {'source': 1, 'start_frame': 5, 'num_frames': 5,
                                    'gt_size': [128, 160], 'lr_size': [32, 40], 'split': 'val'}
    assert _leftovers(tmp_path) == [] and not [f for f in _all_files(out) if '.tmp-' in f]

    # the toolkit's REDS reader accepts the result (it checks frame lists and LR * 4 == GT)
    from ascendcv.dataloader.reds import RedsDataset
    assert RedsDataset(out, 'train', set_file='sets/train.json').clips == ('000', '001')
    assert RedsDataset(out, 'val', set_file='sets/val.json').clips == ('002', '003')


def test_prepare_from_frame_folder_with_val_clips(tmp_path):
    src = tmp_path / 'frames'
    frames = _frame_folder(src, count=12, height=40, width=52)
    short = tmp_path / 'short'
    short_frames = _frame_folder(short, count=3, height=36, width=36, seed=1)
    out = tmp_path / 'ds'
    meta = prepare_dataset([str(src), str(short)], out, clip_len=5, val_clips=1,
                           crop_multiple=16, scale=4, progress=False)

    # 12 frames -> clips 000, 001 (2 frames dropped); 3 frames -> one short clip 002 = val
    assert json.loads((out / 'sets' / 'train.json').read_text()) == ['000', '001']
    assert json.loads((out / 'sets' / 'val.json').read_text()) == ['002']
    assert meta['sources'][0]['frames_dropped'] == 2
    assert meta['sources'][0]['kind'] == 'frame_folder'
    assert len(_pngs(out / 'images' / '002' / 'truth')) == 3
    # 40x52 -> 32x48 (top 4, left 2); frames in natural order (frame_2 before frame_10)
    for i in range(5):
        np.testing.assert_array_equal(_png(out / 'images' / '001' / 'truth' / f'{i:08d}.png'),
                                      frames[5 + i, 4:36, 2:50])
        assert _png(out / 'images' / '001' / 'blur4' / f'{i:08d}.png').shape == (8, 12, 3)
    np.testing.assert_array_equal(_png(out / 'images' / '002' / 'truth' / '00000002.png'),
                                  short_frames[2, 2:34, 2:34])


def test_refuses_to_overwrite_non_empty_out(tmp_path):
    src = tmp_path / 'frames'
    _frame_folder(src, count=10, height=16, width=16)
    out = tmp_path / 'ds'
    out.mkdir()
    (out / 'notes.txt').write_text('keep me')

    with pytest.raises(FileExistsError, match='overwrite'):
        prepare_dataset([str(src)], out, clip_len=5, progress=False)
    assert os.listdir(out) == ['notes.txt'] and _leftovers(tmp_path) == []

    prepare_dataset([str(src)], out, clip_len=5, overwrite=True, progress=False)
    assert sorted(os.listdir(out / 'images')) == ['000', '001']
    # a second overwrite replaces the dataset (fewer clips now) and keeps foreign files
    prepare_dataset([str(src)], out, clip_len=5, max_frames=5, overwrite=True, progress=False)
    assert sorted(os.listdir(out / 'images')) == ['000']
    assert json.loads((out / 'sets' / 'train.json').read_text()) == ['000']
    assert (out / 'notes.txt').read_text() == 'keep me'


def test_unreadable_source_names_the_file(tmp_path):
    good = tmp_path / 'frames'
    _frame_folder(good, count=5, height=16, width=16)
    broken = tmp_path / 'broken.mp4'
    broken.write_bytes(b'this is not a video' * 100)
    out = tmp_path / 'ds'
    with pytest.raises(VideoError, match='broken.mp4'):
        prepare_dataset([str(good), str(broken)], out, clip_len=5, progress=False)
    # nothing half-built is left behind: no output, no staging folder
    assert not out.exists() and _leftovers(tmp_path) == []

    with pytest.raises(VideoError, match='no_such_clip.mp4'):
        prepare_dataset([str(tmp_path / 'no_such_clip.mp4')], out, progress=False)
    with pytest.raises(VideoError, match='not_a_sample'):
        prepare_dataset(['not_a_sample'], out, progress=False)


def test_rejects_bad_arguments(tmp_path):
    src = tmp_path / 'frames'
    _frame_folder(src, count=5, height=16, width=16)
    with pytest.raises(ValueError, match='multiple of scale'):
        prepare_dataset([str(src)], tmp_path / 'a', crop_multiple=10, scale=4, progress=False)
    with pytest.raises(ValueError, match='no training clip'):
        prepare_dataset([str(src)], tmp_path / 'b', clip_len=5, val_clips=1, progress=False)
    with pytest.raises(ValueError, match='both a training and a validation'):
        prepare_dataset([str(src)], tmp_path / 'c', val_sources=[str(src)], progress=False)
    with pytest.raises(ValueError, match='smaller than crop_multiple'):
        prepare_dataset([str(src)], tmp_path / 'd', crop_multiple=32, progress=False)
    assert sorted(os.listdir(tmp_path)) == ['frames']


def test_cli_builds_dataset_and_refuses_overwrite(tmp_path):
    src = tmp_path / 'frames'
    _frame_folder(src, count=6, height=20, width=24)
    out = tmp_path / 'ds'
    cmd = [sys.executable, CLI, '--source', str(src), '--out', str(out), '--clip-len', '3',
           '--val-clips', '1', '--quiet']
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert '2 clips' in run.stdout
    assert json.loads((out / 'sets' / 'val.json').read_text()) == ['001']
    assert _png(out / 'images' / '000' / 'truth' / '00000000.png').shape == (16, 16, 3)

    again = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert again.returncode == 1
    assert 'not empty' in again.stderr and '--overwrite' in again.stderr
    assert str(out) in again.stderr
