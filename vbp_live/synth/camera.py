"""A pinhole camera on the ego vehicle, looking forward over a flat ground plane.

Vehicle-frame coordinates: ``fwd`` (m, ahead of the camera), ``left`` (m), ``up`` (m above the
ground). ``pitch`` (rad) is positive when the nose dips (the horizon moves up in the image).
At zero pitch the horizon sits at row ``horizon_frac * height``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Camera:
    """Camera intrinsics and mounting (defaults: Udacity-like 640x480 center camera).

    Attributes:
        width, height: image size (px).
        focal_px: focal length (px); 560 px gives a ~60 degree horizontal field of view.
        horizon_frac: horizon row / height at zero pitch (0.47: the NetSVF band, rows
            0.55-0.81, sees the ground from about 24 m down to 6 m ahead).
        height_m: camera height above the ground (m).
        forward_m: camera position ahead of the rear axle (m).
        lateral_m: camera offset to the left of the vehicle axis (m); left/right cameras use +-0.5.
        hood: draw the ego hood at the bottom (its top edge stays below row 0.87).
        pitch_rad: mounting pitch (rad, nose down +), added to the vehicle's pitch when rendering.
    """

    width: int = 640
    height: int = 480
    focal_px: float = 560.0
    horizon_frac: float = 0.47
    height_m: float = 1.65
    forward_m: float = 1.5
    lateral_m: float = 0.0
    hood: bool = True
    pitch_rad: float = 0.0

    @property
    def cx(self) -> float:
        """Principal point column."""
        return (self.width - 1) / 2.0

    @property
    def cy(self) -> float:
        """Principal point row (the zero-pitch horizon)."""
        return self.horizon_frac * self.height

    def horizon_row(self, pitch: float) -> float:
        """Image row of the horizon at this pitch."""
        return self.cy - self.focal_px * math.tan(pitch)

    def ground_rows(self, rows: np.ndarray, pitch: float) -> tuple[np.ndarray, np.ndarray]:
        """Inverse perspective per image row: forward distance and lateral metres per pixel.

        For rows below the horizon, a pixel ``(u, row)`` sees the ground at
        ``fwd = Z[row]`` and ``left = -(u - cx) * K[row]``. Rows at or above the horizon get inf.

        Returns:
            (Z, K), each shaped like ``rows`` (float64).
        """
        yn = (np.asarray(rows, np.float64) - self.cy) / self.focal_px
        cp, sp = math.cos(pitch), math.sin(pitch)
        ry, rz = yn * cp + sp, cp - yn * sp
        ok = ry > 1e-6
        safe = np.where(ok, ry, 1.0)
        z = np.where(ok, self.height_m * rz / safe, np.inf)
        k = np.where(ok, self.height_m / (self.focal_px * safe), np.inf)
        return z, k

    def project(self, fwd: np.ndarray, left: np.ndarray, up: np.ndarray | float,
                pitch: float | np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Project vehicle-frame points to pixels (``pitch`` may be per point).

        Returns:
            (u, v, depth): pixel column, row and depth along the optical axis (m).
        """
        if isinstance(pitch, float):
            cp, sp = math.cos(pitch), math.sin(pitch)
        else:
            cp, sp = np.cos(pitch), np.sin(pitch)
        y = self.height_m - np.asarray(up, np.float64)
        zc = fwd * cp + y * sp
        yc = y * cp - fwd * sp
        inv = 1.0 / np.maximum(zc, 1e-3)
        return self.cx - self.focal_px * left * inv, self.cy + self.focal_px * yc * inv, zc

    def to_dict(self) -> dict:
        """Plain dict (stored with the ground truth)."""
        return asdict(self)


def world_to_vehicle(x: np.ndarray, y: np.ndarray, px: float, py: float, theta: float) -> tuple[np.ndarray, np.ndarray]:
    """World ground points -> (fwd, left) relative to a pose at ``(px, py)`` heading ``theta``."""
    dx, dy = x - px, y - py
    c, s = math.cos(theta), math.sin(theta)
    return dx * c + dy * s, -dx * s + dy * c


def clip_near(fwd: np.ndarray, left: np.ndarray, z_near: float, *extra: np.ndarray) -> tuple[np.ndarray, ...]:
    """Clip a closed polygon to the half-space ``fwd >= z_near`` (Sutherland-Hodgman).

    ``extra`` per-vertex coordinates (e.g. height) are interpolated along cut edges.

    Returns:
        ``(fwd, left, *extra)`` of the clipped polygon (empty arrays when nothing is in front).
    """
    cols = np.stack([fwd, left, *extra], 1)
    inside = fwd >= z_near
    if inside.all():
        return tuple(cols.T)
    out: list[np.ndarray] = []
    n = len(fwd)
    for i in range(n if inside.any() else 0):
        j = (i + 1) % n
        if inside[i]:
            out.append(cols[i])
        if inside[i] != inside[j]:
            a = (z_near - fwd[i]) / (fwd[j] - fwd[i])
            out.append(cols[i] + a * (cols[j] - cols[i]))
    res = np.array(out).reshape(-1, cols.shape[1])
    return tuple(res.T)
