"""A timeline strip along the bottom of a frame: predicted and actual steering over the last N seconds.

numpy / OpenCV only. :class:`Timeline` keeps the recent history (media time, predicted and
actual steering wheel angle in degrees, positive = left) and :meth:`Timeline.draw` paints it
onto a frame in place: the predicted angle in light blue, the actual one in green, the gap
between them (the error) shaded, left turns up, the newest frame at the right edge.
"""

from __future__ import annotations

import math
from collections import deque

import cv2
import numpy as np

from vbp_live.core.hud import PRED_BGR, TRUE_BGR, put_text

ERROR_BGR = (40, 110, 255)  # orange shading between them
MIN_RANGE_DEG = 5.0


class Timeline:
    """Recent predicted/actual steering, drawn as a strip.

    Args:
        seconds: how much history the strip shows.
        height_frac: strip height as a share of the frame height.
    """

    def __init__(self, seconds: float = 10.0, height_frac: float = 0.16):
        if seconds <= 0:
            raise ValueError(f"timeline seconds must be > 0, got {seconds}")
        self.seconds, self.height_frac = float(seconds), height_frac
        self.points: deque[tuple[float, float, float | None]] = deque()

    def reset(self) -> None:
        """Forget the history."""
        self.points.clear()

    def add(self, time_s: float, pred_deg: float, true_deg: float | None) -> None:
        """One frame: its media time and the angles in degrees (``true_deg`` None where unknown)."""
        if self.points and time_s < self.points[-1][0]:
            self.reset()  # time went back: a new source or a loop
        self.points.append((time_s, pred_deg, true_deg))
        while self.points and self.points[0][0] < time_s - self.seconds:
            self.points.popleft()

    def box(self, frame: np.ndarray) -> tuple[int, int, int, int]:
        """The strip's (y0, y1, x0, x1) on ``frame``."""
        h, w = frame.shape[:2]
        sh = max(24, round(h * self.height_frac))
        return h - sh, h, 0, w

    def draw(self, frame: np.ndarray) -> np.ndarray:
        """Paint the strip onto uint8 (H, W, 3) BGR ``frame`` in place; returns it."""
        y0, y1, x0, x1 = self.box(frame)
        roi = frame[y0:y1, x0:x1]
        roi[:] = (roi.astype(np.float32) * 0.35).astype(np.uint8)
        if not self.points:
            return frame
        t_end = self.points[-1][0]
        vals = [abs(v) for _, p, a in self.points for v in (p, a) if v is not None]
        rng = max(MIN_RANGE_DEG, max(vals)) * 1.1
        h, w = roi.shape[:2]
        pad = max(2, h // 10)
        xs = np.array([round((w - 1) * (1 - (t_end - t) / self.seconds)) for t, _, _ in self.points], np.int32)

        def y_of(v: float) -> int:
            return round(pad + (h - 1 - 2 * pad) * (0.5 - 0.5 * v / rng))

        thick = max(1, round(h / 40))
        cv2.line(roi, (0, y_of(0.0)), (w - 1, y_of(0.0)), (120, 120, 120), 1, cv2.LINE_AA)
        self._shade(roi, xs, y_of)
        pred = np.array([[x, y_of(p)] for x, (_, p, _) in zip(xs, self.points, strict=True)], np.int32)
        truth = [[x, y_of(a)] for x, (_, _, a) in zip(xs, self.points, strict=True) if a is not None]
        if len(truth) > 1:
            cv2.polylines(roi, [np.array(truth, np.int32)], False, TRUE_BGR, thick + 1, cv2.LINE_AA)
        cv2.polylines(roi, [pred], False, PRED_BGR, thick, cv2.LINE_AA)
        self._labels(roi, rng)
        return frame

    def _shade(self, roi: np.ndarray, xs: np.ndarray, y_of) -> None:
        """Shade between predicted and actual wherever both are known (the error)."""
        layer = roi.copy()
        pts = list(self.points)
        for i in range(len(pts) - 1):
            (_, p0, a0), (_, p1, a1) = pts[i], pts[i + 1]
            if a0 is None or a1 is None:
                continue
            quad = np.array([[xs[i], y_of(p0)], [xs[i + 1], y_of(p1)], [xs[i + 1], y_of(a1)], [xs[i], y_of(a0)]],
                            np.int32)
            cv2.fillPoly(layer, [quad], ERROR_BGR, cv2.LINE_AA)
        cv2.addWeighted(layer, 0.45, roi, 0.55, 0.0, dst=roi)

    def _labels(self, roi: np.ndarray, rng: float) -> None:
        """``L`` at the top, ``R`` at the bottom, the range and the span at the left."""
        h = roi.shape[0]
        scale = max(0.3, h / 160)
        thick = max(1, round(scale * 1.5))
        th = cv2.getTextSize("L", cv2.FONT_HERSHEY_SIMPLEX, scale, thick)[0][1]
        put_text(roi, f"L {math.ceil(rng)}°", (3, th + 2), scale, (220, 220, 220), thick)
        put_text(roi, f"R {math.ceil(rng)}°   last {self.seconds:g} s", (3, h - 3), scale, (220, 220, 220), thick)
