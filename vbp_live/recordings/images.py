"""Turn recorded image payloads into uint8 arrays: JPEG/PNG bytes, raw ROS images, files.

Every failure raises :class:`ImageError` with the reason, so the caller can skip the frame,
count it and report it. Decoding runs in worker threads (OpenCV releases the GIL).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from vbp_live.core.errors import InputError


class ImageError(InputError):
    """An image could not be decoded (reason in the message)."""

    def __init__(self, message: str, reason: str = "corrupt_image"):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class RawImage:
    """A ``sensor_msgs/Image``: pixels as recorded, with ROS's encoding name."""

    height: int
    width: int
    encoding: str
    step: int
    data: np.ndarray  # (step * height,) uint8


Payload = bytes | memoryview | np.ndarray | RawImage | Path

# ROS encoding -> (channels, cv2 conversion to gray, cv2 conversion to BGR); None = as is.
# Bayer names follow cv_bridge (ROS "rggb" is OpenCV's "BayerBG").
_RAW: dict[str, tuple[int, int | None, int | None]] = {
    "mono8": (1, None, cv2.COLOR_GRAY2BGR),
    "8UC1": (1, None, cv2.COLOR_GRAY2BGR),
    "bgr8": (3, cv2.COLOR_BGR2GRAY, None),
    "8UC3": (3, cv2.COLOR_BGR2GRAY, None),
    "rgb8": (3, cv2.COLOR_RGB2GRAY, cv2.COLOR_RGB2BGR),
    "bgra8": (4, cv2.COLOR_BGRA2GRAY, cv2.COLOR_BGRA2BGR),
    "rgba8": (4, cv2.COLOR_RGBA2GRAY, cv2.COLOR_RGBA2BGR),
    "bayer_rggb8": (1, cv2.COLOR_BayerBG2GRAY, cv2.COLOR_BayerBG2BGR),
    "bayer_bggr8": (1, cv2.COLOR_BayerRG2GRAY, cv2.COLOR_BayerRG2BGR),
    "bayer_gbrg8": (1, cv2.COLOR_BayerGR2GRAY, cv2.COLOR_BayerGR2BGR),
    "bayer_grbg8": (1, cv2.COLOR_BayerGB2GRAY, cv2.COLOR_BayerGB2BGR),
}


def decode_payload(payload: Payload, gray: bool) -> np.ndarray:
    """Decode one payload to (H, W) gray or (H, W, 3) BGR uint8.

    Args:
        payload: encoded bytes (JPEG, PNG), a :class:`RawImage`, or an image file path.
        gray: decode to one gray channel (for JPEG: the luma plane, no colour conversion).
    """
    if isinstance(payload, RawImage):
        return raw_to_array(payload, gray)
    if isinstance(payload, Path):
        try:
            payload = payload.read_bytes()
        except FileNotFoundError:
            raise ImageError(f"{payload}: image file missing", "missing_image") from None
        except OSError as e:
            raise ImageError(f"{payload}: cannot read ({e.strerror})", "missing_image") from None
    return decode_bytes(np.frombuffer(payload, np.uint8), gray)


def decode_bytes(buf: np.ndarray, gray: bool) -> np.ndarray:
    """Decode JPEG/PNG bytes; a JPEG without its end marker counts as corrupt (cut short)."""
    if buf.size < 4:
        raise ImageError(f"image data too short ({buf.size} bytes)")
    if buf[0] == 0xFF and buf[1] == 0xD8 and not _has_jpeg_end(buf):
        raise ImageError("JPEG cut short (no end-of-image marker)")
    try:
        img = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE if gray else cv2.IMREAD_COLOR)
    except cv2.error as e:
        raise ImageError(f"undecodable image data ({buf.size} bytes): {str(e).strip().splitlines()[-1]}") from None
    if img is None:
        raise ImageError(f"undecodable image data ({buf.size} bytes, starts {bytes(buf[:4]).hex()})")
    return img


def _has_jpeg_end(buf: np.ndarray) -> bool:
    tail = bytes(buf[-32:]).rstrip(b"\x00")  # some encoders pad after the marker
    return tail.endswith(b"\xff\xd9")


def raw_to_array(img: RawImage, gray: bool) -> np.ndarray:
    """Convert a raw ROS image (8-bit encodings incl. Bayer) to gray or BGR."""
    if img.encoding not in _RAW:
        raise ImageError(f"unsupported raw image encoding {img.encoding!r}; supported: {sorted(_RAW)}")
    ch, to_gray, to_bgr = _RAW[img.encoding]
    need = img.step * img.height
    if img.height < 1 or img.width < 1 or img.step < img.width * ch or img.data.size < need:
        raise ImageError(f"raw image {img.width}x{img.height} step {img.step}: {img.data.size} bytes, need {need}")
    rows = np.asarray(img.data[:need], np.uint8).reshape(img.height, img.step)
    arr = rows[:, : img.width * ch].reshape(img.height, img.width, ch) if ch > 1 else rows[:, : img.width]
    code = to_gray if gray else to_bgr
    try:
        out = cv2.cvtColor(np.ascontiguousarray(arr), code) if code is not None else arr
    except cv2.error as e:
        raise ImageError(f"cannot convert raw {img.encoding} image: {str(e).strip().splitlines()[-1]}") from None
    return np.ascontiguousarray(out)
