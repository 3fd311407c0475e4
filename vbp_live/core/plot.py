"""Figure building blocks drawn with OpenCV (matplotlib is not a dependency): text bands, image
grids and line charts. numpy / OpenCV only; every function returns a new uint8 BGR image.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

FONT = cv2.FONT_HERSHEY_SIMPLEX
BG = (255, 255, 255)
INK = (30, 30, 30)
GRID = (225, 225, 225)
# Distinguishable BGR colours for up to 10 series (tab10-like).
PALETTE = [(180, 119, 31), (14, 127, 255), (44, 160, 44), (40, 39, 214), (189, 103, 148),
           (75, 86, 140), (194, 119, 227), (127, 127, 127), (34, 189, 188), (207, 190, 23)]


def text_band(lines: Sequence[str], width: int, scale: float = 0.5, fg: tuple[int, int, int] = INK,
              bg: tuple[int, int, int] = BG) -> np.ndarray:
    """A ``width``-wide band with one text line per entry (ASCII; Hershey fonts have no Greek)."""
    thick = 1
    line_h = int(cv2.getTextSize("Ag", FONT, scale, thick)[0][1] * 1.9) + 2
    band = np.full((line_h * max(len(lines), 1) + 6, width, 3), bg, np.uint8)
    for i, text in enumerate(lines):
        cv2.putText(band, text, (6, 4 + line_h * (i + 1) - line_h // 4), FONT, scale, fg, thick, cv2.LINE_AA)
    return band


def stack_rows(images: Sequence[np.ndarray], pad: int = 0, bg: tuple[int, int, int] = BG) -> np.ndarray:
    """Stack images vertically (widths padded to the widest)."""
    w = max(im.shape[1] for im in images)
    rows = []
    for im in images:
        row = np.full((im.shape[0] + pad, w, 3), bg, np.uint8)
        row[: im.shape[0], : im.shape[1]] = im
        rows.append(row)
    return np.concatenate(rows, 0)


def grid(images: Sequence[np.ndarray], cols: int, pad: int = 4, bg: tuple[int, int, int] = BG) -> np.ndarray:
    """Tile images row-major into ``cols`` columns with ``pad`` pixels between cells."""
    if not images:
        raise ValueError("grid needs at least one image")
    cols = max(1, min(cols, len(images)))
    ch = max(im.shape[0] for im in images)
    cw = max(im.shape[1] for im in images)
    rows = math.ceil(len(images) / cols)
    out = np.full((rows * (ch + pad) + pad, cols * (cw + pad) + pad, 3), bg, np.uint8)
    for k, im in enumerate(images):
        r, c = divmod(k, cols)
        y, x = pad + r * (ch + pad), pad + c * (cw + pad)
        out[y:y + im.shape[0], x:x + im.shape[1]] = im
    return out


def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if not math.isfinite(lo) or not math.isfinite(hi) or hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = min((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), default=raw)
    start = math.ceil(lo / step) * step
    return [start + k * step for k in range(int((hi - start) / step + 1e-9) + 1)]


def line_chart(series: dict[str, tuple[Sequence[float], Sequence[float]]], title: str, xlabel: str, ylabel: str,
               size: tuple[int, int] = (720, 440)) -> np.ndarray:
    """A line chart of ``{label: (xs, ys)}`` with axes, ticks and a legend. NaNs break lines."""
    w, h = size
    img = np.full((h, w, 3), BG, np.uint8)
    left, right, top, bottom = 70, 190, 46, 50
    pw, ph = w - left - right, h - top - bottom
    xs_all = np.concatenate([np.asarray(x, float) for x, _ in series.values()]) if series else np.zeros(1)
    ys_all = np.concatenate([np.asarray(y, float) for _, y in series.values()]) if series else np.zeros(1)
    ys_fin = ys_all[np.isfinite(ys_all)]
    x0, x1 = float(np.nanmin(xs_all)), float(np.nanmax(xs_all))
    y0, y1 = (float(ys_fin.min()), float(ys_fin.max())) if ys_fin.size else (0.0, 1.0)
    x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 1)
    y0, y1 = y0 - 0.04 * (y1 - y0), y1 + 0.04 * (y1 - y0)

    def px(x: float, y: float) -> tuple[int, int]:
        return int(left + (x - x0) / (x1 - x0) * pw), int(top + ph - (y - y0) / (y1 - y0) * ph)

    for t in _nice_ticks(y0, y1):
        _, yy = px(x0, t)
        cv2.line(img, (left, yy), (left + pw, yy), GRID, 1)
        cv2.putText(img, f"{t:.3g}", (4, yy + 4), FONT, 0.4, INK, 1, cv2.LINE_AA)
    for t in _nice_ticks(x0, x1):
        xx, _ = px(t, y0)
        cv2.line(img, (xx, top), (xx, top + ph), GRID, 1)
        cv2.putText(img, f"{t:.3g}", (xx - 10, top + ph + 16), FONT, 0.4, INK, 1, cv2.LINE_AA)
    cv2.rectangle(img, (left, top), (left + pw, top + ph), INK, 1)
    for k, (label, (xs, ys)) in enumerate(series.items()):
        color = PALETTE[k % len(PALETTE)]
        pts = [px(x, y) if math.isfinite(y) else None for x, y in zip(map(float, xs), map(float, ys), strict=True)]
        for a, b in zip(pts[:-1], pts[1:], strict=False):
            if a is not None and b is not None:
                cv2.line(img, a, b, color, 2, cv2.LINE_AA)
        ly = top + 14 + 18 * k
        cv2.line(img, (left + pw + 12, ly - 4), (left + pw + 36, ly - 4), color, 2, cv2.LINE_AA)
        cv2.putText(img, label[:22], (left + pw + 42, ly), FONT, 0.42, INK, 1, cv2.LINE_AA)
    cv2.putText(img, title, (8, 20), FONT, 0.55, INK, 1, cv2.LINE_AA)
    cv2.putText(img, xlabel, (left + pw // 2 - 4 * len(xlabel), h - 12), FONT, 0.45, INK, 1, cv2.LINE_AA)
    cv2.putText(img, ylabel, (4, top - 8), FONT, 0.42, INK, 1, cv2.LINE_AA)
    return img
