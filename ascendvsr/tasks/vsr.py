"""Video restoration task: REDS / Vimeo90K clips, per-video PSNR/SSIM, video inference, export.

Prediction strategy (:mod:`ascendcv.runner.predict`): a sliding window of ``model.num_frame``
frames restoring its centre frame (EDVR); models that restore a whole clip (RVRT) override
:meth:`VideoRestorationTask.strategy` with :class:`ascendcv.runner.predict.ClipToClip`.

Frames of any size: every call goes through :class:`ascendcv.runner.predict.SpatialTiles`, which
pads the frames to :meth:`VideoRestorationTask.size_multiple` (a model declares it, e.g. EDVR 4)
and crops the output back, and restores them in overlapping tiles with ``inference.tile`` /
``inference.tile_overlap`` (``[frames, height, width]``, 0 = whole; the frame entry applies to
clip-to-clip models, a sliding window already takes ``num_frame`` frames per call).

Serving signature (``--mode freeze``), from the config keys of the original tooling:

* ``export.batch_size``: the batch dimension (``0``, the default, -> ``None``: any batch; a
  graph frozen with a static batch is fed padded batches);
* ``data.eval_in_size``: ``[H, W]`` of the LR input (a value ``<= 0`` makes that size dynamic);
* ``model.input_format_dimension``: ``5`` = ``[N, D, H, W, C]`` input; ``4`` = ``[N*D, H, W, C]``,
  reshaped to 5-D inside the graph (for runtimes that only take 4-D tensors).

The sidecar records ``num_frame``, ``num_in_ch``, ``input_format_dimension``, ``scale``,
``size_multiple`` and ``frame_multiple``, so a ``.pb`` is fed like the live model.
"""
import numpy as np

from ascendcv.runner.task import Task


