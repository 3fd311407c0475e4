"""Temporal normalization of the displayed mask, and the flicker/visibility meter.

Per-frame min-max makes a dim frame look as confident as a bright one, and its strength jumps
from frame to frame. :class:`MaskNormalizer` divides each raw mask by a *scale*: the frame's
``percentile``-th percentile (``frame`` mode) or, by default (``temporal``), an exponential
moving average of it across frames (in log space, half-life ``halflife_s`` of media time), so
the display only changes when what the network computes changes. :meth:`MaskNormalizer.reset`
starts over (a new source, a reconnect, a scene cut the caller knows of).

:class:`OverlayMeter` measures, per run, the flicker (mean absolute frame-to-frame change of the
blend weights drawn, on the network's grid) and the visibility (share of mask mass drawn with a
visible tint, share of the crop band tinted).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from vbp_live.core.overlay import MaskStyle, display_values, frame_scale, tint_weights, visibility


class MaskNormalizer:
    """Raw masks in, displayed values and blend weights out, with the scale kept across frames.

    Args:
        style: the look (its ``mode``, ``percentile`` and ``halflife_s`` matter here).

    Example:
        >>> norm = MaskNormalizer(MaskStyle())
        >>> display, weights = norm(raw_mask, time_s=0.05)
    """

    def __init__(self, style: MaskStyle):
        self.style = style
        self.log_scale: float | None = None  # log of the smoothed scale (temporal)
        self.last_time: float | None = None

    def reset(self) -> None:
        """Forget the smoothed scale: the next frame sets it afresh."""
        self.log_scale, self.last_time = None, None

    def scale(self, raw: np.ndarray, time_s: float | None = None) -> float:
        """The value drawn at full strength for this frame (updates the running scale in ``temporal``)."""
        s = frame_scale(raw, self.style.percentile)
        if self.style.mode != "temporal":
            return s
        if s > 0:  # an empty mask leaves the running scale as it is
            step = 1.0 if self.log_scale is None else self._gain(time_s)
            self.log_scale = math.log(s) if self.log_scale is None else self.log_scale + step * (
                math.log(s) - self.log_scale)
            self.last_time = time_s
        return math.exp(self.log_scale) if self.log_scale is not None else 0.0

    def _gain(self, time_s: float | None) -> float:
        """EMA weight of the new frame: ``1 - 0.5 ** (dt / halflife)`` (dt = 1/30 s when times are unknown)."""
        if self.style.halflife_s <= 0:
            return 1.0
        dt = 1 / 30 if time_s is None or self.last_time is None else max(0.0, time_s - self.last_time)
        return 1.0 - 0.5 ** (dt / self.style.halflife_s)

    def __call__(self, raw: np.ndarray, time_s: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(displayed values, blend weights), both float32 like ``raw``'s grid, for one frame."""
        display = display_values(raw, self.scale(raw, time_s), self.style)
        return display, tint_weights(display, self.style)


@dataclass
class OverlayMeter:
    """Accumulates flicker and visibility over a run (one frame at a time, on the network grid)."""

    frames: int = 0
    flicker_sum: float = 0.0
    mass_visible_sum: float = 0.0
    band_tinted_sum: float = 0.0
    weight_sum: float = 0.0
    _last: np.ndarray | None = field(default=None, repr=False)

    def add(self, raw: np.ndarray, weights: np.ndarray) -> None:
        """One frame's raw mask and the blend weights drawn for it."""
        v = visibility(raw, weights)
        self.mass_visible_sum += v.mass_visible
        self.band_tinted_sum += v.band_tinted
        self.weight_sum += float(weights.mean()) if weights.size else 0.0
        if self._last is not None and self._last.shape == weights.shape:
            self.flicker_sum += float(np.abs(weights - self._last).mean())
        self._last = weights
        self.frames += 1

    @property
    def flicker(self) -> float:
        """Mean absolute change of the drawn blend weight per pixel from one frame to the next (0..1)."""
        return self.flicker_sum / (self.frames - 1) if self.frames > 1 else 0.0

    @property
    def relative_flicker(self) -> float:
        """:attr:`flicker` divided by the mean blend weight: the change relative to what is drawn."""
        mean = self.weight_sum / self.frames if self.frames else 0.0
        return self.flicker / mean if mean > 0 else 0.0

    def summary(self) -> dict[str, float | int]:
        """Plain data: frames, flicker (absolute and relative), mean visible mass share, mean band share tinted."""
        n = max(1, self.frames)
        return {"frames": self.frames, "flicker": round(self.flicker, 5),
                "relative_flicker": round(self.relative_flicker, 4),
                "mass_visible": round(self.mass_visible_sum / n, 4),
                "band_tinted": round(self.band_tinted_sum / n, 4)}
