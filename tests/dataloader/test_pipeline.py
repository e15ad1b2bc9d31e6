"""augment, build_dataset, the deterministic / resumable / sharded train pipeline."""
import os

import numpy as np
import pytest
import tensorflow as tf

from ascendcv.dataloader.augment import augment
from ascendcv.dataloader.frame_clips import DatasetError
from ascendcv.dataloader.pipeline import (build_dataset, build_train_pipeline, describe,
                                          global_sample_index, load_training_sample)
from ascendcv.dataloader.reds import RedsDataset, write_toy_reds
from ascendcv.dataloader.vimeo import Vimeo90KDataset, write_toy_vimeo
from ascendvsr.config.defaults import get_cfg_defaults

B, CROP, T = 2, 6, 3


@pytest.fixture(scope='module')
def reds_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('reds')
    write_toy_reds(root, num_clips=2, num_frames=8, lr_size=(12, 16), scale=4)
    return str(root)


def _cfg(root, **data):
    cfg = get_cfg_defaults()
    cfg.data.data_dir = root
    cfg.data.batch_size = B
    cfg.data.crop_size = CROP
    cfg.data.interval_list = [1, 2]
    cfg.data.random_reverse = True
    cfg.data.num_threads = 3
    cfg.data.train_data_queue_size = 2
    for key, value in data.items():
        setattr(cfg.data, key, value)
    return cfg


def _take(ds, n):
    return [(lr.numpy(), gt.numpy()) for lr, gt in ds.take(n)]


def _assert_same(batches_a, batches_b):
    assert len(batches_a) == len(batches_b)
    for (lr_a, gt_a), (lr_b, gt_b) in zip(batches_a, batches_b):
        np.testing.assert_array_equal(lr_a, lr_b)
        np.testing.assert_array_equal(gt_a, gt_b)


# --------------------------------------------------------------------------- augment

def _dihedral(img):
    """The 8 images reachable by hflip / vflip / transpose, keyed by (h, v, t)."""
    out = {}
    for h in (0, 1):
        for v in (0, 1):
            for t in (0, 1):
                x = img[:, ::-1] if h else img
                x = x[::-1] if v else x
                out[(h, v, t)] = x.transpose(1, 0, 2) if t else x
    return out


def test_augment_applies_one_transform_to_all_frames_and_gt():
    rng0 = np.random.default_rng(0)
    lr = rng0.integers(0, 256, (3, 5, 5, 3), dtype=np.uint8)  # asymmetric content
    gt = np.repeat(np.repeat(lr[1], 4, axis=0), 4, axis=1)    # GT = upscaled centre frame
    lr_before, gt_before = lr.copy(), gt.copy()
    seen = set()
    for seed in range(64):
        lr_a, gt_a = augment(lr, gt, np.random.default_rng(seed), use_flip=True, use_rot=True)
        assert lr_a.shape == lr.shape and gt_a.shape == gt.shape
        assert lr_a.flags['C_CONTIGUOUS'] and gt_a.flags['C_CONTIGUOUS']
        keys = [k for k, img in _dihedral(lr[0]).items() if np.array_equal(img, lr_a[0])]
        assert len(keys) == 1
        key = keys[0]
        for t in range(3):  # every frame got the transform of frame 0 ...
            np.testing.assert_array_equal(lr_a[t], _dihedral(lr[t])[key])
        np.testing.assert_array_equal(gt_a, _dihedral(gt)[key])  # ... and so did the GT
        np.testing.assert_array_equal(gt_a, np.repeat(np.repeat(lr_a[1], 4, 0), 4, 1))
        seen.add(key)
    assert len(seen) == 8
    np.testing.assert_array_equal(lr, lr_before)  # inputs untouched
    np.testing.assert_array_equal(gt, gt_before)


def test_augment_flags():
    lr = np.random.default_rng(1).random((2, 4, 4, 3)).astype(np.float32)
    gt = np.random.default_rng(2).random((8, 8, 3)).astype(np.float32)
    for seed in range(10):
        lr_a, gt_a = augment(lr, gt, np.random.default_rng(seed), use_flip=False, use_rot=False)
        np.testing.assert_array_equal(lr_a, lr)
        np.testing.assert_array_equal(gt_a, gt)
    flips = set()
    for seed in range(20):
        lr_a, gt_a = augment(lr, gt, np.random.default_rng(seed), use_flip=True, use_rot=False)
        flipped = np.array_equal(lr_a, lr[:, :, ::-1])
        assert flipped or np.array_equal(lr_a, lr)
        np.testing.assert_array_equal(gt_a, gt[:, ::-1] if flipped else gt)
        flips.add(flipped)
    assert flips == {True, False}


# --------------------------------------------------------------------------- build_dataset

def test_build_dataset_from_config(reds_root, tmp_path):
    cfg = _cfg(reds_root)
    train = build_dataset(cfg, 'train')
    assert isinstance(train, RedsDataset) and train.scale == 4 and train.clips == ('000', '001')
    assert describe(train).startswith('REDS train: 2 clips, 16 frames')
    assert build_dataset(cfg, 'val').split == 'val'

    vimeo_root = str(tmp_path / 'vimeo')
    write_toy_vimeo(vimeo_root, septuplets=('00001/0001',), lr_size=(8, 8), scale=2)
    cfg = _cfg(vimeo_root, dataset_type='vimeo90k')
    cfg.model.scale = 2
    ds = build_dataset(cfg, 'test')
    assert isinstance(ds, Vimeo90KDataset) and ds.clips == ('00001/0001',) and ds.scale == 2

    cfg.data.dataset_type = 'div2k'
    with pytest.raises(ValueError, match='data.dataset_type'):
        build_dataset(cfg, 'train')


