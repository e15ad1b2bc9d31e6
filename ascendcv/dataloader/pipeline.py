"""Datasets from the config and the deterministic tf.data training pipeline.

Determinism and resuming
------------------------
Every training sample has a *global sample index*. On rank ``r`` of ``W`` ranks, element ``k`` of
batch ``step`` (``B = data.batch_size``) is global sample ``(step * B + k) * W + r``, so ranks draw
disjoint samples and together cover every index. Sample ``i`` is a pure function of
``(seed, i)``: it is drawn with ``numpy.random.default_rng([seed, i])`` (clip, interval, centre
frame, reversal, crop, then flips/transpose; :func:`load_training_sample`). A run resumed at
``start_step`` therefore sees exactly the batches an uninterrupted run would see from that step
on, whatever ``data.num_threads`` is.
"""
import numpy as np

from ascendcv.dataloader.augment import augment
from ascendcv.dataloader.frame_clips import DatasetError, check_training_args
from ascendcv.dataloader.reds import RedsDataset
from ascendcv.dataloader.vimeo import Vimeo90KDataset

__all__ = ['DATASET_TYPES', 'build_dataset', 'build_train_pipeline', 'load_training_sample',
           'global_sample_index', 'describe']

DATASET_TYPES = ('reds', 'vimeo90k')
_SPLITS = {'train': 'train', 'val': 'val', 'test': 'val', 'eval': 'val'}


def build_dataset(cfg, split, check_sizes=True):
    """The dataset of ``cfg.data`` for ``split`` ('train', or 'val' / 'test' / 'eval').

    ``data.dataset_type`` picks the layout: 'reds' uses ``data.train_set`` / ``data.val_set``,
    'vimeo90k' (or 'vimeo') ``data.vimeo_train_list`` / ``data.vimeo_test_list``; the scale is
    ``model.scale``. Relative paths are taken inside ``data.data_dir``.
    """
    if split not in _SPLITS:
        raise ValueError(f'split must be one of {sorted(_SPLITS)}, got {split!r}')
    train = _SPLITS[split] == 'train'
    data = cfg.data
    kind = str(data.dataset_type).lower()
    if kind == 'reds':
        return RedsDataset(data.data_dir, split, gt_subdir=data.gt_subdir,
                           lr_subdir=data.lr_subdir,
                           set_file=data.train_set if train else data.val_set,
                           scale=cfg.model.scale, check_sizes=check_sizes)
    if kind in ('vimeo90k', 'vimeo'):
        return Vimeo90KDataset(data.data_dir, split, gt_dir=data.vimeo_gt_dir,
                               lr_dir=data.vimeo_lr_dir,
                               list_file=data.vimeo_train_list if train else data.vimeo_test_list,
                               scale=cfg.model.scale, check_sizes=check_sizes)
    raise ValueError(f'data.dataset_type must be one of {DATASET_TYPES}, got '
                     f'{data.dataset_type!r}')


def global_sample_index(step, slot, batch_size, rank=0, world_size=1):
    """Global index of element ``slot`` of batch ``step`` on ``rank`` (see module docstring)."""
    return (step * batch_size + slot) * world_size + rank


def load_training_sample(dataset, index, seed, num_frame, crop_size, interval_list=(1,),
                         random_reverse=False, use_flip=True, use_rot=True):
    """Training sample number ``index`` for ``seed``: ``(lr [T,c,c,3], gt [c*s,c*s,3])`` float32.

    A pure function of ``(seed, index)`` (and the files): ``default_rng([seed, index])`` feeds
    :meth:`~ascendcv.dataloader.frame_clips.FrameClipDataset.training_sample` then :func:`augment`.
    """
    rng = np.random.default_rng([int(seed), int(index)])
    lr, gt = dataset.training_sample(rng, num_frame, crop_size, interval_list, random_reverse)
    return augment(lr, gt, rng, use_flip, use_rot)


def _check_int(name, value, low):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f'{name} must be an int >= {low}, got {value!r}')
    return int(value)


