"""Learning-rate schedules as pure functions of the global step (so a resumed run is exact)."""

from __future__ import annotations

import math

from vbp_live.train.config import OptimConfig


def lr_at(cfg: OptimConfig, step: int, steps_per_epoch: int, total_steps: int) -> float:
    """Learning rate for optimizer step ``step`` (0-based).

    ``constant``: ``lr``; ``step``: ``lr * gamma**(milestones passed)`` (milestones in epochs);
    ``cosine``: from ``lr`` down to ``lr * min_lr_ratio`` at the last step. A linear warm-up over
    ``warmup_epochs`` multiplies any of them.
    """
    epoch = step / max(steps_per_epoch, 1)
    lr = cfg.lr
    if cfg.schedule == "step":
        lr *= cfg.gamma ** sum(epoch >= m for m in cfg.milestones)
    elif cfg.schedule == "cosine":
        t = min(step / max(total_steps - 1, 1), 1.0)
        lr *= cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * t))
    warmup = cfg.warmup_epochs * steps_per_epoch
    if warmup > 0 and step < warmup:
        lr *= min((step + 1) / warmup, 1.0)  # a fractional warm-up's last step must not overshoot lr
    return lr
