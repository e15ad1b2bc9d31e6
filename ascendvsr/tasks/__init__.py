"""Tasks of the model families (subclasses of :class:`ascendcv.runner.task.Task`).

* :mod:`ascendvsr.tasks.vsr` -- video restoration: frame-folder datasets, per-video PSNR/SSIM,
  video inference, clip serving signature (EDVR through :mod:`ascendvsr.tasks.edvr`);
* :mod:`ascendvsr.tasks.sci` -- video snapshot compressive imaging (GAP-TV, RevSCI);
* :mod:`ascendvsr.tasks.nerv` -- NeRV video fitting.

Which model uses which task is declared by its registration in ``ascendvsr/zoo/``.
"""