class VideoRestorationTask(Task):
    """Clip (``[B, T, h, w, C]`` float in [0, 1]) -> restored frame(s); models expose
    ``num_frame`` (frames per call) and ``num_in_ch``."""

    # ------------------------------------------------------------------ training
    def train_pipeline(self, model, backend):
        from ascendcv.dataloader.pipeline import build_dataset, build_train_pipeline
        cfg = self.cfg
        dataset = build_dataset(cfg, 'train')

        def pipeline_fn(start_step):
            return build_train_pipeline(cfg, dataset, model.num_frame, seed=cfg.seed,
                                        start_step=start_step, rank=backend.rank,
                                        world_size=backend.world_size)
        return pipeline_fn

    # ------------------------------------------------------------------ prediction
    @staticmethod
    def model_meta(model):
        """``{'num_frame', 'num_in_ch', 'input_format_dimension'}`` of a live model or a frozen
        graph (from its sidecar)."""
        from ascendcv.runner.freezer import FrozenGraphModel
        if isinstance(model, FrozenGraphModel):
            m = model.meta
            return dict(num_frame=m['num_frame'], num_in_ch=m['num_in_ch'],
                        input_format_dimension=m['input_format_dimension'])
        return dict(num_frame=model.num_frame, num_in_ch=model.num_in_ch,
                    input_format_dimension=5)

    def size_multiple(self, model):
        """The LR height and width ``model`` needs a multiple of (frames are padded to it):
        the model's ``size_multiple`` attribute (default 1), a frozen graph's sidecar entry.
        Tasks override it for models that do not declare it (EDVR: 4)."""
        from ascendcv.runner.freezer import FrozenGraphModel
        if isinstance(model, FrozenGraphModel):
            return int(model.meta.get('size_multiple', 1))
        return int(getattr(model, 'size_multiple', 1))

    def frame_multiple(self, model):
        """The number of frames a clip-to-clip ``model`` needs a multiple of in one call (the
        model's ``frame_multiple`` attribute or the sidecar's; default 1)."""
        from ascendcv.runner.freezer import FrozenGraphModel
        if isinstance(model, FrozenGraphModel):
            return int(model.meta.get('frame_multiple', 1))
        return int(getattr(model, 'frame_multiple', 1))

    def strategy(self, model, batch_size, padding):
        """How frames are fed to ``model``: a sliding window -> centre frame."""
        from ascendcv.runner.predict import SlidingWindow
        return SlidingWindow(self.model_meta(model)['num_frame'], padding, batch_size)

    def predict_fn(self, model):
        """``predict([B, T, h, w, C] float32) -> outputs`` for a live model (graph function) or
        a frozen graph (:class:`FrozenVideoPredict`: its layout and batch, and a check of its
        recorded input shape)."""
        import tensorflow as tf
        from ascendcv.runner.freezer import FrozenGraphModel
        if isinstance(model, FrozenGraphModel):
            return FrozenVideoPredict(model, self.model_meta(model))
        return tf.function(lambda x: model(x, training=False), reduce_retracing=True)

    def predictor(self, model, batch_size, padding, logger=None):
        """``(predict, strategy, check)`` for evaluation and inference: :meth:`predict_fn`
        wrapped in :class:`ascendcv.runner.predict.SpatialTiles` (padding to
        :meth:`size_multiple`, ``inference.tile`` / ``tile_overlap``), :meth:`strategy` (its
        clips cut to ``inference.tile[0]`` frames for clip-to-clip models) and
        ``check(frames_shape)``, which refuses frames a frozen graph cannot take before any
        work."""
        from ascendcv.runner.predict import ClipToClip, SpatialTiles
        inf = self.cfg.inference
        tile, overlap = _tile_key('inference.tile', inf.tile), _tile_key(
            'inference.tile_overlap', inf.tile_overlap)
        strategy = self.strategy(model, batch_size, padding)
        if isinstance(strategy, ClipToClip):
            multiple = max(strategy.multiple, self.frame_multiple(model))
            if tile[0] and (tile[0] % multiple or overlap[0] >= tile[0]):
                raise ValueError(f'inference.tile / tile_overlap: clips of {tile[0]} frames '
                                 f'overlapping by {overlap[0]} do not work: the clip length must '
                                 f'be a multiple of the {multiple} frames this model takes at a '
                                 f'time and larger than the overlap')
            strategy = (ClipToClip(tile[0], overlap[0], multiple) if tile[0] else
                        ClipToClip(strategy.clip_len, strategy.overlap, multiple))
        elif tile[0] and logger is not None:
            logger(f'inference.tile[0]={tile[0]} is not used: {type(strategy).__name__} takes a '
                   f'fixed number of frames per call')
        predict = SpatialTiles(self.predict_fn(model), tile[1:], overlap[1:],
                               self.size_multiple(model),
                               keys=('inference.tile', 'inference.tile_overlap'))

        def check(shape):
            frames = getattr(strategy, 'call_frames', lambda n: None)(shape[0])
            predict.check(tuple(shape), frames)
        return predict, strategy, check

    def evaluate(self, model, logger):
        from ascendcv.dataloader.pipeline import build_dataset
        from ascendcv.runner.evaluator import evaluate
        cfg = self.cfg
        predict, strategy, check = self.predictor(model, max(cfg.data.eval_batch_size, 1),
                                                  cfg.data.padding, logger.info)
        return evaluate(cfg, predict, build_dataset(cfg, 'val'), strategy, logger, check=check)

    def infer(self, model, logger):
        from ascendcv.runner.inferencer import run_inference
        cfg = self.cfg
        predict, strategy, check = self.predictor(model, max(cfg.data.eval_batch_size, 1),
                                                  cfg.inference.padding, logger.info)
        return run_inference(cfg, predict, strategy, logger=logger.info, check=check)

    # ------------------------------------------------------------------ export
    def _shapes(self, model):
        cfg = self.cfg
        t, c = model.num_frame, model.num_in_ch
        b = int(cfg.export.batch_size) if cfg.export.batch_size > 0 else None
        h, w = [None if s <= 0 else int(s) for s in cfg.data.eval_in_size]
        dim = cfg.model.input_format_dimension
        if dim == 5:
            return [b, t, h, w, c], [b, t, h, w, c]
        if dim == 4:
            return [None if b is None else b * t, h, w, c], [b, t, h, w, c]
        raise ValueError(f'model.input_format_dimension must be 4 or 5, got {dim}')

    def serving_signature(self, model):
        import tensorflow as tf
        shape, _ = self._shapes(model)
        return [tf.TensorSpec(shape, tf.float32, name='input')]

    def serve(self, model, x):
        import tensorflow as tf
        shape, shape5 = self._shapes(model)
        if len(shape) == 4:
            s = tf.shape(x)
            x = tf.reshape(x, [-1, model.num_frame, s[1], s[2], model.num_in_ch])
            x.set_shape(shape5)
        return model(x, training=False)

    def example_inputs(self, model):
        """A random input of the frozen layout (dynamic batch: 2 clips; dynamic sizes: 64)."""
        shape, _ = self._shapes(model)
        t = model.num_frame
        filled = [2 if s is None else s for s in shape]
        if len(shape) == 4 and shape[0] is None:
            filled[0] = 2 * t
        for i in (-3, -2):
            if shape[i] is None:
                filled[i] = 64
        return [np.random.default_rng(0).random(filled, dtype=np.float32)]

    def sample_data(self, workdir):
        import os
        from ascendcv.dataloader.prepare import prepare_dataset
        out = os.path.join(workdir, 'sample')
        if not os.path.isdir(out):
            prepare_dataset(['bikes'], out, clip_len=5, val_sources=['carphone'], max_frames=5,
                            progress=False)
        return [f'data.data_dir={out}', 'data.dataset_type=reds', 'data.crop_size=16',
                'data.batch_size=2', 'data.num_threads=1', 'data.train_data_queue_size=1',
                'data.eval_batch_size=2', 'data.max_eval_frames=2', 'data.eval_in_size=[16,20]',
                'eval.compute_ssim=False']

    def export_meta(self, model):
        return dict(num_frame=model.num_frame, num_in_ch=model.num_in_ch,
                    input_format_dimension=self.cfg.model.input_format_dimension,
                    scale=self.cfg.model.scale, size_multiple=self.size_multiple(model),
                    frame_multiple=self.frame_multiple(model))


