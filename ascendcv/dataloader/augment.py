"""Paired geometric augmentation (BasicSR ``basicsr/data/transforms.py::augment``), numpy."""
import numpy as np

__all__ = ['augment']


def augment(lr, gt, rng, use_flip=True, use_rot=True):
    """Apply the same random horizontal flip, vertical flip and transpose to LR frames and GT.

    As in BasicSR: ``hflip = use_flip and rng.random() < 0.5``, then
    ``vflip = use_rot and rng.random() < 0.5``, then ``rot90 = use_rot and rng.random() < 0.5``
    (a draw is made only when its flag is on); flips are applied first, then the transpose
    (``H <-> W``), which with the flips gives all 8 rotations/reflections of a square crop.

    Args:
        lr: LR frames ``[T, h, w, C]``.
        gt: GT image ``[H, W, C]`` (or frames ``[T', H, W, C]`` when ``gt.ndim == 4``).
        rng: ``numpy.random.Generator``.
        use_flip: allow the horizontal flip (``data.use_flip``).
        use_rot: allow the vertical flip and the transpose (``data.use_rot``).

    Returns:
        ``(lr, gt)`` transformed, C-contiguous (new arrays; inputs are not modified).
    """
    lr = np.asarray(lr)
    gt = np.asarray(gt)
    if lr.ndim != 4:
        raise ValueError(f'lr must be [T, h, w, C], got shape {lr.shape}')
    if gt.ndim not in (3, 4):
        raise ValueError(f'gt must be [H, W, C] or [T, H, W, C], got shape {gt.shape}')
    hflip = bool(use_flip) and rng.random() < 0.5
    vflip = bool(use_rot) and rng.random() < 0.5
    rot90 = bool(use_rot) and rng.random() < 0.5

    def apply(x, lead):  # lead = number of leading non-spatial axes
        if hflip:
            x = np.flip(x, axis=lead + 1)
        if vflip:
            x = np.flip(x, axis=lead)
        if rot90:
            axes = list(range(x.ndim))
            axes[lead], axes[lead + 1] = axes[lead + 1], axes[lead]
            x = x.transpose(axes)
        return np.ascontiguousarray(x)

    return apply(lr, 1), apply(gt, gt.ndim - 3)
