"""Other cars as two boxes (body + cabin), with back-face culling, lights and a contact shadow."""

from __future__ import annotations

import math
from typing import Protocol

import numpy as np

from vbp_live.synth.camera import Camera, world_to_vehicle
from vbp_live.synth.road import Road
from vbp_live.synth.scene import Car

# corner index = ix * 4 + iy * 2 + iz (ix: rear/front, iy: right/left, iz: bottom/top)
_FACES = {  # name: (corner indices in drawing order, outward normal in the car frame)
    "front": ((4, 6, 7, 5), (1.0, 0.0, 0.0)),
    "back": ((0, 2, 3, 1), (-1.0, 0.0, 0.0)),
    "left": ((2, 6, 7, 3), (0.0, 1.0, 0.0)),
    "right": ((0, 4, 5, 1), (0.0, -1.0, 0.0)),
    "top": ((1, 3, 7, 5), (0.0, 0.0, 1.0)),
}
_SHADING = {"front": 0.85, "back": 0.85, "left": 0.7, "right": 0.7, "top": 1.15}
_GLASS = (52, 46, 42)
_MIN_FWD = 1.0


class _ViewLike(Protocol):
    px: float
    py: float
    theta: float
    pitch: float


def _box(cx: float, cy: float, heading: float, x0: float, x1: float, half_w: float, z0: float, z1: float) -> np.ndarray:
    """(8, 3) world corners of a box spanning ``x0..x1`` along the car, ``+-half_w`` across."""
    ix, iy, iz = np.meshgrid([x0, x1], [-half_w, half_w], [z0, z1], indexing="ij")
    lx, ly, lz = ix.ravel(), iy.ravel(), iz.ravel()
    c, s = math.cos(heading), math.sin(heading)
    return np.stack([cx + lx * c - ly * s, cy + lx * s + ly * c, lz], 1)


def _shade(color: tuple[int, int, int], k: float) -> tuple[int, int, int]:
    return tuple(int(min(255, round(ch * k))) for ch in color)  # type: ignore[return-value]


def _faces(corners: np.ndarray, heading: float, cam_xyz: np.ndarray, uv: np.ndarray, color: tuple[int, int, int],
           glass: bool) -> list[tuple[np.ndarray, tuple[int, int, int], str]]:
    c, s = math.cos(heading), math.sin(heading)
    out = []
    for name, (idx, (nx, ny, nz)) in _FACES.items():
        normal = np.array([nx * c - ny * s, nx * s + ny * c, nz])
        center = corners[list(idx)].mean(axis=0)
        if float(normal @ (cam_xyz - center)) <= 0.0:
            continue
        col = color if (name == "top" or not glass) else _GLASS
        out.append((uv[list(idx)], _shade(col, _SHADING[name]), name))
    return out


def _lights(uv: np.ndarray, color: tuple[int, int, int]) -> list[tuple[np.ndarray, tuple[int, int, int]]]:
    """Two small lamps on a face given as 4 pixel corners (bottom-right, bottom-left, top-left, top-right)."""
    a, b, t, d = uv
    out = []
    for f0, f1 in ((0.04, 0.2), (0.8, 0.96)):
        p = [a + (b - a) * f for f in (f0, f1)]
        q = [d + (t - d) * f for f in (f0, f1)]
        lo = [p[0] + (q[0] - p[0]) * 0.45, p[1] + (q[1] - p[1]) * 0.45]
        hi = [p[0] + (q[0] - p[0]) * 0.75, p[1] + (q[1] - p[1]) * 0.75]
        out.append((np.array([lo[0], lo[1], hi[1], hi[0]]), color))
    return out


def car_polygons(car: Car, s: float, road: Road, cam: Camera, view: _ViewLike
                 ) -> tuple[list[np.ndarray], list[tuple[np.ndarray, tuple[int, int, int]]]] | None:
    """Pixel polygons of one car at arc length ``s``: (contact shadow, [(face polygon, BGR)...]).

    Faces are listed in drawing order (body, then cabin, then lamps). Returns None when the car
    is too close to the camera to be drawn safely (any corner less than 1 m ahead).
    """
    x, y = road.frenet_to_world(s, car.d)
    heading = float(road.pose(s)[2]) + (math.pi if car.oncoming else 0.0)
    half = 0.5 * car.length
    boxes = [
        (_box(x, y, heading, -half, half, 0.5 * car.width, 0.28, 0.52 * car.height), False),
        (_box(x, y, heading, -0.3 * car.length, 0.22 * car.length, 0.45 * car.width, 0.52 * car.height, car.height), True),
    ]
    cam_xyz = np.array([view.px, view.py, cam.height_m])
    faces: list[tuple[np.ndarray, tuple[int, int, int]]] = []
    for corners, glass in boxes:
        fwd, left = world_to_vehicle(corners[:, 0], corners[:, 1], view.px, view.py, view.theta)
        if fwd.min() < _MIN_FWD:
            return None
        u, v, _ = cam.project(fwd, left, corners[:, 2], view.pitch)
        uv = np.stack([u, v], 1)
        for poly, col, name in _faces(corners, heading, cam_xyz, uv, car.color, glass):
            faces.append((poly, col))
            if not glass and name in ("back", "front"):
                lamp = (40, 40, 210) if name == "back" else (200, 235, 245)
                faces += _lights(poly, lamp)
    foot = _box(x, y, heading, -half - 0.3, half + 0.3, 0.5 * car.width + 0.25, 0.0, 0.0)[[0, 2, 6, 4]]
    fwd, left = world_to_vehicle(foot[:, 0], foot[:, 1], view.px, view.py, view.theta)
    u, v, _ = cam.project(fwd, left, 0.0, view.pitch)
    return [np.stack([u, v], 1)], faces
