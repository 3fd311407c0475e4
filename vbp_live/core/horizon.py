"""Where the horizon is in a camera's frames, from the vanishing point of the lane lines.

A model's crop band is chosen for one camera's horizon (``CropSpec.horizon``); ``vbp-live run
--horizon auto`` moves it to the video's own (``CropSpec.at_horizon``). The estimate: on each
frame, the longest straight edges below the top third that lean like lane lines (20-70 degrees
from the horizontal, left ones one way, right ones the other) are intersected pairwise, left with
right; the horizon row is the median row of those crossings over all the frames. On a straight or
gently curving road the lane lines meet at the horizon; curves, cars and shadows add scattered
crossings that the median ignores.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

import cv2
import numpy as np

log = logging.getLogger(__name__)

SEARCH_TOP = 0.35  # lines are looked for below this row (fraction of the height): the sky has none
LEAN_DEG = (20.0, 70.0)  # lane lines lean this much from the horizontal in a forward camera
LINES_PER_SIDE = 5  # the longest lines of each side that are intersected
MIN_CROSSINGS = 20  # fewer crossings over all frames: no estimate


@dataclass(frozen=True)
class HorizonEstimate:
    """The horizon row (fraction of the frame height, 0 = top) and the evidence for it."""

    row: float | None  # None: too few lane-line crossings to say
    crossings: int  # pairs of lane lines that met inside the frame
    frames: int  # frames looked at
    spread: float  # interquartile range of the crossing rows (fraction of the height)


def _lines(gray: np.ndarray) -> np.ndarray:
    """Straight edges below SEARCH_TOP as ``(n, 4)`` float rows ``x1, y1, x2, y2`` in frame pixels."""
    h = gray.shape[0]
    y0 = int(SEARCH_TOP * h)
    edges = cv2.Canny(cv2.GaussianBlur(gray[y0:], (5, 5), 0), 60, 150)  # (h - y0, w) uint8
    found = cv2.HoughLinesP(edges, 1, np.pi / 180, 40, minLineLength=max(8, h // 12), maxLineGap=max(2, h // 40))
    if found is None:
        return np.zeros((0, 4))
    lines = found.reshape(-1, 4).astype(np.float64)  # (n, 4)
    lines[:, [1, 3]] += y0
    return lines


def crossing_rows(image: np.ndarray) -> list[float]:
    """Rows (fractions of the height) where a left-leaning and a right-leaning lane line of one frame meet."""
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image  # (h, w) uint8
    h, w = gray.shape
    sides: dict[bool, list[tuple[float, float, float]]] = {True: [], False: []}  # slope < 0 -> (slope, b, length)
    for x1, y1, x2, y2 in _lines(gray):
        if x1 == x2:
            continue
        slope = (y2 - y1) / (x2 - x1)
        if LEAN_DEG[0] <= np.degrees(np.arctan(abs(slope))) <= LEAN_DEG[1]:
            sides[slope < 0].append((slope, y1 - slope * x1, float(np.hypot(x2 - x1, y2 - y1))))
    left, right = (sorted(sides[k], key=lambda t: -t[2])[:LINES_PER_SIDE] for k in (True, False))
    rows = []
    for a1, b1, _ in left:
        for a2, b2, _ in right:
            x = (b2 - b1) / (a1 - a2)
            y = a1 * x + b1
            if 0 <= x < w and 0.2 * h < y < 0.8 * h:
                rows.append(y / h)
    return rows


def estimate_horizon(frames: Iterable[np.ndarray]) -> HorizonEstimate:
    """The horizon row of a camera from some of its frames (BGR or gray uint8, any size).

    Ten to sixty frames spread over a drive are plenty; the result is ``row=None`` when the lane
    lines crossed fewer than ``MIN_CROSSINGS`` times (no visible lane lines, e.g. a city street).
    """
    rows: list[float] = []
    n = 0
    for image in frames:
        rows += crossing_rows(image)
        n += 1
    if len(rows) < MIN_CROSSINGS:
        log.info("horizon: %d lane-line crossings in %d frames, too few to estimate", len(rows), n)
        return HorizonEstimate(None, len(rows), n, float("nan"))
    q1, mid, q3 = np.percentile(rows, [25, 50, 75])
    return HorizonEstimate(round(float(mid), 4), len(rows), n, float(q3 - q1))
