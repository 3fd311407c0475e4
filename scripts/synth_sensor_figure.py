#!/usr/bin/env python
"""Before/after figure of the synthetic camera and sensor effects, and their cost per frame.

Renders one frame of an unrandomized drive, then applies ``sample_sensor(seed, 1.0)`` (roll,
barrel distortion, motion blur, vignetting, white balance, exposure, noise, JPEG) to it and to
its masks. The figure is 2 x 2: the frame before (left) and after (right) at half size, and
below each a 1:1 crop of the road ahead with the outlines of the lane-marking (yellow) and road
(blue) masks, to show the noise and compression and that the masks move with the pixels. It
prints the drawn parameters, and with ``--time`` the CPU time per frame of ``apply_sensor`` at
640x480 (one OpenCV thread, mean over 200 frames, tables built beforehand).

    python scripts/synth_sensor_figure.py                       # writes docs/images/synth_sensor.png
    python scripts/synth_sensor_figure.py --seed 5 --frame 120 --out /tmp/s.png --time
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np

from vbp_live.synth import DriveConfig, Renderer, simulate_drive
from vbp_live.synth.sensor import apply_sensor, sample_sensor

LANE, ROAD = (0, 230, 255), (255, 140, 0)  # BGR


def _outline(img: np.ndarray, masks: list[tuple[np.ndarray, tuple[int, int, int]]]) -> np.ndarray:
    """The masks' outlines (1 px) drawn over ``img``."""
    out = img.copy()
    for mask, color in masks:
        m = mask.astype(np.uint8)
        out[(m - cv2.erode(m, np.ones((3, 3), np.uint8))).astype(bool)] = color
    return out


def _label(img: np.ndarray, text: str) -> np.ndarray:
    img = img.copy()
    (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)
    cv2.rectangle(img, (0, 0), (tw + 10, th + 10), (0, 0, 0), -1)
    cv2.putText(img, text, (5, th + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return img


def figure(seed: int, frame_index: int) -> np.ndarray:
    """Top: both frames at half size; bottom: 1:1 crops of the road ahead with the lane and road mask outlines."""
    drive = simulate_drive(DriveConfig(seed=seed, frames=frame_index + 1))
    frame, gt = Renderer(drive).render(frame_index)
    params = sample_sensor(seed, 1.0)
    print(params)
    speed = float(drive.speed[frame_index])
    after, masks = apply_sensor(frame, gt.stack(), params, frame_index, speed)
    h, w = frame.shape[:2]
    top = [cv2.resize(p, (w // 2, h // 2), interpolation=cv2.INTER_AREA) for p in (frame, after)]
    top = [_label(top[0], "rendered"), _label(top[1], f"camera + sensor (randomize 1, {speed:.0f} m/s)")]
    r0, c0 = int(0.42 * h), w // 4
    crops = [_outline(img, [(road, ROAD), (lane, LANE)])[r0:r0 + h // 2, c0:c0 + w // 2]
             for img, lane, road in ((frame, gt.lane, gt.road), (after, masks[0], masks[4]))]
    crops = [_label(crops[0], "1:1, mask outlines"), _label(crops[1], "1:1, masks warped with the frame")]
    return np.concatenate([np.concatenate(top, 1), np.concatenate(crops, 1)], 0)


def time_per_frame(seed: int, n: int = 200) -> None:
    """Print the CPU time of ``apply_sensor`` per 640x480 frame (5 masks), at 0 and 15 m/s."""
    cv2.setNumThreads(1)
    rng = np.random.default_rng(0)
    frame = cv2.GaussianBlur(rng.integers(40, 220, (480, 640, 3), dtype=np.uint8), (7, 7), 2)
    masks = rng.random((5, 480, 640)) > 0.7
    params = sample_sensor(seed, 1.0)
    for speed in (0.0, 15.0):
        apply_sensor(frame, masks, params, 0, speed)  # builds the per-drive tables
        c0 = time.process_time()
        for i in range(n):
            apply_sensor(frame, masks, params, i, speed)
        print(f"apply_sensor at {speed:4.1f} m/s: {(time.process_time() - c0) / n * 1e3:.2f} ms CPU per frame")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=49)
    ap.add_argument("--frame", type=int, default=240)
    ap.add_argument("--out", type=Path, default=Path("docs/images/synth_sensor.png"))
    ap.add_argument("--time", action="store_true", help="also print the cost per frame")
    args = ap.parse_args()
    img = figure(args.seed, args.frame)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), img)
    print(f"wrote {args.out} ({img.shape[1]}x{img.shape[0]})")
    if args.time:
        time_per_frame(args.seed)


if __name__ == "__main__":
    main()
