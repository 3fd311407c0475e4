"""Which network output is the steering angle, and its factor to the project's unit and sign.

vbp_live's steering is the steering *wheel* angle in radians, positive = left (as the Udacity bags'
SteeringReport). A model trained elsewhere may output degrees, a normalized value, the road-wheel
angle, positive = right, or several values (donkeycar: angle and throttle). :class:`OutputMap`
says which column to take and the factor to apply; :class:`SteeringOutput` wraps the network so
every consumer (overlay, explain, evaluate, bench) sees one value per frame in the project's unit.
VisualBackProp does not depend on it (masks come from the feature maps).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from vbp_live.core.errors import ModelError


@dataclass(frozen=True)
class OutputMap:
    """``steering_rad = output[:, index] * scale``.

    Attributes:
        index: the column of the network output that is the steering value.
        scale: factor from the network's unit and sign to rad of steering wheel angle, positive = left.
    """

    index: int = 0
    scale: float = 1.0

    def __post_init__(self) -> None:
        if self.index < 0:
            raise ValueError(f"output index must be >= 0, got {self.index}")
        if not math.isfinite(self.scale) or self.scale == 0.0:
            raise ValueError(f"output scale must be finite and non-zero, got {self.scale}")

    @property
    def identity(self) -> bool:
        """True when the network's first output already is the steering in the project's unit."""
        return self.index == 0 and self.scale == 1.0

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (checkpoint friendly)."""
        return {"index": self.index, "scale": self.scale}


def steering_scale(unit: str, positive: str, angle: str = "steering_wheel", full_scale_deg: float | None = None,
                   steering_ratio: float | None = None) -> float:
    """Factor from a network's steering value to rad of steering wheel angle, positive = left.

    Args:
        unit: ``radians``, ``degrees`` or ``normalized`` (±1 = ±``full_scale_deg``).
        positive: ``left`` or ``right``: which way a positive value turns.
        angle: ``steering_wheel`` or ``road_wheel`` (then multiplied by ``steering_ratio``).
        full_scale_deg: degrees at ±1, for ``normalized``.
        steering_ratio: steering wheel angle / road-wheel angle, for ``road_wheel``.
    """
    per_unit = {"radians": 1.0, "degrees": math.pi / 180.0}
    if unit == "normalized":
        if full_scale_deg is None or full_scale_deg <= 0:
            raise ValueError("a normalized output needs full_scale_deg > 0 (the angle at ±1)")
        k = math.radians(full_scale_deg)
    elif unit in per_unit:
        k = per_unit[unit]
    else:
        raise ValueError(f"unit must be radians, degrees or normalized, got {unit!r}")
    if angle == "road_wheel":
        if steering_ratio is None or steering_ratio <= 0:
            raise ValueError("a road-wheel angle needs steering_ratio > 0 (steering wheel / road wheel)")
        k *= steering_ratio
    elif angle != "steering_wheel":
        raise ValueError(f"angle must be steering_wheel or road_wheel, got {angle!r}")
    if positive not in ("left", "right"):
        raise ValueError(f"positive must be left or right, got {positive!r}")
    return k if positive == "left" else -k


class SteeringOutput(nn.Module):
    """``net`` with its output mapped to one steering value per frame (see :class:`OutputMap`)."""

    def __init__(self, net: nn.Module, output: OutputMap):
        super().__init__()
        self.net, self.index, self.scale = net, output.index, output.scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, 1)
        """Run the network, keep the steering column, convert it."""
        out = self.net(x)
        out = out.reshape(out.shape[0], -1)  # (B, n_out)
        if self.index >= out.shape[1]:
            raise ModelError(f"output index {self.index} but the model has {out.shape[1]} outputs")
        return out[:, self.index:self.index + 1] * self.scale  # (B, 1)
