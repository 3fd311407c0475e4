"""Lane paint on real frames by a simple colour rule (no ground truth exists for real dashcam clips).

The rule, per frame (OpenCV 8-bit Lab: ``L`` 0..255, ``a``/``b`` offset by 128):

1. **Where to look**: rows below the horizon (plus a small margin) inside the network's crop band.
2. **Asphalt**: grey pixels (chroma ``sqrt(a² + b²)`` at most ``road_chroma``) whose brightness is
   within ``road_low``..``road_high`` × the asphalt reference (median ``L`` of a patch at the bottom
   centre of the band, where the ego lane is). Grass, trees, sky, dry verges, shadows and paint fail it.
3. **Local road brightness** ``bg``: the mean ``L`` of the asphalt pixels within half a window
   (``window`` × frame width) to the left, and to the right, in the same row; the brighter of the
   two. A pixel without asphalt on *both* sides is not paint: a stripe lies on the road, while a
   guard rail, a kerb or a verge has asphalt on one side at most.
4. **Paint**: ``L >= bg + max(contrast, rel_contrast × bg)`` and either white (chroma at most
   ``white_chroma``) or yellow (``b - 128 >= yellow_b`` and ``b`` above ``|a|``), in a blob of at
   least ``min_blob`` × the frame's pixels (asphalt grain and compression specks are smaller).

numpy / OpenCV only. :func:`paint_figure` draws the rule on frames (docs/images/paint_rule.png).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from vbp_live.core.overlay import outline_band
from vbp_live.core.plot import grid, stack_rows, text_band

PAINT_BGR = (255, 0, 255)  # magenta: paint pixels in the figures
HORIZON_BGR = (255, 160, 0)


@dataclass(frozen=True)
class PaintRule:
    """Thresholds of the lane-paint colour rule (see the module docstring).

    Attributes:
        window: width of the local-road window, a fraction of the frame width (wider than a stripe).
        contrast: paint is at least this much brighter than the local road (``L`` levels) ...
        rel_contrast: ... and at least this fraction of the local road brightness brighter.
        white_chroma: largest chroma of white paint.
        yellow_b: smallest ``b - 128`` of yellow paint.
        road_chroma: largest chroma of the road's surroundings (asphalt and concrete are grey).
        road_low, road_high: asphalt brightness as a fraction of the reference.
        horizon_margin: rows skipped below the horizon, a fraction of the frame height (far away,
            where distant cars and rails crowd the road).
        min_blob: smallest paint blob, a fraction of the frame's pixels.
    """

    window: float = 0.1
    contrast: float = 25.0
    rel_contrast: float = 0.2
    white_chroma: float = 22.0
    yellow_b: float = 25.0
    road_chroma: float = 14.0
    road_low: float = 0.6
    road_high: float = 1.3
    horizon_margin: float = 0.03
    min_blob: float = 2e-5


def search_rows(height: int, band: tuple[int, int], horizon: float | None, rule: PaintRule) -> tuple[int, int]:
    """Rows ``(r0, r1)`` the rule looks at: the band's rows below the horizon (fraction of ``height``)."""
    r0, r1 = band
    if horizon is not None:
        r0 = max(r0, round((horizon + rule.horizon_margin) * height))
    return min(r0, r1), r1


