"""RVRT's rules on top of the video restoration task: clips in, the same clips out.

* **Training data**: ``rvrt.num_frame`` consecutive LR frames and *all* their GT frames
  (the recurrent model restores every frame; KAIR's ``VideoRecurrentTrainDataset``), cropped and
  augmented like the other VSR models (:func:`load_clip_sample`).
* **Phases** (KAIR ``model_vrt.py``, ``fix_iter`` / ``fix_lr_mul`` / ``fix_keys=['spynet']``):
  SpyNet is frozen while ``step < fix_iter`` (steps ``1 .. fix_iter - 1``), then everything
  trains and SpyNet's parameter group takes ``fix_lr_mul x`` the scheduled rate (it has that
  multiplier from the start in KAIR, when it is not yet trained).
* **Prediction**: :class:`ascendcv.runner.predict.ClipToClip` with ``rvrt.num_frame`` frames
  per call and ``rvrt.test_frame_overlap`` frames of overlap (averaged); a clip whose length is
  not a multiple of ``clip_size`` is extended by its last frames mirrored and cropped back
  (``main_test_rvrt.py``'s padding). ``rvrt.mirror_sequence`` (Vimeo-90K): training clips of
  ``T / 2`` frames followed by their reverse, and the test of :class:`MirrorExtended`.
"""
import numpy as np

from ascendcv.runner.predict import ClipToClip
from ascendcv.runner.task import Phase
from ascendvsr.tasks.vsr import VideoRestorationTask


class MirrorExtended(ClipToClip):
    """The official Vimeo-90K test (``main_test_rvrt.py``, ``mirror_sequence``): the n frames
    are extended by their reverse to 2n, restored clip to clip, and frame i is the mean of the
    outputs at i and 2n-1-i (the septuplet's centre: ``(out[3] + out[10]) / 2``)."""

    def restore(self, predict, frames, indices=None, desc=None, callback=None):
        n = len(frames)
        extended = np.concatenate([frames, frames[::-1]], 0)
        restored, spent = super().restore(predict, extended, desc=desc)
        restored = 0.5 * (restored[:n] + restored[n:][::-1])
        indices = list(range(n)) if indices is None else list(indices)
        restored = restored[indices]
        if callback is not None:
            callback(indices, restored)
            return None, spent
        return restored, spent


def load_clip_sample(dataset, index, seed, num_frame, crop_size, interval_list=(1,),
                     random_reverse=False, use_flip=True, use_rot=True, mirror=False):
    """Training sample ``index``: ``(lr [T, c, c, 3], gt [T, c*s, c*s, 3])`` float32 in [0, 1].

    A pure function of ``(seed, index)``: ``default_rng([seed, index])`` draws, in order, the
    clip, the interval, the first frame, the reversal (if ``random_reverse``), the crop row and
    column, then the flips / transpose of :func:`ascendcv.dataloader.augment.augment`.
    ``mirror`` (KAIR ``mirror_sequence``, Vimeo-90K): ``T / 2`` frames followed by the same
    frames reversed (7 -> 14).
    """
    if mirror:
        if num_frame % 2:
            raise ValueError(f'mirrored training clips need an even num_frame, got {num_frame}')
        lr, gt = load_clip_sample(dataset, index, seed, num_frame // 2, crop_size, interval_list,
                                  random_reverse, use_flip, use_rot)
        return (np.ascontiguousarray(np.concatenate([lr, lr[::-1]])),
                np.ascontiguousarray(np.concatenate([gt, gt[::-1]])))
    from ascendcv.dataloader.augment import augment
    from ascendcv.dataloader.frame_clips import DatasetError
    rng = np.random.default_rng([int(seed), int(index)])
    clip = dataset.clips[int(rng.integers(len(dataset.clips)))]
    info = dataset.clip_info(clip)
    interval = int(interval_list[int(rng.integers(len(interval_list)))])
    span = (num_frame - 1) * interval
    if span >= info.num_frames:
        raise DatasetError(f'Clip {clip!r} ({info.num_frames} frames) is too short for '
                           f'rvrt.num_frame={num_frame} with interval {interval}')
    start = int(rng.integers(0, info.num_frames - span))
    frames = [start + k * interval for k in range(num_frame)]
    if random_reverse and rng.random() < 0.5:
        frames.reverse()
    h, w = info.lr_size
    if crop_size > h or crop_size > w:
        raise DatasetError(f'data.crop_size={crop_size} is larger than the LR frames of clip '
                           f'{clip!r} ({h}x{w})')
    y = int(rng.integers(0, h - crop_size + 1))
    x = int(rng.integers(0, w - crop_size + 1))
    s = dataset.scale
    lr = np.stack([dataset._read(info.lr_paths[i], info.lr_size, clip)[y:y + crop_size,
                                                                         x:x + crop_size]
                   for i in frames]).astype(np.float32) / 255.0
    gt = np.stack([dataset._read(info.gt_paths[i], info.gt_size, clip)[
        y * s:(y + crop_size) * s, x * s:(x + crop_size) * s] for i in frames]).astype(
        np.float32) / 255.0
    return augment(lr, gt, rng, use_flip, use_rot)


