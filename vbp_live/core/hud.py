"""Heads-up display for overlay frames: steering text, a steering-wheel glyph, frame index/time/fps.

numpy / OpenCV only. :class:`Hud` follows the annotator pattern: the style is set once in
``__init__`` and :meth:`Hud.annotate` draws one :class:`HudInfo` onto a frame in place.
Angles are steering *wheel* angles in radians (positive = left turn, the project's convention:
``vbp_live.synth.vehicle``, the Udacity steering report) and are shown in degrees with the side
spelled out: ``pred 10.2° L``. The error is ``actual - predicted``: ``error 2.0° L`` means the
driver steered 2° further left than the network predicted. Sizes follow the frame height.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

FONT = cv2.FONT_HERSHEY_SIMPLEX
WHITE = (255, 255, 255)
PRED_BGR = (255, 200, 0)  # light blue: the network
TRUE_BGR = (60, 220, 60)  # green: the driver


@dataclass(frozen=True)
class HudInfo:
    """What one frame's HUD shows.

    Attributes:
        index: source frame index.
        time_s: time of the frame in seconds from the start of the source.
        pred_rad: predicted steering wheel angle (rad).
        true_rad: actual steering wheel angle (rad), or None where unknown.
        fps: current output rate, or None to hide it.
        note: an optional extra line (e.g. "PAUSED", "untrained net").
    """

    index: int
    time_s: float
    pred_rad: float
    true_rad: float | None = None
    fps: float | None = None
    note: str = ""

    @property
    def error_deg(self) -> float | None:
        """actual - predicted, in degrees (None without ground truth)."""
        return None if self.true_rad is None else math.degrees(self.true_rad - self.pred_rad)


@dataclass(frozen=True)
class HudStyle:
    """How the HUD looks.

    Attributes:
        glyph: draw the steering-wheel glyph (predicted vs actual).
        panel_alpha: darkness of the text panel (0 = no panel).
        scale: text size multiplier on top of the automatic size (from the frame height).
        error_warn_deg, error_bad_deg: error colour thresholds (green / yellow / red).
    """

    glyph: bool = True
    panel_alpha: float = 0.55
    scale: float = 1.0
    error_warn_deg: float = 1.0
    error_bad_deg: float = 5.0


def error_color(err_deg: float, style: HudStyle) -> tuple[int, int, int]:
    """Green below the warn threshold, yellow below the bad one, red above (BGR)."""
    a = abs(err_deg)
    if a < style.error_warn_deg:
        return (80, 230, 80)
    return (0, 220, 255) if a < style.error_bad_deg else (60, 60, 255)


STRAIGHT_DEG = 0.05  # |angle| below this is shown without a side


def angle_text(deg: float) -> str:
    """``10.2° L`` / ``3.0° R`` (positive = left) / ``0.0°`` for a wheel angle in degrees."""
    if abs(deg) < STRAIGHT_DEG:
        return f"{abs(deg):.1f}°"
    return f"{abs(deg):.1f}° {'L' if deg > 0 else 'R'}"


def hud_lines(info: HudInfo, style: HudStyle) -> list[tuple[str, tuple[int, int, int]]]:
    """The text lines with their colours, top to bottom."""
    lines = [(f"pred  {angle_text(math.degrees(info.pred_rad))}", PRED_BGR)]
    if info.true_rad is not None:
        err = info.error_deg or 0.0
        lines.append((f"true  {angle_text(math.degrees(info.true_rad))}", TRUE_BGR))
        lines.append((f"error {angle_text(err)}", error_color(err, style)))
    status = f"#{info.index}  {info.time_s:6.2f} s"
    if info.fps is not None:
        status += f"  {info.fps:4.1f} fps"
    lines.append((status, WHITE))
    if info.note:
        lines.append((info.note, (0, 200, 255)))
    return lines


def _font_scale(frame: np.ndarray, style: HudStyle) -> float:
    return max(0.35, min(frame.shape[0] / 540.0, frame.shape[1] / 720.0) * 0.7 * style.scale)


def _degree_radius(scale: float) -> int:
    return max(1, round(3.2 * scale))


def text_size(text: str, scale: float, thick: int) -> tuple[int, int]:
    """(width, height) of ``text`` as :func:`put_text` draws it (``°`` drawn as a small ring)."""
    parts = text.split("°")
    w = sum(cv2.getTextSize(p, FONT, scale, thick)[0][0] for p in parts if p)
    h = max(cv2.getTextSize(p or "0", FONT, scale, thick)[0][1] for p in parts)
    return w + (len(parts) - 1) * (2 * _degree_radius(scale) + thick + 2), h


def put_text(frame: np.ndarray, text: str, org: tuple[int, int], scale: float, color: tuple[int, int, int],
             thick: int) -> None:
    """``cv2.putText`` that also draws ``°`` (Hershey fonts have no degree sign), in place."""
    x, y = org
    r = _degree_radius(scale)
    cap = cv2.getTextSize("0", FONT, scale, thick)[0][1]
    parts = text.split("°")
    for i, part in enumerate(parts):
        if part:
            cv2.putText(frame, part, (x, y), FONT, scale, color, thick, cv2.LINE_AA)
            x += cv2.getTextSize(part, FONT, scale, thick)[0][0]
        if i < len(parts) - 1:
            cv2.circle(frame, (x + r + 1, y - cap + r), r, color, max(1, thick - 1), cv2.LINE_AA)
            x += 2 * r + thick + 2


def draw_panel(frame: np.ndarray, lines: list[tuple[str, tuple[int, int, int]]], scale: float, alpha: float) -> None:
    """Draw text lines top-left on a darkened box, in place."""
    thick = max(1, round(scale * 1.6))
    sizes = [text_size(t, scale, thick) for t, _ in lines]
    pad, line_h = max(2, round(6 * scale)), max(h for _, h in sizes) + max(3, round(8 * scale))
    w = min(frame.shape[1], max(s[0] for s in sizes) + 2 * pad)
    h = min(frame.shape[0], line_h * len(lines) + pad)
    if alpha > 0:
        roi = frame[:h, :w]
        roi[:] = (roi.astype(np.float32) * (1.0 - alpha)).astype(np.uint8)
    for i, (text, color) in enumerate(lines):
        y = pad + line_h * i + sizes[i][1]
        put_text(frame, text, (pad, y), scale, color, thick)


def wheel_tip(center: tuple[int, int], radius: float, angle_rad: float) -> tuple[int, int]:
    """Rim point of the wheel's top marker turned by ``angle_rad`` (positive = left = counter-clockwise)."""
    return (round(center[0] - radius * math.sin(angle_rad)), round(center[1] - radius * math.cos(angle_rad)))


