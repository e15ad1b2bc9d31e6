"""RedsDataset: indexing, early errors naming the path, clip loading, aligned training crops."""
import json
import os
import re

import numpy as np
import pytest
from PIL import Image

from ascendcv.dataloader.frame_clips import DatasetError
from ascendcv.dataloader.reds import RedsDataset, toy_gt_frame, toy_lr_frame, write_toy_reds

LR_H, LR_W, SCALE, FRAMES = 12, 16, 4, 8


@pytest.fixture
def root(tmp_path):
    path = tmp_path / 'reds'
    write_toy_reds(path, num_clips=2, num_frames=FRAMES, lr_size=(LR_H, LR_W), scale=SCALE)
    return str(path)


def _reds(root, **kw):
    args = dict(split='train', gt_subdir='truth', lr_subdir='blur4',
                set_file='sets/train.json', scale=SCALE)
    args.update(kw)
    return RedsDataset(root, **args)


def _frame(root, clip, sub, t):
    return os.path.join(root, 'images', clip, sub, f'{t:08d}.png')


def _decode(sample_lr):
    """uint8 frames back from a float sample."""
    return np.rint(np.asarray(sample_lr) * 255).astype(np.uint8)


# --------------------------------------------------------------------------- indexing

def test_indexes_clips_frames_and_sizes(root):
    ds = _reds(root)
    assert ds.clips == ('000', '001')
    assert len(ds) == 2 and ds.total_frames == 16
    assert ds.num_frames('001') == FRAMES
    lr_paths, gt_paths = ds.frame_paths('001')
    assert lr_paths == [_frame(root, '001', 'blur4', t) for t in range(FRAMES)]
    assert gt_paths == [_frame(root, '001', 'truth', t) for t in range(FRAMES)]
    assert ds.lr_size('000') == (LR_H, LR_W) and ds.gt_size('000') == (LR_H * 4, LR_W * 4)
    assert ds.eval_centers('000') == list(range(FRAMES))
    text = ds.describe()
    assert 'REDS train: 2 clips, 16 frames' in text and '12x16' in text and '48x64' in text
    with pytest.raises(KeyError, match="'042'"):
        ds.num_frames('042')


def test_set_file_order_and_absolute_path(root, tmp_path):
    listing = tmp_path / 'my_set.json'
    listing.write_text(json.dumps(['001']))
    ds = _reds(root, split='val', set_file=str(listing))
    assert ds.clips == ('001',)


def test_load_clip_returns_uint8_frames(root):
    ds = _reds(root)
    lr, gt = ds.load_clip('001')
    assert lr.dtype == np.uint8 and gt.dtype == np.uint8
    assert lr.shape == (FRAMES, LR_H, LR_W, 3) and gt.shape == (FRAMES, LR_H * 4, LR_W * 4, 3)
    for t in (0, 5):
        np.testing.assert_array_equal(lr[t], toy_lr_frame(1, t, LR_H, LR_W))
        np.testing.assert_array_equal(gt[t], toy_gt_frame(1, t, LR_H, LR_W, SCALE))
    lr3, gt3 = ds.load_clip('001', max_frames=3)
    assert lr3.shape[0] == 3 and gt3.shape[0] == 3
    np.testing.assert_array_equal(lr3, lr[:3])


# --------------------------------------------------------------------------- errors

def test_missing_data_dir_names_path(tmp_path):
    missing = str(tmp_path / 'nowhere')
    with pytest.raises(DatasetError, match=re.escape(missing)):
        _reds(missing)


def test_missing_set_file_names_path(root):
    with pytest.raises(DatasetError, match=re.escape(os.path.join(root, 'sets', 'nope.json'))):
        _reds(root, set_file='sets/nope.json')


def test_bad_set_file_names_path(root):
    path = os.path.join(root, 'sets', 'train.json')
    with open(path, 'w') as f:
        f.write('{"not": "a list"}')
    with pytest.raises(DatasetError, match=re.escape(path)):
        _reds(root)


def test_listed_clip_missing_names_folder(root):
    with open(os.path.join(root, 'sets', 'train.json'), 'w') as f:
        json.dump(['000', '007'], f)
    with pytest.raises(DatasetError, match=re.escape(os.path.join(root, 'images', '007'))):
        _reds(root)


def test_missing_lr_subdir_names_folder(root):
    missing = os.path.join(root, 'images', '000', 'bicubic')
    with pytest.raises(DatasetError, match=re.escape(missing)):
        _reds(root, lr_subdir='bicubic')


def test_gt_lr_frame_lists_differ(root):
    os.remove(_frame(root, '001', 'blur4', 5))
    with pytest.raises(DatasetError) as err:
        _reds(root)
    msg = str(err.value)
    assert "'001'" in msg and '00000005.png' in msg
    assert os.path.join(root, 'images', '001', 'blur4') in msg


def test_frame_size_mismatch_names_file_and_sizes(root):
    bad = _frame(root, '000', 'truth', 3)
    Image.fromarray(np.zeros((40, 64, 3), np.uint8)).save(bad)
    with pytest.raises(DatasetError) as err:
        _reds(root)
    msg = str(err.value)
    assert bad in msg and '40x64' in msg and '48x64' in msg


