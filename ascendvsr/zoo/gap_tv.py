"""GAP-TV (Yuan, ICIP 2016): generalized alternating projection with TV denoising for video SCI.

An optimisation method: no weights, nothing to train; its settings are the ``sci.gap_tv_*`` keys.
"""
from ascendvsr.zoo import ModelEntry, register

register(ModelEntry(
    name='GAP-TV',
    builder='ascendvsr.models.gap_tv:build_gap_tv',
    task='ascendvsr.tasks.sci:GapTvTask',
    tiny=('sci.gap_tv_iter_max=5',),
    description='GAP-TV iterative SCI reconstruction (no weights)'))
