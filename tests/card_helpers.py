"""Model-card test helpers: a simulator-style card body and simulator-like frames."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import cv2
import numpy as np

# Udacity simulator style: rows 60:-25 of 160x320, YUV, x/127.5-1, output normalized ±1 = ±25° road wheel, + = right
SIM_INPUT = """\
input:
  height: 66
  width: 200
  color: yuv
  crop: {units: pixel, top: 60, bottom: -25}
  interpolation: linear
  scaling: x/127.5-1
output:
  unit: normalized
  full_scale_deg: 25
  angle: road_wheel
  steering_ratio: 14.8
  positive: right
"""
SIM_SCALE = -math.radians(25) * 14.8


def write_card(folder: Path, head: str, body: str = SIM_INPUT, name: str = "card.yaml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(head) + body)
    return path


def sim_frames(n: int = 3) -> list[np.ndarray]:
    """Simulator-like 160x320 BGR frames: sky, a grey road with lane lines that curve, grass."""
    out = []
    for i in range(n):
        img = np.zeros((160, 320, 3), np.uint8)
        img[:70] = (200, 170, 120)
        img[70:] = (60, 120, 60)
        road = np.array([[160 - 20 + 8 * i, 70], [160 + 20 + 8 * i, 70], [300, 160], [20, 160]], np.int32)
        cv2.fillPoly(img, [road], (110, 110, 110))
        cv2.line(img, (160 + 8 * i, 70), (160 - 30 * i, 160), (230, 230, 230), 3)
        out.append(img)
    return out