def road_reference(lum: np.ndarray) -> float:
    """Asphalt brightness: median ``L`` of the bottom-centre patch of a band (rows, cols) = (last 25 %, 35-65 %)."""
    h, w = lum.shape
    patch = lum[h - max(1, h // 4):, int(w * 0.35): max(int(w * 0.65), int(w * 0.35) + 1)]
    return float(np.median(patch))


def asphalt(lum: np.ndarray, chroma: np.ndarray, rule: PaintRule) -> np.ndarray:
    """Bool (h, w): grey pixels of road brightness (relative to the bottom-centre reference)."""
    ref = max(road_reference(lum), 1.0)
    return (chroma <= rule.road_chroma) & (lum >= rule.road_low * ref) & (lum <= rule.road_high * ref)


def side_sums(values: np.ndarray, reach: int) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel, the sums of ``values`` over the ``reach`` pixels to its left and to its right (same row)."""
    h, w = values.shape
    c = np.zeros((h, w + 1), np.float64)
    np.cumsum(values, axis=1, out=c[:, 1:])  # c[:, x] = sum of columns < x
    x = np.arange(w)
    left = c[:, x] - c[:, np.clip(x - reach, 0, w)]  # columns x-reach .. x-1
    right = c[:, np.clip(x + 1 + reach, 0, w)] - c[:, x + 1]  # columns x+1 .. x+reach
    return left, right


def flanking_road(lum: np.ndarray, road: np.ndarray, reach: int) -> np.ndarray:
    """Local road brightness (h, w): the brighter of the mean asphalt ``L`` left and right; NaN without both."""
    n_left, n_right = side_sums(road.astype(np.float64), reach)
    s_left, s_right = side_sums(np.where(road, lum, 0.0), reach)
    with np.errstate(invalid="ignore", divide="ignore"):
        bg = np.maximum(s_left / n_left, s_right / n_right)
    return np.where((n_left > 0) & (n_right > 0), bg, np.nan)


def drop_specks(mask: np.ndarray, min_pixels: int) -> np.ndarray:
    """``mask`` without its 8-connected blobs smaller than ``min_pixels``."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    big = stats[:, cv2.CC_STAT_AREA] >= min_pixels
    big[0] = False  # the background
    return big[labels]


def paint_mask(frame: np.ndarray, band: tuple[int, int], horizon: float | None = None,
               rule: PaintRule | None = None) -> np.ndarray:
    """Lane-paint pixels of one frame by the colour rule.

    Args:
        frame: uint8 (H, W, 3) BGR (a gray frame finds white paint only).
        band: the crop band's rows ``(y0, y1)`` in pixels; nothing outside it is paint.
        horizon: the horizon row as a fraction of the height (None: the band's top).
        rule: thresholds (default :class:`PaintRule`).

    Returns:
        bool (H, W), True on paint.
    """
    rule = rule or PaintRule()
    bgr = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR) if frame.ndim == 2 else frame
    h, w = bgr.shape[:2]
    out = np.zeros((h, w), bool)
    r0, r1 = search_rows(h, band, horizon, rule)
    if r1 - r0 < 4:
        return out
    lab = cv2.cvtColor(bgr[r0:r1], cv2.COLOR_BGR2LAB).astype(np.float32)  # (h, w, 3)
    lum, a, b = lab[..., 0], lab[..., 1] - 128.0, lab[..., 2] - 128.0
    chroma = np.hypot(a, b)  # (h, w)
    bg = flanking_road(lum, asphalt(lum, chroma, rule), max(1, round(rule.window * w / 2)))  # (h, w)
    with np.errstate(invalid="ignore"):
        bright = lum >= bg + np.maximum(rule.contrast, rule.rel_contrast * bg)  # False where bg is NaN
    coloured = (chroma <= rule.white_chroma) | ((b >= rule.yellow_b) & (b > np.abs(a)))
    out[r0:r1] = drop_specks(bright & coloured, max(1, round(rule.min_blob * h * w)))
    return out


def draw_paint(frame: np.ndarray, paint: np.ndarray, box: tuple[int, int, int, int],
               horizon: float | None) -> np.ndarray:
    """The frame with paint pixels in magenta, the crop band outlined and the horizon as a line."""
    out = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR) if frame.ndim == 2 else frame.copy()
    out[paint] = PAINT_BGR
    outline_band(out, box, opacity=0.9)
    if horizon is not None:
        y = round(horizon * out.shape[0])
        cv2.line(out, (0, y), (out.shape[1] - 1, y), HORIZON_BGR, max(1, out.shape[0] // 270))
    return out


@dataclass
class PaintPanel:
    """One frame of the paint figure: the drawn frame and its caption."""

    image: np.ndarray
    caption: str


def paint_figure(panels: Sequence[PaintPanel], cols: int = 3, width: int = 480) -> np.ndarray:
    """Panels resized to ``width`` with their captions underneath, in a grid of ``cols`` columns."""
    cells = []
    for p in panels:
        scale = width / p.image.shape[1]
        im = cv2.resize(p.image, (width, round(p.image.shape[0] * scale)), interpolation=cv2.INTER_AREA)
        cells.append(stack_rows([im, text_band([p.caption], width, scale=0.42)]))
    return stack_rows(cells, pad=4) if cols == 1 else grid(cells, cols)  # one column: no padding to the tallest
