"""Rendering of attribution masks onto frames (numpy / OpenCV only).

Two looks (``MaskStyle.mode``):

- ``paper``: the paper's figures: the mask min-max normalized per frame, blended in red with a
  weight proportional to the value. VisualBackProp masks are heavy-tailed (on real dashcam
  video the median pixel is ~1/5000 of the maximum), so only a few hundred pixels show, in pink.
- ``frame`` / ``temporal`` (the default): the raw mask divided by a *scale* (the
  ``percentile``-th percentile of the frame's mask: ``frame``; that scale smoothed over time by
  :class:`~vbp_live.stream.normalize.MaskNormalizer`: ``temporal``), clipped to [0, 1], lifted by
  ``gamma``; values from ``floor`` up are drawn with at least ``min_tint`` so that they are seen.

:func:`tint_weights` gives the blend weight per pixel, :func:`blend` paints it in a colour map
(:mod:`vbp_live.core.colormaps`), :func:`visibility` measures what a viewer can see.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from vbp_live.core.colormaps import COLOR_NAMES, RED_BGR, colormap_lut, is_single_color

RENDER_MODES = ("temporal", "frame", "paper")
VISIBLE_TINT = 0.15  # blend weight from which a tint is visible: a mid-gray pixel moves by ~20 levels per channel


@dataclass(frozen=True)
class MaskStyle:
    """How a mask is drawn.

    Attributes:
        mode: ``temporal`` (scale smoothed across frames), ``frame`` (scale per frame) or
            ``paper`` (per-frame min-max, linear: the paper's figures).
        color: a colour map name (:data:`~vbp_live.core.colormaps.COLOR_NAMES`).
        alpha: blend weight at full strength.
        percentile: the mask percentile (over the crop band) drawn at full strength.
        gamma: exponent on the scaled mask (< 1 lifts weak values).
        floor: scaled values below this are not drawn.
        min_tint: blend weight of a value at ``floor`` (so that whatever is drawn is seen).
        halflife_s: ``temporal``: half-life of the smoothed scale in seconds of media time.
    """

    mode: str = "temporal"
    color: str = "red"
    alpha: float = 0.7
    percentile: float = 99.0
    gamma: float = 0.5
    floor: float = 0.1
    min_tint: float = 0.25
    halflife_s: float = 1.0

    def __post_init__(self) -> None:
        if self.mode not in RENDER_MODES:
            raise ValueError(f"render mode must be one of {', '.join(RENDER_MODES)}, got {self.mode!r}")
        if self.color not in COLOR_NAMES:
            raise ValueError(f"colour must be one of {', '.join(COLOR_NAMES)}, got {self.color!r}")
        if not (0.0 <= self.min_tint <= self.alpha <= 1.0):
            raise ValueError(f"need 0 <= min_tint <= alpha <= 1, got min_tint={self.min_tint}, alpha={self.alpha}")
        if not (0.0 < self.percentile <= 100.0 and self.gamma > 0 and 0.0 <= self.floor < 1.0):
            raise ValueError(f"bad scaling: percentile={self.percentile}, gamma={self.gamma}, floor={self.floor}")
        if self.halflife_s < 0:
            raise ValueError(f"halflife_s must be >= 0, got {self.halflife_s}")


def to_bgr(frame: np.ndarray) -> np.ndarray:
    """Return a uint8 (H, W, 3) BGR view/copy of a gray or BGR frame."""
    if frame.ndim == 2:
        return np.repeat(frame[:, :, None], 3, axis=2)
    if frame.ndim == 3 and frame.shape[2] == 3:
        return frame
    raise ValueError(f"expected (H,W) or (H,W,3) frame, got {frame.shape}")


def frame_scale(raw: np.ndarray, percentile: float) -> float:
    """The ``percentile``-th percentile of a raw mask (0 for an empty or all-zero mask).

    Large masks are sampled on every second row and column (a quarter of the pixels, the same
    percentile within a fraction of a percent on VisualBackProp masks, 4x less work).
    """
    if raw.size == 0:
        return 0.0
    sample = raw[::2, ::2] if raw.ndim == 2 and raw.size >= 4096 else raw
    hi = float(np.percentile(sample, percentile)) if percentile < 100 else float(raw.max())
    return hi if hi > 0 else float(raw.max())


def minmax(raw: np.ndarray) -> np.ndarray:
    """Per-frame min-max to [0, 1] (zeros for a constant mask), as the paper normalizes."""
    lo, hi = float(raw.min()), float(raw.max())
    if hi <= lo:
        return np.zeros(raw.shape, np.float32)
    return ((raw - lo) / (hi - lo)).astype(np.float32)


def display_values(raw: np.ndarray, scale: float, style: MaskStyle) -> np.ndarray:
    """The displayed mask in [0, 1]: min-max for ``paper``, else ``clip(raw / scale) ** gamma``.

    Args:
        raw: float (h, w) mask as the attribution method computed it (non-negative).
        scale: the value drawn at full strength (ignored by ``paper``).
        style: the look.
    """
    if style.mode == "paper":
        return minmax(raw)
    if scale <= 0:
        return np.zeros(raw.shape, np.float32)
    d = np.clip(raw.astype(np.float32) * np.float32(1.0 / scale), 0.0, 1.0)  # (h, w)
    return d if style.gamma == 1.0 else np.power(d, np.float32(style.gamma))


def tint_weights(display: np.ndarray, style: MaskStyle) -> np.ndarray:
    """Blend weight per pixel: ``display * alpha`` for ``paper``; else ``min_tint`` at ``floor`` up to ``alpha``."""
    if style.mode == "paper":
        return (display * np.float32(style.alpha)).astype(np.float32)
    ramp = (display - np.float32(style.floor)) * np.float32(1.0 / (1.0 - style.floor))  # (h, w)
    w = np.float32(style.min_tint) + np.float32(style.alpha - style.min_tint) * ramp
    return np.where(display >= style.floor, w, np.float32(0.0)).astype(np.float32)


def blend(frame: np.ndarray, weights: np.ndarray, display: np.ndarray | None = None, color: str = "red") -> np.ndarray:
    """Paint ``weights`` onto a frame in colour map ``color`` (indexed by ``display``); a new BGR image.

    Args:
        frame: uint8 (H, W) or (H, W, 3).
        weights: float (H, W) blend weights in [0, 1].
        display: float (H, W) displayed values in [0, 1] picking the colour (ignored for ``red``).
        color: colour map name.
    """
    base = np.ascontiguousarray(to_bgr(frame))  # (H, W, 3) uint8
    if weights.shape != base.shape[:2]:
        raise ValueError(f"mask {weights.shape} does not match frame {base.shape[:2]}")
    w = np.clip(weights, 0.0, 1.0).astype(np.float32)  # (H, W)
    if is_single_color(color) or display is None:
        paint = np.empty_like(base)
        paint[:] = colormap_lut(color)[255]  # (H, W, 3) one colour
    else:
        idx = np.clip(display * 255.0 + 0.5, 0, 255).astype(np.uint8)  # (H, W)
        paint = colormap_lut(color)[idx]  # (H, W, 3)
    w3 = cv2.merge([w, w, w])  # (H, W, 3)
    out = cv2.add(cv2.multiply(base.astype(np.float32), 1.0 - w3), cv2.multiply(paint.astype(np.float32), w3))
    return (out + np.float32(0.5)).astype(np.uint8)  # base * (1 - w) + paint * w, rounded (as overlay_mask)


def overlay_mask(
    frame: np.ndarray,
    mask: np.ndarray,
    alpha: float = 0.7,
    color: tuple[int, int, int] = RED_BGR,
) -> np.ndarray:
    """Blend a [0, 1] mask onto a frame in one color (red by default), as in the paper's figures.

    Args:
        frame: uint8 (H, W) or (H, W, 3) BGR.
        mask: float (H, W) in [0, 1]; values outside are clipped.
        alpha: blend weight at mask value 1.
        color: BGR color of the overlay.

    Returns:
        a new uint8 (H, W, 3) BGR image.
    """
    base = to_bgr(frame).astype(np.float32)  # (H, W, 3)
    if mask.shape != base.shape[:2]:
        raise ValueError(f"mask {mask.shape} does not match frame {base.shape[:2]}")
    w = (np.clip(mask, 0.0, 1.0).astype(np.float32) * alpha)[:, :, None]  # (H, W, 1)
    out = base * (1.0 - w) + np.asarray(color, np.float32) * w
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def outline_band(frame: np.ndarray, box: tuple[int, int, int, int], opacity: float = 0.45) -> None:
    """A thin light frame around the crop band ``(y0, y1, x0, x1)``, drawn in place (what the network sees)."""
    h, w = frame.shape[:2]
    y0, y1, x0, x1 = max(0, box[0]), min(h, box[1]), max(0, box[2]), min(w, box[3])
    t = max(1, round(min(h, w) / 540))
    edges = [(slice(y0, y0 + t), slice(x0, x1)), (slice(y1 - t, y1), slice(x0, x1)),
             (slice(y0 + t, y1 - t), slice(x0, x0 + t)), (slice(y0 + t, y1 - t), slice(x1 - t, x1))]
    for rows, cols in edges:  # each pixel once, in place
        roi = frame[rows, cols]
        roi[:] = (roi * (1.0 - opacity) + 235.0 * opacity + 0.5).astype(np.uint8)


@dataclass(frozen=True)
class Visibility:
    """What a viewer sees of one mask.

    Attributes:
        mass_visible: share of the mask's mass (sum of values) on pixels tinted at least
            :data:`VISIBLE_TINT`.
        band_tinted: share of the crop band's pixels tinted at least :data:`VISIBLE_TINT`.
    """

    mass_visible: float
    band_tinted: float


def visibility(raw: np.ndarray, weights: np.ndarray) -> Visibility:
    """Measure :class:`Visibility` of a raw mask drawn with blend ``weights`` (same grid)."""
    seen = weights >= VISIBLE_TINT  # (h, w)
    total = float(raw.sum(dtype=np.float64))
    mass = float(raw[seen].sum(dtype=np.float64)) / total if total > 0 else 0.0
    return Visibility(mass, float(seen.mean()) if seen.size else 0.0)