def _tile_key(key, value):
    """``inference.tile`` / ``tile_overlap`` as three integers ``>= 0``."""
    if (not isinstance(value, (list, tuple)) or len(value) != 3
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)):
        raise ValueError(f'{key} must be three integers >= 0 [frames, height, width] '
                         f'(0 = whole); got {value!r}')
    return tuple(value)


class FrozenVideoPredict:
    """Feed a frozen video graph like the live model: ``[B, T, h, w, C]`` batches of any size
    (reshaped to ``[B*T, h, w, C]`` for a 4-D graph; a static batch filled up by
    :func:`ascendcv.runner.predict.fixed_batch`), with :meth:`check` refusing call shapes that
    the graph's recorded input cannot take."""

    def __init__(self, model, meta):
        self.model, self.meta = model, meta
        self.recorded = list(model.meta['inputs'][0]['shape'])
        self.dim = int(meta['input_format_dimension'])
        b = self.recorded[0]
        self.batch = (b if self.dim == 5 else b // int(meta['num_frame'])) if b else None
        run = model
        if self.dim == 4:
            run = (lambda x: model(x.reshape(-1, *x.shape[2:])))
        if self.batch:
            from ascendcv.runner.predict import fixed_batch
            run = fixed_batch(run, self.batch)
        self._run = run

    def check(self, call_shape, data_shape):
        """Raise ValueError when calls of ``call_shape`` ``(B, T, h, w, C)`` (frames
        ``data_shape`` after padding / tiling) do not fit the recorded input shape."""
        b, t, h, w, c = call_shape
        needed = [None, t, h, w, c] if self.dim == 5 else [None, h, w, c]
        bad = [i for i, (r, n) in enumerate(zip(self.recorded, needed))
               if r is not None and n is not None and r != n]
        if bad:
            names = (['N', 'D', 'H', 'W', 'C'] if self.dim == 5 else ['N*D', 'H', 'W', 'C'])
            rh, rw = self.recorded[-3], self.recorded[-2]
            tiles = (f', or restore in tiles of the recorded size (inference.tile=[0,{rh},{rw}])'
                     if rh and rw and data_shape[1] >= rh and data_shape[2] >= rw else '')
            shown = ', '.join('any' if n is None else str(n) for n in needed)
            raise ValueError(
                f'{self.model.path} was frozen for input {self.recorded} '
                f'[{", ".join(names)}], but the data (frames {list(data_shape)}) needs calls of '
                f'[{shown}]: freeze again with data.eval_in_size=[{h},{w}] (or [-1,-1] for any '
                f'size){tiles}')

    def __call__(self, x):
        return self._run(np.asarray(x))
