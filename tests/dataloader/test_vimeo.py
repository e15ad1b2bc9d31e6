"""Vimeo90KDataset: septuplet indexing, BasicSR centre-frame windows, early errors."""
import os
import re

import numpy as np
import pytest
from PIL import Image

from ascendcv.dataloader.frame_clips import DatasetError
from ascendcv.dataloader.reds import toy_gt_frame, toy_lr_frame
from ascendcv.dataloader.vimeo import Vimeo90KDataset, write_toy_vimeo

LR_H, LR_W, SCALE = 12, 16, 4
SEPTUPLETS = ('00001/0001', '00002/0007')


@pytest.fixture
def root(tmp_path):
    path = tmp_path / 'vimeo'
    write_toy_vimeo(path, septuplets=SEPTUPLETS, lr_size=(LR_H, LR_W), scale=SCALE)
    return str(path)


def _vimeo(root, **kw):
    args = dict(split='train', gt_dir='sequences', lr_dir='sequences_lr',
                list_file='sep_trainlist.txt', scale=SCALE)
    args.update(kw)
    return Vimeo90KDataset(root, **args)


def _frame(root, which, name, i):
    return os.path.join(root, which, *name.split('/'), f'im{i}.png')


def test_indexes_septuplets(root):
    ds = _vimeo(root)
    assert ds.clips == SEPTUPLETS
    assert ds.num_frames('00002/0007') == 7
    lr_paths, gt_paths = ds.frame_paths('00002/0007')
    assert lr_paths == [_frame(root, 'sequences_lr', '00002/0007', i) for i in range(1, 8)]
    assert gt_paths == [_frame(root, 'sequences', '00002/0007', i) for i in range(1, 8)]
    assert ds.lr_size('00001/0001') == (LR_H, LR_W) and ds.gt_size('00001/0001') == (48, 64)
    assert ds.eval_centers('00001/0001') == [3]  # im4 only
    assert 'Vimeo90K train: 2 clips, 14 frames' in ds.describe()
    lr, gt = ds.load_clip('00002/0007')
    assert lr.shape == (7, LR_H, LR_W, 3) and gt.shape == (7, 48, 64, 3)
    np.testing.assert_array_equal(lr[6], toy_lr_frame(1, 6, LR_H, LR_W))
    np.testing.assert_array_equal(gt[3], toy_gt_frame(1, 3, LR_H, LR_W, SCALE))


def test_list_lines_tolerate_blank_lines_and_slashes(root):
    with open(os.path.join(root, 'sep_testlist.txt'), 'w') as f:
        f.write('\n00002/0007/\n\n')
    assert _vimeo(root, split='test', list_file='sep_testlist.txt').clips == ('00002/0007',)


@pytest.mark.parametrize('num_frame, first', [(7, 0), (5, 1), (3, 2)])
def test_training_window_is_centred_on_im4(root, num_frame, first):
    ds = _vimeo(root)
    crop = 6
    for seed in range(12):
        lr, gt = ds.training_sample(np.random.default_rng(seed), num_frame, crop, [1],
                                    random_reverse=False)
        assert lr.shape == (num_frame, crop, crop, 3) and gt.shape == (24, 24, 3)
        lr_u8 = np.rint(lr * 255).astype(np.uint8)
        gt_u8 = np.rint(gt * 255).astype(np.uint8)
        pos = int(lr_u8[0, 0, 0, 0])
        y, x = pos // LR_W, pos % LR_W
        clip = [c for c in (0, 1) if int(lr_u8[0, 0, 0, 1]) == (17 * first + 101 * c) % 256]
        assert len(clip) == 1
        for t in range(num_frame):  # im2..im6 for 5 frames, im1..im7 for 7 (BasicSR)
            np.testing.assert_array_equal(
                lr_u8[t], toy_lr_frame(clip[0], first + t, LR_H, LR_W)[y:y + crop, x:x + crop])
        np.testing.assert_array_equal(
            gt_u8, toy_gt_frame(clip[0], 3, LR_H, LR_W, SCALE)[4 * y:4 * y + 24, 4 * x:4 * x + 24])


def test_random_reverse_keeps_im4_as_gt(root):
    ds = _vimeo(root)
    orders = set()
    for seed in range(20):
        lr, gt = ds.training_sample(np.random.default_rng(seed), 5, 12, [1], random_reverse=True)
        codes = tuple(int(v) for v in np.rint(lr[:, 0, 0, 1] * 255))
        orders.add(codes[0] < codes[-1])
        clip = 0 if np.rint(gt[0, 0, 1] * 255) == 17 * 3 else 1
        x = int(np.rint(lr[0, 0, 0, 0] * 255)) % LR_W  # crop column (rows: all 12)
        np.testing.assert_array_equal(np.rint(gt * 255).astype(np.uint8),
                                      toy_gt_frame(clip, 3, LR_H, LR_W, SCALE)[:, 4 * x:4 * x + 48])
    assert orders == {True, False}


def test_interval_that_does_not_fit_is_an_error(root):
    ds = _vimeo(root)
    ds.check_training(3, 8, [1, 3])  # im1, im4, im7
    with pytest.raises(DatasetError, match=r"'00001/0001' \(7 frames.*interval 2"):
        ds.check_training(5, 8, [1, 2])


def test_missing_list_names_path(root):
    with pytest.raises(DatasetError, match=re.escape(os.path.join(root, 'nope.txt'))):
        _vimeo(root, list_file='nope.txt')


def test_missing_lr_root_names_path(root):
    with pytest.raises(DatasetError, match=re.escape(os.path.join(root, 'lr_x4'))):
        _vimeo(root, lr_dir='lr_x4')


def test_listed_septuplet_missing_names_folder(root):
    with open(os.path.join(root, 'sep_trainlist.txt'), 'a') as f:
        f.write('00003/0001\n')
    with pytest.raises(DatasetError, match=re.escape(os.path.join(root, 'sequences', '00003'))):
        _vimeo(root)


def test_missing_frame_names_file(root):
    missing = _frame(root, 'sequences_lr', '00002/0007', 5)
    os.remove(missing)
    with pytest.raises(DatasetError, match=re.escape(missing)):
        _vimeo(root)


def test_size_mismatch_names_file_and_sizes(root):
    bad = _frame(root, 'sequences_lr', '00001/0001', 6)
    Image.fromarray(np.zeros((LR_H, LR_W + 2, 3), np.uint8)).save(bad)
    with pytest.raises(DatasetError) as err:
        _vimeo(root)
    assert bad in str(err.value) and '12x18' in str(err.value) and '12x16' in str(err.value)
    ds = _vimeo(root, check_sizes=False)  # header of im1 only: indexing passes ...
    with pytest.raises(DatasetError, match=re.escape(bad)):
        ds.load_clip('00001/0001')  # ... and decoding names the odd file


def test_wrong_scale_names_sizes(root):
    with pytest.raises(DatasetError, match=r'12x16.*48x64.*scale 3'):
        _vimeo(root, scale=3)
