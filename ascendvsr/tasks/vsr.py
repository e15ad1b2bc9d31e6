"""Video restoration task: REDS / Vimeo90K clips, per-video PSNR/SSIM, video inference, export.

Prediction strategy (:mod:`ascendcv.runner.predict`): a sliding window of ``model.num_frame``
frames restoring its centre frame (EDVR); models that restore a whole clip (RVRT) override
:meth:`VideoRestorationTask.strategy` with :class:`ascendcv.runner.predict.ClipToClip`.

Serving signature (``--mode freeze``), from the config keys of the original tooling:

* ``data.eval_batch_size``: the batch dimension (``-1`` -> ``None``, any batch);
* ``data.eval_in_size``: ``[H, W]`` of the LR input (a value ``<= 0`` makes that size dynamic);
* ``model.input_format_dimension``: ``5`` = ``[N, D, H, W, C]`` input; ``4`` = ``[N*D, H, W, C]``,
  reshaped to 5-D inside the graph (for runtimes that only take 4-D tensors).
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

    def strategy(self, model, batch_size, padding):
        """How frames are fed to ``model``: a sliding window -> centre frame."""
        from ascendcv.runner.predict import SlidingWindow
        return SlidingWindow(self.model_meta(model)['num_frame'], padding, batch_size)

    def predict_fn(self, model):
        """``predict([B, T, h, w, C] float32) -> outputs`` for a live model (graph function) or
        a frozen graph (reshaped to its 4-D layout when it was frozen so)."""
        import tensorflow as tf
        meta = self.model_meta(model)
        if meta['input_format_dimension'] == 4:
            return lambda x: model(x.reshape(-1, *x.shape[2:]))
        from ascendcv.runner.freezer import FrozenGraphModel
        if isinstance(model, FrozenGraphModel):
            return model
        return tf.function(lambda x: model(x, training=False), reduce_retracing=True)

    def evaluate(self, model, logger):
        from ascendcv.dataloader.pipeline import build_dataset
        from ascendcv.runner.evaluator import evaluate
        cfg = self.cfg
        strategy = self.strategy(model, max(cfg.data.eval_batch_size, 1), cfg.data.padding)
        return evaluate(cfg, self.predict_fn(model), build_dataset(cfg, 'val'), strategy, logger)

    def infer(self, model, logger):
        from ascendcv.runner.inferencer import run_inference
        cfg = self.cfg
        strategy = self.strategy(model, max(cfg.data.eval_batch_size, 1), cfg.inference.padding)
        return run_inference(cfg, self.predict_fn(model), strategy, logger=logger.info)

    # ------------------------------------------------------------------ export
    def _shapes(self, model):
        cfg = self.cfg
        t, c = model.num_frame, model.num_in_ch
        b = None if cfg.data.eval_batch_size < 0 else int(cfg.data.eval_batch_size)
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
                    scale=self.cfg.model.scale)
