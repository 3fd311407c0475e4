"""Per-drive images computed once: ground texture, sky gradient, skyline, the ego hood."""

from __future__ import annotations

import math

import cv2
import numpy as np

from vbp_live.synth.camera import Camera
from vbp_live.synth.world import DEFAULT_WORLD, WorldParams

TEXTURE_PX = 1024
TEXTURE_RES_M = 0.05  # metres per texture pixel: the tile repeats every 51.2 m


def ground_texture(seed: int, size: int = TEXTURE_PX) -> np.ndarray:
    """A seamless (periodic) zero-mean float32 noise tile: fine grain, blotches and large patches.

    Band-limited noise made in the Fourier domain, so it tiles without seams.
    """
    rng = np.random.default_rng(seed)
    spec = np.fft.rfft2(rng.standard_normal((size, size)))
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.rfftfreq(size)[None, :]
    f2 = fx * fx + fy * fy
    out = np.zeros((size, size), np.float32)
    for sigma_px, amp in ((0.8, 6.0), (6.0, 4.0), (45.0, 7.0)):
        band = np.fft.irfft2(spec * np.exp(-2.0 * (math.pi * sigma_px) ** 2 * f2), s=(size, size))
        out += (amp * band / band.std()).astype(np.float32)
    return out


def sky_column(camera: Camera, top: tuple[int, int, int], horizon: tuple[int, int, int]) -> np.ndarray:
    """A (2H, 1, 3) uint8 gradient; row ``H + k`` is the sky color ``k`` rows below the horizon."""
    h = camera.height
    k = np.arange(-h, h, dtype=np.float32)[:, None]
    a = np.clip(-k / (0.5 * h), 0.0, 1.0) ** 0.7  # 0 at the horizon, 1 half a frame above it
    col = np.array(horizon, np.float32) * (1 - a) + np.array(top, np.float32) * a
    return np.round(col).astype(np.uint8)[:, None, :]


def skyline_table(seed: int, bins: int = 3600) -> np.ndarray:
    """Distant hills/treeline: elevation angle (rad) per azimuth bin over a full turn."""
    rng = np.random.default_rng(seed + 1)
    az = np.linspace(0.0, 2 * math.pi, bins, endpoint=False)
    elev = np.full(bins, 0.012)
    for k in (1, 2, 3, 5, 8, 13, 21, 40, 90):
        elev += rng.uniform(0.001, 0.012) / math.sqrt(k) * np.sin(k * az + rng.uniform(0, 2 * math.pi))
    return np.clip(elev, 0.002, None)


def skyline_polygon(table: np.ndarray, camera: Camera, heading: float, horizon_row: float) -> np.ndarray:
    """Pixel polygon (N, 2) of the skyline for a camera heading (left turn = positive)."""
    u = np.arange(0, camera.width + 16, 16, dtype=np.float64)
    az = (heading + np.arctan((camera.cx - u) / camera.focal_px)) % (2 * math.pi)
    elev = table[(az / (2 * math.pi) * len(table)).astype(np.int64) % len(table)]
    v = horizon_row - camera.focal_px * np.tan(elev)
    bottom = horizon_row + 2.0
    return np.concatenate([np.stack([u, v], 1), [[u[-1], bottom], [0.0, bottom]]])


def hood(camera: Camera, world: WorldParams = DEFAULT_WORLD) -> tuple[int, np.ndarray, np.ndarray]:
    """The ego hood: first row, a bool mask and a BGR image of the rows from there down.

    The hood's top edge is at row ``world.hood_top_frac`` H (0.885) in the middle and curves
    down to ``world.hood_side_frac`` H (0.985) at the sides.
    """
    h, w = camera.height, camera.width
    top, side = world.hood_top_frac * h, world.hood_side_frac * h
    u = np.arange(w, dtype=np.float64)
    edge = top + (side - top) * ((u - camera.cx) / camera.cx) ** 2
    r0 = int(math.floor(top))
    rows = np.arange(r0, h, dtype=np.float64)[:, None]
    mask = rows >= edge[None, :]
    depth = np.clip((rows - edge[None, :]) / (h - top), 0.0, 1.0)
    base = np.array(world.hood_color, np.float32)
    img = base * (1.5 - 0.7 * depth[..., None])  # a sky reflection near the edge
    return r0, mask, np.clip(img, 0, 255).astype(np.uint8)


def to_fixed(points: np.ndarray, shift: int = 2) -> np.ndarray:
    """Float pixel polygon -> int32 fixed point for ``cv2.fillPoly(..., shift=shift)``."""
    return np.round(np.clip(points, -2e5, 2e5) * (1 << shift)).astype(np.int32)


def fill(
    targets: list[tuple[np.ndarray, object]], polys: list[np.ndarray], disjoint: bool = True, shift: int = 2
) -> None:
    """Fill the same polygons into several images, each with its own value.

    ``cv2.fillPoly`` fills several polygons with the even-odd rule, so overlapping polygons
    are only batched into one call when ``disjoint`` is true.
    """
    fixed = [to_fixed(p, shift) for p in polys if len(p) >= 3]
    if not fixed:
        return
    groups = [fixed] if disjoint else [[f] for f in fixed]
    for img, value in targets:
        for g in groups:
            cv2.fillPoly(img, g, value, lineType=cv2.LINE_8, shift=shift)
