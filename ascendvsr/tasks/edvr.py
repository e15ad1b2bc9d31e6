"""EDVR's training rule on top of the video restoration task: the TSA-only warm-up."""
from ascendcv.runner.task import Phase
from ascendvsr.tasks.vsr import VideoRestorationTask


class EDVRTask(VideoRestorationTask):
    """BasicSR trains only the fusion (TSA) module while ``current_iter < tsa_iter``, i.e. for
    steps ``1 .. edvr.tsa_iter - 1``, then every parameter.

    EDVR's pyramid (PCD alignment) halves the frames twice, and with ``hr_in`` two strided convs
    come first: frames are padded to a multiple of 4 (16 with ``hr_in``)."""

    # config keys of the model node that do not define the weights (training / implementation)
    runtime_keys = ('edvr.tsa_iter', 'edvr.impl', 'edvr.dcn_jit_compile')

    def size_multiple(self, model):
        from ascendcv.runner.freezer import FrozenGraphModel
        if isinstance(model, FrozenGraphModel):  # sidecars older than the entry: EDVR's 4
            return int(model.meta.get('size_multiple', 4))
        return 16 if model.hr_in else 4

    def training_phases(self, model):
        total, tsa_iter = int(self.cfg.solver.total_steps), int(self.cfg.edvr.tsa_iter)
        if tsa_iter <= 1:
            return [Phase(until=total)]
        warm = min(tsa_iter - 1, total)
        phases = [Phase(until=warm, trainable=lambda m: m.warmup_trainable_variables(),
                        description=f'Only train the fusion (TSA) module for the first {warm} '
                                    f'steps.')]
        if total > warm:
            phases.append(Phase(until=total, description='Train all the parameters.'))
        return phases
