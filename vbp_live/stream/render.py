"""Compose an output frame: the mask mapped back through crop and resize and tinted, the crop band
outlined, the HUD and an optional timeline strip.

The renderer is per run: it owns the temporal normalizer (the smoothed mask scale,
:class:`~vbp_live.stream.normalize.MaskNormalizer`), the timeline's history and the meter of
flicker and visibility (:meth:`OverlayRenderer.summary`). Frames lower than ``min_height`` are
enlarged (whole factors, nearest neighbour) before drawing, so text and glyph stay legible.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from vbp_live.core.hud import Hud, HudInfo, HudStyle
from vbp_live.core.overlay import MaskStyle, blend, outline_band, to_bgr
from vbp_live.core.preprocess import CropSpec
from vbp_live.core.timeline import Timeline
from vbp_live.io.frames import FrameRecord
from vbp_live.stream.engine import Prediction
from vbp_live.stream.normalize import MaskNormalizer, OverlayMeter


def raw_mask(pred: Prediction) -> np.ndarray:
    """The mask before the method's per-frame min-max (``mask_range`` undoes it)."""
    lo, hi = pred.mask_range
    if (lo, hi) == (0.0, 1.0):
        return pred.mask
    return (lo + pred.mask.astype(np.float32) * np.float32(hi - lo)).astype(np.float32)  # (h, w)


def upscale_factor(height: int, min_height: int) -> int:
    """Whole factor that brings ``height`` to at least ``min_height`` (1 when it is already there or 0)."""
    return max(1, math.ceil(min_height / height)) if height > 0 and min_height > 0 else 1


class OverlayRenderer:
    """Draws a :class:`Prediction` onto its :class:`FrameRecord`.

    Args:
        crop: the crop the network input was made with (maps the mask back to the frame).
        style: HUD style; ``None`` draws no HUD at all.
        alpha: overlay strength at full mask (used when ``mask_style`` is not given).
        note: an extra HUD line on every frame (e.g. "untrained net").
        mask_style: how the mask is drawn (default: ``MaskStyle(alpha=alpha)``, the temporal look).
        timeline_s: draw a timeline strip of the last this many seconds (None: no strip).
        min_height: enlarge frames lower than this (0: never).
        outline: outline the crop band.
    """

    def __init__(self, crop: CropSpec, style: HudStyle | None = HudStyle(), alpha: float = 0.7, note: str = "",
                 mask_style: MaskStyle | None = None, timeline_s: float | None = None, min_height: int = 0,
                 outline: bool = True):
        self.crop, self.note, self.min_height, self.outline = crop, note, min_height, outline
        self.mask_style = mask_style or MaskStyle(alpha=alpha, min_tint=min(MaskStyle.min_tint, alpha))
        self.hud = Hud(style) if style is not None else None
        self.normalizer = MaskNormalizer(self.mask_style)
        self.timeline = Timeline(timeline_s) if timeline_s else None
        self.meter = OverlayMeter()

    def reset(self) -> None:
        """Start over: the smoothed scale and the timeline forget the past (a new source, a reconnect)."""
        self.normalizer.reset()
        if self.timeline is not None:
            self.timeline.reset()

    def overlay(self, rec: FrameRecord, mask: np.ndarray, time_s: float | None = None) -> np.ndarray:
        """The frame (BGR copy, enlarged if low) with the mask tinted on the crop band, the band outlined.

        Args:
            rec: the frame.
            mask: float (out_height, out_width) raw (or min-max normalized) mask on the network grid.
            time_s: media time (the temporal scale's clock; default ``rec.time_s``).
        """
        display, weights = self.normalizer(mask, getattr(rec, "time_s", None) if time_s is None else time_s)  # (h, w)
        self.meter.add(mask, weights)
        out = self._base(rec)  # (H, W, 3)
        y0, y1, x0, x1 = (0, out.shape[0], 0, out.shape[1]) if rec.cropped else self.crop.box(*out.shape[:2])
        size = (x1 - x0, y1 - y0)
        w_band = cv2.resize(weights, size, interpolation=cv2.INTER_LINEAR)  # (y1-y0, x1-x0)
        d_band = None if self.mask_style.color == "red" else cv2.resize(display, size, interpolation=cv2.INTER_LINEAR)
        out[y0:y1, x0:x1] = blend(out[y0:y1, x0:x1], w_band, d_band, self.mask_style.color)
        if self.outline and not rec.cropped:
            outline_band(out, (y0, y1, x0, x1))
        return out

    def _base(self, rec: FrameRecord) -> np.ndarray:
        """A BGR copy of the frame, enlarged by a whole factor if lower than ``min_height``."""
        img = to_bgr(rec.image)
        f = upscale_factor(img.shape[0], self.min_height)
        if f == 1:
            return img.copy()
        return cv2.resize(img, (img.shape[1] * f, img.shape[0] * f), interpolation=cv2.INTER_NEAREST)

    def render(self, rec: FrameRecord, pred: Prediction, fps: float | None = None) -> np.ndarray:
        """Overlay + HUD (+ timeline) for one frame."""
        out = self.overlay(rec, raw_mask(pred))
        if self.timeline is not None:
            true_deg = None if rec.truth_rad is None else math.degrees(rec.truth_rad)
            self.timeline.add(rec.time_s, math.degrees(pred.steering_rad), true_deg)
            self.timeline.draw(out)
        if self.hud is not None:
            info = HudInfo(rec.index, rec.time_s, pred.steering_rad, rec.truth_rad, fps, self.note)
            self.hud.annotate(out, info)
        return out

    def summary(self) -> dict[str, object]:
        """The look used and what it measured (flicker, visibility) over the frames drawn so far."""
        return {"render": self.mask_style.mode, "color": self.mask_style.color, **self.meter.summary()}
