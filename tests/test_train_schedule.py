"""Learning-rate schedules: each reads like its formula, warm-up included (``train/schedule.py``)."""

from __future__ import annotations

import math

import pytest

from vbp_live.train.config import OptimConfig
from vbp_live.train.schedule import lr_at


def test_cosine_runs_from_lr_to_its_floor():
    cfg = OptimConfig(lr=0.1, schedule="cosine", min_lr_ratio=0.02)
    lrs = [lr_at(cfg, s, 10, 101) for s in range(101)]
    assert lrs[0] == pytest.approx(0.1) and lrs[-1] == pytest.approx(0.002)
    assert lrs[50] == pytest.approx(0.002 + 0.098 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert all(a >= b for a, b in zip(lrs, lrs[1:], strict=False))


def test_step_schedule_multiplies_by_gamma_at_each_milestone():
    cfg = OptimConfig(lr=1.0, schedule="step", gamma=0.1, milestones=[1, 3])
    assert [lr_at(cfg, s * 10, 10, 50) for s in range(5)] == pytest.approx([1.0, 0.1, 0.1, 0.01, 0.01])


@pytest.mark.parametrize("warmup_epochs", [0.1, 0.35, 1.0])
def test_warmup_rises_linearly_and_never_overshoots(warmup_epochs):
    """A warm-up of 35.5 steps (0.1 of 355) ends at lr, not 36/35.5 of it."""
    cfg = OptimConfig(lr=0.01, schedule="constant", warmup_epochs=warmup_epochs)
    lrs = [lr_at(cfg, s, 355, 3 * 355) for s in range(400)]
    assert max(lrs) == pytest.approx(0.01) and lrs[0] == pytest.approx(0.01 / (warmup_epochs * 355))
    assert all(a <= b for a, b in zip(lrs, lrs[1:], strict=False))