class _FixedFrames:
    """A frozen graph of ``frames`` frames fed clips of up to that many: shorter ones are
    extended by their last frames mirrored (repeatedly if needed), the outputs cropped back."""

    def __init__(self, predict, frames):
        self.predict, self.frames = predict, int(frames)

    def check(self, call_shape, data_shape):
        inner = getattr(self.predict, 'check', None)
        if inner is not None:
            t = call_shape[1]
            inner((call_shape[0], self.frames if t <= self.frames else t) + tuple(call_shape[2:]),
                  data_shape)

    def __call__(self, x):
        x = np.asarray(x)
        t = x.shape[1]
        while x.shape[1] < self.frames:
            pad = min(self.frames - x.shape[1], x.shape[1])
            x = np.concatenate([x, x[:, -pad:][:, ::-1]], 1)
        return np.asarray(self.predict(x))[:, :t]


class RVRTTask(VideoRestorationTask):
    """Video restoration with a clip-to-clip recurrent model (RVRT, RVRT Light).

    ``node`` names the config node holding ``clip_size``, ``fix_iter``, ``fix_lr_mul`` and
    ``test_frame_overlap`` (a subclass for another registration sets its own).
    """

    node = 'rvrt'

    @property
    def opts(self):
        """The model's config node (``cfg[node]``)."""
        return self.cfg[self.node]

    # ------------------------------------------------------------------ training
    def train_pipeline(self, model, backend):
        import tensorflow as tf
        from ascendcv.dataloader.frame_clips import DatasetError
        from ascendcv.dataloader.pipeline import (build_dataset, check_pipeline_args,
                                                  sample_index_pipeline)
        cfg, data = self.cfg, self.cfg.data
        dataset = build_dataset(cfg, 'train')
        t, crop = int(model.num_frame), int(data.crop_size)
        interval_list = tuple(int(i) for i in data.interval_list)
        if getattr(model, 'attention', 'guided') == 'guided' and crop <= 32:
            raise ValueError(f'data.crop_size={crop}: RVRT trains SpyNet, which needs LR crops '
                             f'larger than 32 px')
        seed, mirror = int(cfg.seed), bool(self.opts.get('mirror_sequence', False))

        def pipeline_fn(start_step):
            batch, seed_, start, rank, world = check_pipeline_args(
                cfg, seed, start_step, backend.rank, backend.world_size)
            gt_crop = crop * dataset.scale

            def sample(index):
                try:
                    return load_clip_sample(dataset, int(index), seed_, t, crop, interval_list,
                                            bool(data.random_reverse), bool(data.use_flip),
                                            bool(data.use_rot), mirror)
                except DatasetError as exc:
                    raise DatasetError(f'{exc} [training sample {int(index)}, seed {seed_}]') \
                        from None

            def to_tensors(index):
                lr, gt = tf.numpy_function(sample, [index], (tf.float32, tf.float32),
                                           stateful=False, name='load_clip_sample')
                lr.set_shape((t, crop, crop, 3))
                gt.set_shape((t, gt_crop, gt_crop, 3))
                return lr, gt
            return sample_index_pipeline(cfg, to_tensors, batch, start, rank, world)
        return pipeline_fn

    def training_phases(self, model):
        """SpyNet frozen for steps ``1 .. fix_iter - 1``, then trained at ``fix_lr_mul`` x the
        rate. Training clips of a single ``clip_size`` clip reach neither SpyNet nor the
        alignment, which then stay out of every phase (they would get no gradient)."""
        total = int(self.cfg.solver.total_steps)
        fix_iter, mul = int(self.opts.fix_iter), float(self.opts.fix_lr_mul)
        t = int(model.num_frame)
        if t <= model.clip_size:
            return [Phase(until=total, trainable=lambda m: m.trained_variables(t),
                          description=f'Clips of {t} frames: train all but the alignment and '
                                      f'SpyNet (unused on a single clip).')]
        if not model.spynet_variables():
            return [Phase(until=total)]
        groups = (('spynet', lambda m: m.spynet_variables(), mul),) if mul != 1.0 else ()
        if fix_iter <= 1:
            return [Phase(until=total, lr_multipliers=groups)]
        frozen = min(fix_iter - 1, total)
        phases = [Phase(until=frozen, trainable=lambda m: m.trained_variables(t, spynet=False),
                        description=f'SpyNet frozen for the first {frozen} steps.')]
        if total > frozen:
            phases.append(Phase(until=total, lr_multipliers=groups,
                                description=f'Train all the parameters (SpyNet at {mul} x lr).'))
        return phases

    # ------------------------------------------------------------------ prediction
    def strategy(self, model, batch_size, padding):
        """Clips of ``num_frame`` frames (padded to a multiple of ``clip_size``); with
        ``mirror_sequence`` each video is first extended by its reverse (:class:`MirrorExtended`,
        the official Vimeo-90K test)."""
        cls = MirrorExtended if bool(self.opts.get('mirror_sequence', False)) else ClipToClip
        return cls(self.model_meta(model)['num_frame'], int(self.opts.test_frame_overlap),
                   self.frame_multiple(model))

    def frame_multiple(self, model):
        return max(super().frame_multiple(model), int(self.opts.clip_size))

    def predictor(self, model, batch_size, padding, logger=None):
        """The video task's predictor, keeping :class:`MirrorExtended` (the base rebuilds the
        clip strategy from ``inference.tile``) and checking the extended length."""
        predict, strategy, check = super().predictor(model, batch_size, padding, logger)
        if not bool(self.opts.get('mirror_sequence', False)):
            return predict, strategy, check
        mirrored = MirrorExtended(strategy.clip_len, strategy.overlap, strategy.multiple)
        return predict, mirrored, lambda shape: check((2 * shape[0],) + tuple(shape[1:]))

    def predict_fn(self, model):
        """``predict([1, T, h, w, 3]) -> [1, T, 4h, 4w, 3]``. A live model is traced per input
        shape (the recurrence over clips needs a static T); a frozen graph, whose frame count
        is fixed, takes shorter clips extended by mirroring their last frames (the official
        padding), the extra outputs dropped."""
        import tensorflow as tf
        from ascendcv.runner.freezer import FrozenGraphModel
        if isinstance(model, FrozenGraphModel):
            return _FixedFrames(super().predict_fn(model), int(self.model_meta(model)['num_frame']))
        run = tf.function(lambda x: model(x, training=False))
        return lambda x: np.asarray(run(tf.constant(np.asarray(x, np.float32))))

    def export_meta(self, model):
        return dict(super().export_meta(model), clip_size=model.clip_size)

    def sample_data(self, workdir):
        overrides = super().sample_data(workdir)
        # SpyNet needs frames larger than 32 px; one clip per training batch
        bigger = {'data.crop_size': 'data.crop_size=36', 'data.batch_size': 'data.batch_size=1',
                  'data.eval_in_size': 'data.eval_in_size=[36,40]'}
        return [bigger.get(o.split('=')[0], o) for o in overrides]
