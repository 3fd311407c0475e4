"""Heads-up display for overlay frames: steering text, a steering-wheel glyph, frame index/time/fps.

numpy / OpenCV only. :class:`Hud` follows the annotator pattern: the style is set once in
``__init__`` and :meth:`Hud.annotate` draws one :class:`HudInfo` onto a frame in place.
Angles are steering *wheel* angles in radians (positive = left turn) and are shown in degrees;
the error is ``actual - predicted``.
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


def hud_lines(info: HudInfo, style: HudStyle) -> list[tuple[str, tuple[int, int, int]]]:
    """The text lines with their colours, top to bottom."""
    lines = [(f"pred  {math.degrees(info.pred_rad):+7.1f} deg", PRED_BGR)]
    if info.true_rad is not None:
        err = info.error_deg or 0.0
        lines.append((f"true  {math.degrees(info.true_rad):+7.1f} deg", TRUE_BGR))
        lines.append((f"error {err:+7.1f} deg", error_color(err, style)))
    status = f"#{info.index}  {info.time_s:6.2f} s"
    if info.fps is not None:
        status += f"  {info.fps:4.1f} fps"
    lines.append((status, WHITE))
    if info.note:
        lines.append((info.note, (0, 200, 255)))
    return lines


def _font_scale(frame: np.ndarray, style: HudStyle) -> float:
    return max(0.3, min(frame.shape[0] / 540.0, frame.shape[1] / 700.0) * 0.6 * style.scale)


def draw_panel(frame: np.ndarray, lines: list[tuple[str, tuple[int, int, int]]], scale: float, alpha: float) -> None:
    """Draw text lines top-left on a darkened box, in place."""
    thick = max(1, round(scale * 1.6))
    sizes = [cv2.getTextSize(t, FONT, scale, thick)[0] for t, _ in lines]
    pad, line_h = max(2, round(6 * scale)), max(h for _, h in sizes) + max(3, round(8 * scale))
    w = min(frame.shape[1], max(s[0] for s in sizes) + 2 * pad)
    h = min(frame.shape[0], line_h * len(lines) + pad)
    if alpha > 0:
        roi = frame[:h, :w]
        roi[:] = (roi.astype(np.float32) * (1.0 - alpha)).astype(np.uint8)
    for i, (text, color) in enumerate(lines):
        y = pad + line_h * i + sizes[i][1]
        cv2.putText(frame, text, (pad, y), FONT, scale, color, thick, cv2.LINE_AA)


def wheel_tip(center: tuple[int, int], radius: float, angle_rad: float) -> tuple[int, int]:
    """Rim point of the wheel's top marker turned by ``angle_rad`` (positive = left = counter-clockwise)."""
    return (round(center[0] - radius * math.sin(angle_rad)), round(center[1] - radius * math.cos(angle_rad)))


def _draw_spokes(
    frame: np.ndarray, c: tuple[int, int], r: int, angle: float, color: tuple[int, int, int], thick: int
) -> None:
    """One wheel position: a crossbar through the hub and a marker at the top of the rim, turned by ``angle``."""
    left, right = wheel_tip(c, r, angle + math.pi / 2), wheel_tip(c, r, angle - math.pi / 2)
    cv2.line(frame, left, right, color, thick, cv2.LINE_AA)
    cv2.line(frame, c, wheel_tip(c, r, angle), color, thick, cv2.LINE_AA)
    cv2.circle(frame, wheel_tip(c, r, angle), max(2, r // 6), color, -1, cv2.LINE_AA)


def draw_wheel(frame: np.ndarray, pred_rad: float, true_rad: float | None, scale: float) -> None:
    """A steering-wheel glyph at the top right: the predicted position and (if known) the actual one."""
    r = max(8, round(48 * scale))
    m = max(4, round(10 * scale))
    c = (frame.shape[1] - r - m, r + m)
    thick = max(1, round(2 * scale))
    cv2.circle(frame, c, r, WHITE, thick + 1, cv2.LINE_AA)
    if true_rad is not None:
        _draw_spokes(frame, c, r, true_rad, TRUE_BGR, thick + 2)
    _draw_spokes(frame, c, r, pred_rad, PRED_BGR, thick)


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
            draw_wheel(frame, info.pred_rad, info.true_rad, scale)
        return frame
