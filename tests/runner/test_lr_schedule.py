"""Learning-rate schedules as functions of the 1-based step."""
import math

import pytest

from ascendcv.runner.lr_schedule import (CosineAnnealingRestart, Constant, StepDecay,
                                         build_lr_schedule)
from ascendvsr.config.defaults import get_cfg_defaults


def test_step_decay_is_pytorch_steplr():
    s = StepDecay(2e-4, step_size=5, gamma=0.95)
    # steps 1..5 at the base rate, 6..10 x0.95, ... (RevSCI-net: x0.95 after every 5th epoch)
    assert [s(k) for k in (1, 5)] == [2e-4, 2e-4]
    assert s(6) == pytest.approx(2e-4 * 0.95) and s(10) == pytest.approx(2e-4 * 0.95)
    assert s(11) == pytest.approx(2e-4 * 0.95 ** 2)
    capped = StepDecay(1.0, step_size=5, gamma=0.5, until=10)  # no decay after step 10
    assert capped(11) == capped(1000) == pytest.approx(0.25)
    with pytest.raises(ValueError, match='lr_step_size'):
        StepDecay(1.0, step_size=0, gamma=0.5)


def test_cosine_restart_and_constant():
    c = CosineAnnealingRestart(1.0, [4, 4], [1.0, 0.5], eta_min=0.0)
    assert c(4) == pytest.approx(0.0, abs=1e-12)
    assert c(2) == pytest.approx(0.5 * (1 + math.cos(math.pi / 2)))
    assert c(6) == pytest.approx(0.5 * 0.5 * (1 + math.cos(math.pi * 2 / 4)))
    assert Constant(3e-4)(12345) == 3e-4


def test_build_from_config():
    cfg = get_cfg_defaults()
    cfg.solver.lr, cfg.solver.lr_schedule = 1e-3, 'step'
    cfg.solver.lr_step_size, cfg.solver.lr_gamma = 100, 0.7
    sched = build_lr_schedule(cfg.solver, scale=2.0)
    assert sched(100) == pytest.approx(2e-3) and sched(101) == pytest.approx(2e-3 * 0.7)
    cfg.solver.lr_schedule = 'linear'
    with pytest.raises(ValueError, match="solver.lr_schedule must be one of"):
        build_lr_schedule(cfg.solver)
