"""Video super-resolution / restoration (EDVR): clip datasets, per-video PSNR, video inference."""
from ascendvsr.tasks import register_task


class VideoRestorationTask:
    name = 'video_restoration'

    @staticmethod
    def train_pipeline(cfg, model, backend):
        from ascendcv.dataloader.pipeline import build_dataset, build_train_pipeline
        dataset = build_dataset(cfg, 'train')

        def pipeline_fn(start_step):
            return build_train_pipeline(cfg, dataset, model.num_frame, seed=cfg.seed,
                                        start_step=start_step, rank=backend.rank,
                                        world_size=backend.world_size)
        return pipeline_fn

    @staticmethod
    def evaluate(cfg, model, logger):
        from ascendcv.dataloader.pipeline import build_dataset
        from ascendcv.runner.evaluator import evaluate
        dataset = build_dataset(cfg, 'val')
        return evaluate(cfg, lambda x: model(x, training=False), dataset, model.num_frame, logger)

    @staticmethod
    def infer(cfg, model, logger):
        from ascendcv.runner.inferencer import run_inference
        return run_inference(cfg, model, logger=logger.info)


register_task('EDVR', VideoRestorationTask)