def _draw_spokes(
    frame: np.ndarray, c: tuple[int, int], r: int, angle: float, color: tuple[int, int, int], thick: int
) -> None:
    """One wheel position: a crossbar through the hub and a spoke to the top marker, turned by ``angle``."""
    left, right = wheel_tip(c, r, angle + math.pi / 2), wheel_tip(c, r, angle - math.pi / 2)
    cv2.line(frame, left, right, color, thick, cv2.LINE_AA)
    cv2.line(frame, c, wheel_tip(c, r, angle), color, thick, cv2.LINE_AA)


def _draw_pointer(frame: np.ndarray, c: tuple[int, int], r: int, angle: float, color: tuple[int, int, int]) -> None:
    """A triangle outside the rim pointing in at ``angle`` (the actual position: never hidden by the spokes)."""
    size = max(4, r // 4)
    tip, base = wheel_tip(c, r + 2, angle), r + 2 + size
    sides = [wheel_tip(c, base, angle + size / base), wheel_tip(c, base, angle - size / base)]
    cv2.fillPoly(frame, [np.array([tip, *sides], np.int32)], color, cv2.LINE_AA)


def glyph_radius(frame: np.ndarray, scale: float = 1.0) -> int:
    """Wheel radius: 11 % of the frame height (at most 9 % of the width), at least 12 px."""
    h, w = frame.shape[:2]
    return max(12, round(min(0.11 * h, 0.09 * w) * scale))


def _darken_disc(frame: np.ndarray, c: tuple[int, int], radius: int, amount: float) -> None:
    """Darken a disc around ``c`` in place (only its bounding box is touched)."""
    y0, y1 = max(0, c[1] - radius - 1), min(frame.shape[0], c[1] + radius + 2)
    x0, x1 = max(0, c[0] - radius - 1), min(frame.shape[1], c[0] + radius + 2)
    roi = frame[y0:y1, x0:x1]
    disc = np.zeros(roi.shape[:2], np.uint8)
    cv2.circle(disc, (c[0] - x0, c[1] - y0), radius, 255, -1, cv2.LINE_AA)
    k = disc.astype(np.float32)[:, :, None] * np.float32(amount / 255.0)  # (h, w, 1)
    roi[:] = (roi * (1.0 - k) + 0.5).astype(np.uint8)


def draw_wheel(frame: np.ndarray, pred_rad: float, true_rad: float | None, scale: float = 1.0,
               err_color: tuple[int, int, int] = WHITE) -> None:
    """A steering-wheel glyph at the top right: the predicted wheel (light blue spokes and rim dot) and,
    if known, the actual position (a green pointer outside the rim) with the arc between them."""
    r = glyph_radius(frame, scale)
    m = max(4, r // 3)
    c = (frame.shape[1] - r - m - r // 4, r + m + r // 4)
    thick = max(1, round(r / 20))
    _darken_disc(frame, c, r + r // 4 + 2, 0.45)
    cv2.circle(frame, c, r, WHITE, thick + 1, cv2.LINE_AA)
    if true_rad is not None:
        a0, a1 = sorted((-90 - math.degrees(pred_rad), -90 - math.degrees(true_rad)))
        cv2.ellipse(frame, c, (r, r), 0, a0, a1, err_color, 2 * thick + 2, cv2.LINE_AA)
    _draw_spokes(frame, c, r, pred_rad, PRED_BGR, 2 * thick)
    cv2.circle(frame, wheel_tip(c, r, pred_rad), max(3, r // 7), PRED_BGR, -1, cv2.LINE_AA)
    if true_rad is not None:
        _draw_pointer(frame, c, r, true_rad, TRUE_BGR)


class Hud:
    """Draws the HUD onto BGR frames.

    Args:
        style: how it looks (see :class:`HudStyle`).

    Example:
        >>> Hud().annotate(frame, HudInfo(index=7, time_s=0.35, pred_rad=0.1, true_rad=0.12, fps=30.0))
    """

    def __init__(self, style: HudStyle | None = None):
        self.style = style or HudStyle()

    def annotate(self, frame: np.ndarray, info: HudInfo) -> np.ndarray:
        """Draw ``info`` onto ``frame`` (uint8 (H, W, 3) BGR, modified in place) and return it."""
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"the HUD draws on uint8 (H, W, 3) BGR frames, got {frame.dtype} {frame.shape}")
        scale = _font_scale(frame, self.style)
        draw_panel(frame, hud_lines(info, self.style), scale, self.style.panel_alpha)
        if self.style.glyph:
            err = info.error_deg
            draw_wheel(frame, info.pred_rad, info.true_rad, self.style.scale,
                       WHITE if err is None else error_color(err, self.style))
        return frame
