"""The one crop / grayscale / resize step shared by data preparation, training and streaming.

A :class:`CropSpec` names a band of the source frame in *fractions* of its height and width (so
the same spec serves 640×480 Udacity frames, 320×160 simulator frames and 960×540 dashcams) and
the network's input size. :func:`preprocess_frame` applies it; :func:`mask_to_frame` maps a
mask computed on the network input back onto the full-resolution frame.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import cv2
import numpy as np

INPUT_SCALE = 1.0 / 255.0  # uint8 pixel -> network input value

_INTERP = {"area": cv2.INTER_AREA, "linear": cv2.INTER_LINEAR, "nearest": cv2.INTER_NEAREST}


@dataclass(frozen=True)
class CropSpec:
    """Which band of a frame the network sees and at what size.

    Attributes:
        top, bottom: band rows as fractions of the frame height (0 = top edge, 1 = bottom edge).
        left, right: band columns as fractions of the frame width.
        out_height, out_width: network input size in pixels.
        grayscale: convert BGR frames to one gray channel (the paper's step iv).
        interpolation: ``area`` (default, best for downscaling), ``linear`` or ``nearest``.
    """

    top: float
    bottom: float
    out_height: int
    out_width: int
    left: float = 0.0
    right: float = 1.0
    grayscale: bool = True
    interpolation: str = "area"

    def __post_init__(self) -> None:
        if not (0.0 <= self.top < self.bottom <= 1.0):
            raise ValueError(f"crop band needs 0 <= top < bottom <= 1, got top={self.top}, bottom={self.bottom}")
        if not (0.0 <= self.left < self.right <= 1.0):
            raise ValueError(f"crop band needs 0 <= left < right <= 1, got left={self.left}, right={self.right}")
        if self.out_height < 1 or self.out_width < 1:
            raise ValueError(f"output size must be positive, got {self.out_height}x{self.out_width}")
        if self.interpolation not in _INTERP:
            raise ValueError(f"interpolation must be one of {sorted(_INTERP)}, got {self.interpolation!r}")

    @property
    def channels(self) -> int:
        """Channels of the network input (1 for grayscale, 3 for BGR)."""
        return 1 if self.grayscale else 3

    def box(self, height: int, width: int) -> tuple[int, int, int, int]:
        """Pixel box ``(y0, y1, x0, x1)`` of the band in a ``height``×``width`` frame."""
        y0, y1 = round(self.top * height), round(self.bottom * height)
        x0, x1 = round(self.left * width), round(self.right * width)
        if y1 <= y0 or x1 <= x0:
            raise ValueError(f"crop band is empty on a {width}x{height} frame")
        return y0, y1, x0, x1

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (YAML / checkpoint friendly)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CropSpec:
        """Build from a dict, rejecting unknown keys with a clear message."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown crop keys {unknown}; known: {sorted(names)}")
        return cls(**dict(d))

    def with_height(self, out_height: int) -> CropSpec:
        """Same field of view per output row, taller output (e.g. the paper's 135-row variant)."""
        band = (self.bottom - self.top) * out_height / self.out_height
        return CropSpec(**{**self.to_dict(), "out_height": out_height, "bottom": min(1.0, self.top + band)})


# Defaults for 640x480 Udacity center-camera frames. NetSVF sees a 125-row band at full
# resolution; NetHVF sees about twice the vertical field of view, scaled down by that factor.
CROP_PRESETS: dict[str, CropSpec] = {
    "netsvf": CropSpec(top=0.55, bottom=0.55 + 125 / 480, out_height=125, out_width=640),
    "nethvf": CropSpec(top=0.40, bottom=0.40 + 228 / 480, out_height=125, out_width=351),
    "signnet": CropSpec(top=0.0, bottom=1.0, out_height=125, out_width=125),
}


def preprocess_frame(frame: np.ndarray, spec: CropSpec) -> np.ndarray:
    """Crop, convert and resize one frame for the network.

    Args:
        frame: uint8 image, (H, W) gray or (H, W, 3) BGR as OpenCV reads it.
        spec: the crop band and output size.

    Returns:
        uint8 array (out_height, out_width) if ``spec.grayscale`` else (out_height, out_width, 3).
    """
    if frame.dtype != np.uint8 or frame.ndim not in (2, 3):
        raise ValueError(f"expected a uint8 (H,W) or (H,W,3) frame, got {frame.dtype} {frame.shape}")
    y0, y1, x0, x1 = spec.box(frame.shape[0], frame.shape[1])
    band = frame[y0:y1, x0:x1]  # crop first: the colour conversion then touches fewer pixels
    if spec.grayscale and band.ndim == 3:
        band = cv2.cvtColor(band, cv2.COLOR_BGR2GRAY)
    elif not spec.grayscale and band.ndim == 2:
        band = cv2.cvtColor(band, cv2.COLOR_GRAY2BGR)
    if band.shape[:2] != (spec.out_height, spec.out_width):
        band = cv2.resize(band, (spec.out_width, spec.out_height), interpolation=_INTERP[spec.interpolation])
    return np.ascontiguousarray(band)


def mask_to_frame(mask: np.ndarray, spec: CropSpec, frame_shape: tuple[int, ...]) -> np.ndarray:
    """Map a network-input-sized mask back onto the full frame (zeros outside the band).

    Args:
        mask: float array (out_height, out_width).
        spec: the crop used to make the network input.
        frame_shape: shape of the original frame; only (H, W) are used.

    Returns:
        float32 array (H, W).
    """
    h, w = frame_shape[:2]
    y0, y1, x0, x1 = spec.box(h, w)
    full = np.zeros((h, w), np.float32)
    full[y0:y1, x0:x1] = cv2.resize(mask.astype(np.float32), (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)
    return full