# --------------------------------------------------------------------------- training pipeline

def test_pipeline_batches_shapes_and_content(reds_root):
    cfg = _cfg(reds_root)
    dataset = build_dataset(cfg, 'train')
    ds = build_train_pipeline(cfg, dataset, num_frame=T, seed=7)
    lr_spec, gt_spec = ds.element_spec
    assert lr_spec.shape.as_list() == [B, T, CROP, CROP, 3] and lr_spec.dtype == tf.float32
    assert gt_spec.shape.as_list() == [B, CROP * 4, CROP * 4, 3] and gt_spec.dtype == tf.float32
    batches = _take(ds, 3)
    for step, (lr, gt) in enumerate(batches):
        assert lr.shape == (B, T, CROP, CROP, 3) and gt.shape == (B, CROP * 4, CROP * 4, 3)
        assert 0 <= lr.min() and lr.max() <= 1 and 0 <= gt.min() and gt.max() <= 1
        for k in range(B):  # sample k of batch `step` is global sample step * B + k
            ref_lr, ref_gt = load_training_sample(
                dataset, global_sample_index(step, k, B), 7, T, CROP, (1, 2), True, True, True)
            np.testing.assert_array_equal(lr[k], ref_lr)
            np.testing.assert_array_equal(gt[k], ref_gt)
    assert not np.array_equal(batches[0][0], batches[1][0])


def test_pipeline_is_deterministic_and_resumable(reds_root):
    cfg = _cfg(reds_root)
    dataset = build_dataset(cfg, 'train')
    first = _take(build_train_pipeline(cfg, dataset, T, seed=3), 4)
    cfg.data.num_threads = 1  # the thread count does not change the data
    _assert_same(_take(build_train_pipeline(cfg, dataset, T, seed=3), 3), first[:3])
    resumed = _take(build_train_pipeline(cfg, dataset, T, seed=3, start_step=2), 2)
    _assert_same(resumed, first[2:4])
    other_seed = _take(build_train_pipeline(cfg, dataset, T, seed=4), 1)
    assert not np.array_equal(other_seed[0][0], first[0][0])


def test_pipeline_ranks_get_different_deterministic_shards(reds_root):
    cfg = _cfg(reds_root)
    dataset = build_dataset(cfg, 'train')
    single = _take(build_train_pipeline(cfg, dataset, T, seed=5), 2)
    ranks = [_take(build_train_pipeline(cfg, dataset, T, seed=5, rank=r, world_size=2), 2)
             for r in (0, 1)]
    again = [_take(build_train_pipeline(cfg, dataset, T, seed=5, rank=r, world_size=2), 2)
             for r in (0, 1)]
    _assert_same(ranks[0], again[0])
    _assert_same(ranks[1], again[1])
    for step in range(2):
        assert not np.array_equal(ranks[0][step][0], ranks[1][step][0])
    # step 0 of both ranks together holds global samples 0..3 = steps 0 and 1 of one rank
    by_index = {}
    for step in range(2):
        for k in range(B):
            by_index[global_sample_index(step, k, B)] = single[step][0][k]
    for r in (0, 1):
        for k in range(B):
            np.testing.assert_array_equal(ranks[r][0][0][k],
                                          by_index[global_sample_index(0, k, B, r, 2)])
    # a resumed rank continues its own shard
    _assert_same(_take(build_train_pipeline(cfg, dataset, T, seed=5, start_step=1, rank=1,
                                            world_size=2), 1), ranks[1][1:2])


def test_pipeline_checks_settings_up_front(reds_root):
    cfg = _cfg(reds_root, crop_size=13)
    dataset = build_dataset(cfg, 'train')
    with pytest.raises(DatasetError, match='crop_size=13'):
        build_train_pipeline(cfg, dataset, T, seed=0)
    cfg = _cfg(reds_root, interval_list=[4])
    with pytest.raises(DatasetError, match='too short'):
        build_train_pipeline(cfg, dataset, 3, seed=0)
    with pytest.raises(ValueError, match='rank'):
        build_train_pipeline(_cfg(reds_root), dataset, T, seed=0, rank=2, world_size=2)


def test_corrupt_png_surfaces_file_name_when_iterating(tmp_path):
    root = str(tmp_path / 'reds')
    write_toy_reds(root, num_clips=2, num_frames=8, lr_size=(12, 16), scale=4)
    cfg = _cfg(root, interval_list=[1])
    dataset = build_dataset(cfg, 'train')  # indexed while the files are fine
    # frames 3 and 4 are in every 5-frame window of an 8-frame clip
    for clip in ('000', '001'):
        with open(os.path.join(root, 'images', clip, 'blur4', '00000004.png'), 'wb') as f:
            f.write(os.urandom(300))
    ds = build_train_pipeline(cfg, dataset, num_frame=5, seed=0)
    with pytest.raises(tf.errors.OpError, match=r'blur4.00000004\.png') as err:
        _take(ds, 1)
    assert 'training sample' in str(err.value)
