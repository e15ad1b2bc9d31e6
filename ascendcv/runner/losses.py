"""Pixel losses (BasicSR semantics). Inputs ``[B, H, W, C]`` in [0, 1]; returns a scalar."""
import tensorflow as tf


def _reduce(x, reduction):
    if reduction == 'sum':
        return tf.reduce_sum(x)
    if reduction == 'mean':
        return tf.reduce_mean(x)
    raise ValueError(f"loss reduction must be 'sum' or 'mean', got {reduction!r}")


def charbonnier_loss(pred, target, eps=1e-12, reduction='sum'):
    """``sqrt((pred - target)^2 + eps)`` (BasicSR ``CharbonnierLoss``; EDVR trains with 'sum')."""
    return _reduce(tf.sqrt(tf.square(pred - target) + eps), reduction)


def l1_loss(pred, target, reduction='mean'):
    return _reduce(tf.abs(pred - target), reduction)


def l2_loss(pred, target, reduction='mean'):
    return _reduce(tf.square(pred - target), reduction)


def build_loss(solver_cfg):
    """Loss function ``f(pred, target)`` from ``cfg.solver``."""
    name, red = solver_cfg.loss, solver_cfg.loss_reduction
    if name == 'charbonnier':
        eps = solver_cfg.charbonnier_eps
        return lambda p, t: charbonnier_loss(p, t, eps, red)
    if name == 'l1':
        return lambda p, t: l1_loss(p, t, red)
    if name == 'l2':
        return lambda p, t: l2_loss(p, t, red)
    raise ValueError(f"solver.loss must be one of charbonnier, l1, l2; got {name!r}")
