#!/usr/bin/env python
"""Paper rendering vs the default overlay on real dashcam video: side-by-side figures and measurements.

For every video in ``--videos`` (default ``../shared/data/video``) the shipped model runs on the
first ``--frames`` frames; each render mode (``paper``: per-frame min-max in red, as the paper
drew it; ``frame``: percentile scale per frame; ``temporal``: that scale smoothed over time, the
default) draws the same masks, and the script prints per video and mode:

- ``mass visible``: share of the mask's mass drawn with a visible tint (blend weight >= 0.15),
- ``band tinted``: share of the crop band's pixels with a visible tint,
- ``flicker``: mean absolute frame-to-frame change of the drawn blend weight per pixel, and the
  same relative to the mean weight drawn.

A static scene (the video's first frame repeated with camera-like noise, sigma 2 gray levels)
measures the flicker the normalization itself adds. It writes ``<video>_paper_vs_default.jpg``
(paper left, default right, HUD included) into ``--out`` (default ``docs/images``).

    python scripts/overlay_figures.py
    python scripts/overlay_figures.py --frames 60 --out /tmp/figs --threads 1
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

from vbp_live.core.hud import HudStyle
from vbp_live.core.overlay import MaskStyle
from vbp_live.io.frames import FrameRecord
from vbp_live.stream.engine import OverlayEngine, Prediction
from vbp_live.stream.render import OverlayRenderer, raw_mask
from vbp_live.stream.session import shipped_checkpoint

ROOT = Path(__file__).resolve().parents[1]
MODES = ("paper", "frame", "temporal")


def shared_videos() -> Path:
    """``$VBP_SHARED_DIR/data/video``, else ``shared/data/video`` beside the checkout or a folder above it."""
    if os.environ.get("VBP_SHARED_DIR"):
        return Path(os.environ["VBP_SHARED_DIR"]) / "data" / "video"
    for base in (ROOT, *ROOT.parents):
        if (base / "shared" / "data").is_dir():
            return base / "shared" / "data" / "video"
    return ROOT.parent / "shared" / "data" / "video"


def read_frames(path: Path, limit: int) -> tuple[list[np.ndarray], float]:
    """The first ``limit`` frames of a video and its frame rate."""
    cap = cv2.VideoCapture(str(path))
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    frames = []
    while len(frames) < limit:
        ok, img = cap.read()
        if not ok:
            break
        frames.append(img)
    cap.release()
    return frames, fps


def infer_all(engine: OverlayEngine, frames: list[np.ndarray], batch: int = 4) -> list[Prediction]:
    """Predictions for every frame, in batches."""
    out: list[Prediction] = []
    for i in range(0, len(frames), batch):
        out.extend(engine.infer(frames[i:i + batch]))
    return out


def style_for(mode: str) -> MaskStyle:
    """The mask style of a mode: the paper's alpha 0.7, red; the defaults otherwise."""
    return MaskStyle(mode=mode)


def measure(engine: OverlayEngine, frames: list[np.ndarray], preds: list[Prediction], fps: float,
            mode: str) -> dict:
    """Render every frame in ``mode`` (no HUD) and return the renderer's flicker/visibility summary."""
    r = OverlayRenderer(engine.crop, None, mask_style=style_for(mode))
    for i, (img, p) in enumerate(zip(frames, preds, strict=True)):
        r.overlay(FrameRecord(i, i / fps, img), raw_mask(p))
    return r.summary()


def static_scene(frame: np.ndarray, n: int, seed: int = 0) -> list[np.ndarray]:
    """``frame`` repeated ``n`` times with independent Gaussian noise (sigma 2 levels), like a still camera."""
    rng = np.random.default_rng(seed)
    return [np.clip(frame + rng.normal(0, 2.0, frame.shape), 0, 255).astype(np.uint8) for _ in range(n)]


def side_by_side(engine: OverlayEngine, frames: list[np.ndarray], preds: list[Prediction], fps: float,
                 index: int, width: int) -> np.ndarray:
    """Paper (left) and default (right) renders of frame ``index`` with the HUD, ``width`` pixels wide."""
    panels = []
    for mode in ("paper", "temporal"):
        r = OverlayRenderer(engine.crop, HudStyle(), mask_style=style_for(mode), note=f"--render {mode}")
        for i in range(index + 1):  # the temporal scale as it stands at this frame
            out = r.render(FrameRecord(i, i / fps, frames[i]), preds[i], fps=None)
        panels.append(out)
    gap = np.full((panels[0].shape[0], 8, 3), 255, np.uint8)
    fig = np.concatenate([panels[0], gap, panels[1]], axis=1)
    f = width / fig.shape[1]
    return cv2.resize(fig, (width, round(fig.shape[0] * f)), interpolation=cv2.INTER_AREA)


def write_jpg(path: Path, img: np.ndarray, max_bytes: int = 300_000) -> int:
    """Write a JPEG under ``max_bytes`` (quality lowered as needed); returns its size."""
    for q in (88, 80, 72, 64, 56):
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, q])
        if ok and buf.size <= max_bytes:
            break
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.tobytes())
    return int(buf.size)


def report_row(video: str, scene: str, mode: str, s: dict) -> str:
    return (f"| {video} | {scene} | {mode} | {100 * s['mass_visible']:.1f} % | {100 * s['band_tinted']:.1f} % "
            f"| {s['flicker']:.4f} | {s['relative_flicker']:.3f} |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", type=Path, default=shared_videos())
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    ap.add_argument("--frames", type=int, default=150, help="frames per video (default: %(default)s)")
    ap.add_argument("--static", type=int, default=40, help="frames of the static scene (default: %(default)s)")
    ap.add_argument("--width", type=int, default=1280, help="figure width in pixels (default: %(default)s)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: %(default)s)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    videos = sorted(args.videos.glob("*.mp4"))
    if not videos:
        print(f"no .mp4 in {args.videos}", file=sys.stderr)
        return 1
    engine = OverlayEngine.from_checkpoint(shipped_checkpoint(), device="cpu")
    print("| video | scene | mode | mass visible | band tinted | flicker | relative flicker |")
    print("|---|---|---|---|---|---|---|")
    for path in videos:
        frames, fps = read_frames(path, args.frames)
        preds = infer_all(engine, frames)
        still = static_scene(frames[0], args.static)
        still_preds = infer_all(engine, still)
        for mode in MODES:
            print(report_row(path.stem, f"{len(frames)} frames", mode, measure(engine, frames, preds, fps, mode)))
        for mode in MODES:
            print(report_row(path.stem, "static + noise", mode, measure(engine, still, still_preds, fps, mode)))
        fig = side_by_side(engine, frames, preds, fps, min(len(frames) - 1, len(frames) // 2), args.width)
        out = args.out / f"{path.stem}_paper_vs_default.jpg"
        print(f"wrote {out} ({write_jpg(out, fig) // 1000} KB)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
