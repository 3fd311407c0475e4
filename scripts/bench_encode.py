#!/usr/bin/env python
"""Encode cost per frame: H.264 through PyAV (the default writer) vs mp4v and MJPG through OpenCV.

Real overlay-like frames: the first ``--frames`` frames of a real dashcam clip (default
``../shared/data/video/hough-lane-detection_highway.mp4``, 960x540), each with a red band drawn
on it, written by :class:`~vbp_live.io.sinks.VideoFileSink` (temporary name, rename), so the figure
is what ``vbp-live run`` pays per frame in its writer stage. Each codec is timed ``--repeats``
times, round-robin, and the fastest repeat is kept (other processes only add time). Prints a
Markdown table: ms per frame, frames per second, and bytes per frame.

    python scripts/bench_encode.py                        # 60 frames, 3 repeats
    python scripts/bench_encode.py --frames 30 --repeats 2 --threads 1
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from vbp_live.io.sinks import VideoFileSink
from vbp_live.io.video_writer import H264_OPTIONS, h264_encoder

ROOT = Path(__file__).resolve().parents[1]
CODECS = (("h264", ".mp4"), ("mp4v", ".mp4"), ("mjpg", ".avi"))


def default_video() -> Path:
    """The autobahn clip from the shared real data (``$VBP_SHARED_DIR`` or ``shared/`` beside the checkout)."""
    name = Path("data") / "video" / "hough-lane-detection_highway.mp4"
    if os.environ.get("VBP_SHARED_DIR"):
        return Path(os.environ["VBP_SHARED_DIR"]) / name
    for base in (ROOT, *ROOT.parents):
        if (base / "shared" / "data").is_dir():
            return base / "shared" / name
    return ROOT.parent / "shared" / name


def overlay_frames(path: Path, n: int) -> list[np.ndarray]:
    """The first ``n`` frames of ``path`` with a red tint on the lower band (like an overlay)."""
    cap = cv2.VideoCapture(str(path))
    frames = []
    while len(frames) < n:
        ok, img = cap.read()
        if not ok:
            break
        y0, y1 = int(img.shape[0] * 0.55), int(img.shape[0] * 0.81)
        img[y0:y1, :, 2] = np.maximum(img[y0:y1, :, 2], 200)
        frames.append(img)
    cap.release()
    if not frames:
        raise SystemExit(f"{path}: no frames")
    return frames


def time_codec(frames: list[np.ndarray], codec: str, suffix: str, folder: Path) -> tuple[float, int]:
    """Seconds to write every frame (open to rename) and the file's size in bytes."""
    out = folder / f"bench_{codec}{suffix}"
    t0 = time.perf_counter()
    with VideoFileSink(out, 30.0, codec) as sink:
        for i, f in enumerate(frames):
            sink.write(f, i)
    dt = time.perf_counter() - t0
    size = out.stat().st_size
    out.unlink()
    return dt, size


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--video", type=Path, default=default_video())
    ap.add_argument("--frames", type=int, default=60, help="frames per repeat (default: %(default)s)")
    ap.add_argument("--repeats", type=int, default=3, help="timed repeats per codec (default: %(default)s)")
    ap.add_argument("--threads", type=int, default=None, help="OpenCV threads (default: OpenCV's)")
    args = ap.parse_args(argv)
    if args.threads is not None:
        cv2.setNumThreads(args.threads)
    frames = overlay_frames(args.video, args.frames)
    codecs = [(c, s) for c, s in CODECS if c != "h264" or h264_encoder()]
    best: dict[str, tuple[float, int]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        time_codec(frames[:5], "mp4v", ".mp4", Path(tmp))  # warm-up: imports, first open
        for _ in range(args.repeats):
            for codec, suffix in codecs:
                dt, size = time_codec(frames, codec, suffix, Path(tmp))
                if codec not in best or dt < best[codec][0]:
                    best[codec] = (dt, size)
    h, w = frames[0].shape[:2]
    print(f"{len(frames)} frames {w}x{h} from {args.video.name}, fastest of {args.repeats}; "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, OpenCV {cv2.__version__}, "
          f"PyAV H.264 {h264_encoder() or 'missing'} {H264_OPTIONS}")
    print("| codec | ms/frame | frames/s | KB/frame |")
    print("|---|---|---|---|")
    for codec, (dt, size) in best.items():
        ms = 1000 * dt / len(frames)
        print(f"| {codec} | {ms:.2f} | {1000 / ms:.0f} | {size / len(frames) / 1000:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