def check_pipeline_args(cfg, seed, start_step=0, rank=0, world_size=1):
    """Checked ``(batch_size, seed, start_step, rank, world_size)`` of a training pipeline
    (``batch_size = data.batch_size``); ValueError naming the bad one."""
    batch_size = _check_int('data.batch_size', cfg.data.batch_size, 1)
    seed = _check_int('seed', seed, 0)
    start_step = _check_int('start_step', start_step, 0)
    world_size = _check_int('world_size', world_size, 1)
    rank = _check_int('rank', rank, 0)
    if rank >= world_size:
        raise ValueError(f'rank must be in [0, {world_size}), got {rank}')
    return batch_size, seed, start_step, rank, world_size


def sample_index_pipeline(cfg, to_tensors, batch_size, start_step, rank, world_size):
    """The batching every training pipeline shares: this rank's global sample indices from
    ``start_step`` on (:func:`global_sample_index`), mapped in order by ``to_tensors(index)``
    (``data.num_threads`` parallel calls, deterministic), batched by ``batch_size`` and
    prefetched (``data.train_data_queue_size``)."""
    import tensorflow as tf
    threads = int(cfg.data.num_threads)
    queue = int(cfg.data.train_data_queue_size)
    first = global_sample_index(start_step, 0, batch_size, rank, world_size)
    ds = tf.data.Dataset.counter(start=first, step=world_size, dtype=tf.int64)
    ds = ds.map(to_tensors, num_parallel_calls=threads if threads > 0 else tf.data.AUTOTUNE,
                deterministic=True)
    ds = ds.batch(batch_size, drop_remainder=True)
    return ds.prefetch(queue if queue > 0 else tf.data.AUTOTUNE)


def build_train_pipeline(cfg, dataset, num_frame, seed, start_step=0, rank=0, world_size=1):
    """Infinite deterministic ``tf.data.Dataset`` of training batches.

    Yields ``(lr float32 [B, T, crop, crop, 3], gt float32 [B, crop*s, crop*s, 3])`` in
    ``[0, 1]`` with ``B = data.batch_size``, ``T = num_frame``, ``crop = data.crop_size``,
    ``s = dataset.scale``. Batch 0 of a pipeline started at ``start_step`` equals batch
    ``start_step`` of one started at 0 (see the module docstring). Samples are decoded by
    ``data.num_threads`` parallel calls (<= 0: tf.data autotune), in a deterministic order;
    ``data.train_data_queue_size`` batches are prefetched.

    Raises:
        ValueError / DatasetError: bad arguments, or a clip too short / too small for
            ``num_frame``, ``data.interval_list`` and ``data.crop_size`` (checked up front).
        At iteration time a corrupt frame raises a ``tf.errors.OpError`` whose message names
        the file and the sample index.
    """
    import tensorflow as tf

    data = cfg.data
    batch_size, seed, start_step, rank, world_size = check_pipeline_args(
        cfg, seed, start_step, rank, world_size)
    crop = int(data.crop_size)
    interval_list = tuple(int(i) for i in data.interval_list)
    check_training_args(num_frame, crop, interval_list)
    dataset.check_training(num_frame, crop, interval_list)
    random_reverse, use_flip, use_rot = (bool(data.random_reverse), bool(data.use_flip),
                                         bool(data.use_rot))
    gt_crop = crop * dataset.scale

    def sample(index):
        index = int(index)
        try:
            lr, gt = load_training_sample(dataset, index, seed, num_frame, crop, interval_list,
                                          random_reverse, use_flip, use_rot)
        except DatasetError as exc:  # name the sample too, so it can be reproduced
            raise DatasetError(f'{exc} [training sample {index}, seed {seed}]') from None
        return lr.astype(np.float32, copy=False), gt.astype(np.float32, copy=False)

    def to_tensors(index):
        lr, gt = tf.numpy_function(sample, [index], (tf.float32, tf.float32), stateful=False,
                                   name='load_training_sample')
        lr.set_shape((num_frame, crop, crop, 3))
        gt.set_shape((gt_crop, gt_crop, 3))
        return lr, gt

    return sample_index_pipeline(cfg, to_tensors, batch_size, start_step, rank, world_size)


def describe(dataset):
    """One line for logs, e.g. ``REDS train: 240 clips, 24000 frames, LR 180x320 ...``."""
    if hasattr(dataset, 'describe'):
        return dataset.describe()
    return repr(dataset)  # pragma: no cover
