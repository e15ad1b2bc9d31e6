"""RVRT Light's task: RVRT's clip-to-clip video restoration (:class:`ascendvsr.tasks.rvrt.
RVRTTask`) reading its options from the ``rvrt_light`` config node. Without SpyNet there is a
single training phase (``fix_iter`` / ``fix_lr_mul`` have nothing to act on)."""
from ascendvsr.tasks.rvrt import RVRTTask


class RVRTLightTask(RVRTTask):
    """:class:`RVRTTask` with ``node = 'rvrt_light'``."""

    node = 'rvrt_light'