def test_lr_times_scale_must_equal_gt(root):
    with pytest.raises(DatasetError) as err:
        _reds(root, scale=2)
    msg = str(err.value)
    assert _frame(root, '000', 'blur4', 0) in msg and '12x16' in msg and '48x64' in msg


def test_lr_of_wrong_size_in_one_clip(root):
    for t in range(FRAMES):
        Image.fromarray(np.zeros((12, 15, 3), np.uint8)).save(_frame(root, '001', 'blur4', t))
    with pytest.raises(DatasetError) as err:
        _reds(root)
    msg = str(err.value)
    assert _frame(root, '001', 'blur4', 0) in msg and '12x15' in msg and '48x64' in msg


def test_garbage_png_fails_at_indexing_naming_file(root):
    bad = _frame(root, '001', 'truth', 2)
    with open(bad, 'wb') as f:
        f.write(os.urandom(200))
    with pytest.raises(DatasetError, match=re.escape(bad)):
        _reds(root)


def test_truncated_png_fails_at_decoding_naming_file(root):
    bad = _frame(root, '000', 'blur4', 6)
    data = open(bad, 'rb').read()
    with open(bad, 'wb') as f:  # valid header, pixel data cut off
        f.write(data[:40])
    ds = _reds(root)
    with pytest.raises(DatasetError, match=re.escape(bad)):
        ds.load_clip('000')


# --------------------------------------------------------------------------- training samples

def _locate(lr_u8, crop, num_clips=2):
    """(clip, frame indices, y, x) of a decoded LR crop of the toy data."""
    frames = []
    clip = None
    for t in range(lr_u8.shape[0]):
        code = int(lr_u8[t, 0, 0, 1])
        matches = [(c, f) for c in range(num_clips) for f in range(FRAMES)
                   if (17 * f + 101 * c) % 256 == code]
        assert len(matches) == 1
        c, f = matches[0]
        assert clip in (None, c)
        clip = c
        frames.append(f)
    pos = int(lr_u8[0, 0, 0, 0])
    return clip, frames, pos // LR_W, pos % LR_W


def test_training_sample_shapes_ranges_and_alignment(root):
    ds = _reds(root)
    crop = 5
    seen_clips, seen_intervals, seen_reversed, seen_pos = set(), set(), set(), set()
    for seed in range(60):
        rng = np.random.default_rng(seed)
        lr, gt = ds.training_sample(rng, 3, crop, [1, 2], random_reverse=True)
        assert lr.dtype == np.float32 and gt.dtype == np.float32
        assert lr.shape == (3, crop, crop, 3) and gt.shape == (crop * SCALE, crop * SCALE, 3)
        assert lr.min() >= 0 and lr.max() <= 1 and gt.min() >= 0 and gt.max() <= 1
        lr_u8, gt_u8 = _decode(lr), _decode(gt)
        clip, frames, y, x = _locate(lr_u8, crop)
        step = frames[1] - frames[0]
        assert abs(step) in (1, 2) and frames[2] - frames[1] == step
        center = frames[1]
        assert abs(step) <= center <= FRAMES - 1 - abs(step)
        for t, f in enumerate(frames):  # the LR crop is the (y, x) crop of frame f
            np.testing.assert_array_equal(
                lr_u8[t], toy_lr_frame(clip, f, LR_H, LR_W)[y:y + crop, x:x + crop])
        # GT: centre frame, crop at (y * scale, x * scale)
        np.testing.assert_array_equal(
            gt_u8, toy_gt_frame(clip, center, LR_H, LR_W, SCALE)[
                y * SCALE:(y + crop) * SCALE, x * SCALE:(x + crop) * SCALE])
        seen_clips.add(clip)
        seen_intervals.add(abs(step))
        seen_reversed.add(step < 0)
        seen_pos.add((y, x))
    assert seen_clips == {0, 1} and seen_intervals == {1, 2} and seen_reversed == {False, True}
    assert len(seen_pos) > 10


def test_training_sample_window_reaches_both_clip_ends(root):
    ds = _reds(root)
    first, last = set(), set()
    for seed in range(80):
        lr, _ = ds.training_sample(np.random.default_rng(seed), 5, 4, [1])
        _, frames, _, _ = _locate(_decode(lr), 4)
        assert frames == list(range(frames[0], frames[0] + 5))
        first.add(frames[0])
        last.add(frames[-1])
    assert min(first) == 0 and max(last) == FRAMES - 1  # centres 2..5 all used


def test_training_sample_is_a_function_of_the_rng(root):
    ds = _reds(root)
    a = ds.training_sample(np.random.default_rng([3, 9]), 3, 6, [1, 2], True)
    b = ds.training_sample(np.random.default_rng([3, 9]), 3, 6, [1, 2], True)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_check_training_rejects_impossible_settings(root):
    ds = _reds(root)
    ds.check_training(5, 12, [1])
    with pytest.raises(DatasetError, match='crop_size=13'):
        ds.check_training(5, 13, [1])
    with pytest.raises(DatasetError, match="'000'.*8 frames.*interval 2"):
        ds.check_training(5, 8, [1, 2])  # needs 9 frames
    with pytest.raises(ValueError, match='odd'):
        ds.check_training(4, 8, [1])
    with pytest.raises(DatasetError, match='too short'):
        ds.training_sample(np.random.default_rng(0), 9, 4, [1])
