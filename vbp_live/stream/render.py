"""Compose an output frame: the mask mapped back through crop and resize, overlaid in red, plus the HUD."""

from __future__ import annotations

import numpy as np

from vbp_live.core.hud import Hud, HudInfo, HudStyle
from vbp_live.core.overlay import overlay_mask, to_bgr
from vbp_live.core.preprocess import CropSpec, mask_to_frame
from vbp_live.io.frames import FrameRecord
from vbp_live.stream.engine import Prediction


class OverlayRenderer:
    """Draws a :class:`Prediction` onto its :class:`FrameRecord`.

    Args:
        crop: the crop the network input was made with (maps the mask back to the frame).
        style: HUD style; ``None`` draws no HUD at all.
        alpha: overlay strength at mask value 1.
        note: an extra HUD line on every frame (e.g. "untrained net").
    """

    def __init__(self, crop: CropSpec, style: HudStyle | None = HudStyle(), alpha: float = 0.7, note: str = ""):
        self.crop, self.alpha, self.note = crop, alpha, note
        self.hud = Hud(style) if style is not None else None

    def overlay(self, rec: FrameRecord, mask: np.ndarray) -> np.ndarray:
        """The frame (BGR copy) with the mask in red: on the crop band only (zero elsewhere)."""
        out = to_bgr(rec.image).copy()  # (H, W, 3)
        if rec.cropped:
            return overlay_mask(out, mask, self.alpha)
        full = mask_to_frame(mask, self.crop, out.shape)  # (H, W), zero outside the band
        y0, y1, x0, x1 = self.crop.box(out.shape[0], out.shape[1])
        out[y0:y1, x0:x1] = overlay_mask(out[y0:y1, x0:x1], full[y0:y1, x0:x1], self.alpha)
        return out

    def render(self, rec: FrameRecord, pred: Prediction, fps: float | None = None) -> np.ndarray:
        """Overlay + HUD for one frame."""
        out = self.overlay(rec, pred.mask)
        if self.hud is not None:
            info = HudInfo(rec.index, rec.time_s, pred.steering_rad, rec.truth_rad, fps, self.note)
            self.hud.annotate(out, info)
        return out
