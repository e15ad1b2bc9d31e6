"""Learning-rate schedules, as functions of the 1-based step."""
import bisect
import math


class CosineAnnealingRestart:
    """BasicSR ``CosineAnnealingRestartLR``: cosine from ``weight * base`` to ``eta_min`` over each
    period, restarting at the period boundaries.

    ``lr(step)`` for step ``s`` (1-based, as BasicSR calls ``scheduler.step()`` before the first
    update): with ``cum = cumsum(periods)``, ``i`` the first period with ``s <= cum[i]``,
    ``lr = eta_min + w_i * 0.5 * (base - eta_min) * (1 + cos(pi * (s - cum[i-1]) / periods[i]))``.
    """

    def __init__(self, base_lr, periods, restart_weights, eta_min=1e-7, total_steps=None):
        if len(periods) != len(restart_weights):
            raise ValueError(f'solver.periods ({len(periods)}) and solver.restart_weights '
                             f'({len(restart_weights)}) must have the same length')
        if not periods or any(int(p) < 1 for p in periods):
            raise ValueError(f'solver.periods must be positive step counts; got {list(periods)}')
        if total_steps is not None and sum(periods) < total_steps:
            raise ValueError(f'solver.periods {list(periods)} sum to {sum(periods)} steps but '
                             f'solver.total_steps is {total_steps}: past the last period the '
                             f'cosine would climb back up; make the periods cover total_steps')
        self.base_lr, self.eta_min = float(base_lr), float(eta_min)
        self.periods, self.weights = list(periods), list(restart_weights)
        self.cumulative = [sum(self.periods[:i + 1]) for i in range(len(self.periods))]

    def __call__(self, step):
        i = min(bisect.bisect_left(self.cumulative, step), len(self.periods) - 1)
        start = self.cumulative[i - 1] if i > 0 else 0
        frac = (step - start) / self.periods[i]
        return self.eta_min + self.weights[i] * 0.5 * (self.base_lr - self.eta_min) * (
            1 + math.cos(math.pi * frac))


class Constant:
    def __init__(self, base_lr):
        self.base_lr = float(base_lr)

    def __call__(self, step):
        return self.base_lr


class StepDecay:
    """``lr = base * gamma ** floor((step - 1) / step_size)``: the rate is multiplied by ``gamma``
    after every ``step_size`` steps (PyTorch ``StepLR``; RevSCI-net's x0.95 every 5 epochs with
    ``step_size`` = 5 epochs of steps). ``until`` > 0 stops the decay after that many steps
    (RevSCI-net decays only during its first 150 epochs)."""

    def __init__(self, base_lr, step_size, gamma, until=0):
        if int(step_size) < 1 or not 0 < float(gamma):
            raise ValueError(f'solver.lr_step_size must be >= 1 and solver.lr_gamma > 0; got '
                             f'{step_size}, {gamma}')
        self.base_lr, self.step_size = float(base_lr), int(step_size)
        self.gamma, self.until = float(gamma), int(until)

    def __call__(self, step):
        done = step - 1 if self.until <= 0 else min(step - 1, self.until)
        return self.base_lr * self.gamma ** (done // self.step_size)


SCHEDULES = ('cosine_restart', 'constant', 'step')


def build_lr_schedule(solver_cfg, scale=1.0):
    """The schedule named by ``solver.lr_schedule`` (base rate ``solver.lr * scale``); the cosine
    periods must cover ``solver.total_steps``."""
    base = solver_cfg.lr * scale
    if solver_cfg.lr_schedule == 'step':
        return StepDecay(base, solver_cfg.lr_step_size, solver_cfg.lr_gamma,
                         solver_cfg.lr_decay_until)
    if solver_cfg.lr_schedule == 'cosine_restart':
        return CosineAnnealingRestart(base, solver_cfg.periods, solver_cfg.restart_weights,
                                      solver_cfg.eta_min * scale, solver_cfg.total_steps)
    if solver_cfg.lr_schedule == 'constant':
        return Constant(base)
    raise ValueError(f"solver.lr_schedule must be one of {SCHEDULES}, "
                     f"got {solver_cfg.lr_schedule!r}")
