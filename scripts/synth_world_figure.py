#!/usr/bin/env python
"""Write docs/images/synth_randomized.png: one frame of 8 synthetic drives at ``--randomize 1``.

    python scripts/synth_world_figure.py [--out docs/images/synth_randomized.png] [--randomize 1]

Each tile is frame ``--frame`` of seeds 0..7 (the same frames ``vbp-live synth --seed S --randomize R``
writes), labelled with the seed, lane count, horizon row and field of view. Deterministic.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import cv2
import numpy as np

from vbp_live.synth import DriveConfig, Renderer, simulate_drive


def tile(seed: int, randomize: float, frame: int, size: tuple[int, int]) -> np.ndarray:
    """One labelled, resized frame of drive ``seed``."""
    drive = simulate_drive(DriveConfig(seed=seed, frames=frame + 1, randomize=randomize))
    img, _ = Renderer(drive).render(frame)
    w, cam = drive.world, drive.camera
    fov = math.degrees(2 * math.atan(cam.width / 2 / cam.focal_px))
    out = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
    text = f"seed {seed}: {w.lanes.count} lane(s), horizon {w.horizon_frac:.2f} H, {fov:.0f} deg"
    out[:22] = (out[:22] * 0.45).astype(np.uint8)
    cv2.putText(out, text, (6, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("docs/images/synth_randomized.png"))
    ap.add_argument("--randomize", type=float, default=1.0)
    ap.add_argument("--frame", type=int, default=260)
    ap.add_argument("--seeds", type=int, default=8)
    args = ap.parse_args()
    tiles = [tile(s, args.randomize, args.frame, (320, 240)) for s in range(args.seeds)]
    rows = [np.concatenate(tiles[k:k + 4], 1) for k in range(0, len(tiles), 4)]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    grid = np.concatenate(rows, 0) & 0xF8  # (H, W, 3): 32 levels per channel, so the PNG stays under 300 KB
    cv2.imwrite(str(args.out), grid, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
