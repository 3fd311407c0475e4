"""Helpers for the streaming tests: tiny checkpoints, index-coded frames, video files; the MJPEG server."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from vbp_live.core.preprocess import CropSpec
from vbp_live.io.checkpoint import save_checkpoint
from vbp_live.io.mjpeg import MjpegServer  # noqa: F401  (re-exported for the tests)
from vbp_live.models import create_model

W, H = 320, 240
CROP = CropSpec(top=0.5, bottom=1.0, out_height=125, out_width=160)  # lower half of a 320x240 frame
BITS, BIT_ROWS = 8, (8, 48)  # the frame index, coded as 8 white/black blocks in rows 8..48


def tiny_checkpoint(path: Path, seed: int = 0) -> Path:
    """A small untrained NetSVF (1x125x160) with the lower-half crop, saved in the real format."""
    torch.manual_seed(seed)
    return save_checkpoint(path, create_model("netsvf", height=125, width=160), CROP)


def coded_frame(i: int, size: tuple[int, int] = (W, H)) -> np.ndarray:
    """A road-ish BGR frame whose top band encodes ``i`` (mod 256) in 8 blocks."""
    w, h = size
    img = np.full((h, w, 3), 90, np.uint8)
    cv2.line(img, (w // 2 - 10 - i % 40, h // 2), (w // 8, h), (255, 255, 255), 4)
    cv2.line(img, (w // 2 + 10, h // 2), (7 * w // 8 - i % 30, h), (0, 220, 255), 4)
    bw = w // BITS
    for b in range(BITS):
        on = (i >> b) & 1
        img[BIT_ROWS[0]:BIT_ROWS[1], b * bw + 4:(b + 1) * bw - 4] = 255 if on else 0
    return img


def decode_index(img: np.ndarray) -> int:
    """Read back the index coded by :func:`coded_frame` (robust to lossy codecs)."""
    bw = img.shape[1] // BITS
    band = img[BIT_ROWS[0] + 6:BIT_ROWS[1] - 6]
    return sum(int(band[:, b * bw + 10:(b + 1) * bw - 10].mean() > 128) << b for b in range(BITS))


def write_video(path: Path, n: int, fps: float = 15.0, fourcc: str = "mp4v") -> Path:
    """An index-coded video file written with OpenCV."""
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (W, H))
    assert w.isOpened(), f"cannot write {fourcc} to {path}"
    for i in range(n):
        w.write(coded_frame(i))
    w.release()
    return path


def read_video(path: Path) -> tuple[list[np.ndarray], float]:
    """All frames of a video and its stored fps."""
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened(), f"{path} does not open as a video"
    fps, frames = cap.get(cv2.CAP_PROP_FPS), []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    cap.release()
    return frames, fps


def jpeg(img: np.ndarray) -> bytes:
    """JPEG bytes of an image."""
    ok, buf = cv2.imencode(".jpg", img)
    assert ok
    return buf.tobytes()
