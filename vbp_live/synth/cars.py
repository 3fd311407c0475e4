"""Other cars as two boxes (body + cabin), with back-face culling, lights and a contact shadow."""

from __future__ import annotations

import math
from typing import Protocol

import numpy as np

from vbp_live.synth.camera import Camera, clip_near, world_to_vehicle
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
_Z_NEAR = 0.5  # m: faces are clipped at this distance ahead of the camera


class _ViewLike(Protocol):
    px: float
    py: float
    theta: float
    pitch: float


def _box_local(x0: float, x1: float, half_w: float, z0: float, z1: float) -> np.ndarray:
    """(8, 3) corners in the car frame (x forward, y left, z up), index ix*4 + iy*2 + iz."""
    ix, iy, iz = np.meshgrid([x0, x1], [-half_w, half_w], [z0, z1], indexing="ij")
    return np.stack([ix.ravel(), iy.ravel(), iz.ravel()], 1)


def _shade(color: tuple[int, int, int], k: float) -> tuple[int, int, int]:
    return tuple(int(min(255, round(ch * k))) for ch in color)  # type: ignore[return-value]


def _visible(name: str, cam: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> bool:
    """Back-face test in the car frame: is the camera outside the face's plane?"""
    return {"front": cam[0] > hi[0], "back": cam[0] < lo[0], "left": cam[1] > hi[1],
            "right": cam[1] < lo[1], "top": cam[2] > hi[2]}[name]


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


def _face_polygon(
    uv: np.ndarray, pts: np.ndarray, idx: list[int], cam: Camera, pitch: float
) -> tuple[np.ndarray, bool]:
    """Pixel polygon of a face; clipped at the near plane when part of it is behind the camera."""
    if pts[idx, 0].min() >= _Z_NEAR:
        return uv[idx], False
    fwd, left, up = clip_near(pts[idx, 0], pts[idx, 1], _Z_NEAR, pts[idx, 2])
    u, v, _ = cam.project(fwd, left, up, pitch)
    return np.stack([u, v], 1), True


def car_polygons(car: Car, s: float, road: Road, cam: Camera, view: _ViewLike
                 ) -> tuple[list[np.ndarray], list[tuple[np.ndarray, tuple[int, int, int]]]] | None:
    """Pixel polygons of one car at arc length ``s``: (contact shadow, [(face polygon, BGR)...]).

    Faces are listed in drawing order (body, then cabin, then lamps); faces that reach behind
    the camera are clipped at 0.5 m. Returns None when the whole car is behind that plane.
    """
    x, y = road.frenet_to_world(s, car.d)
    heading = float(road.pose(s)[2]) + (math.pi if car.oncoming else 0.0)
    c, sn = math.cos(heading), math.sin(heading)
    half, hl = 0.5 * car.length, 0.5 * car.width
    boxes = [_box_local(-half, half, hl, 0.28, 0.52 * car.height),
             _box_local(-0.3 * car.length, 0.22 * car.length, 0.9 * hl, 0.52 * car.height, car.height)]
    foot = _box_local(-half - 0.3, half + 0.3, hl + 0.25, 0.0, 0.0)[[0, 2, 6, 4]]
    local = np.concatenate(boxes + [foot])  # (20, 3)
    wx, wy = x + local[:, 0] * c - local[:, 1] * sn, y + local[:, 0] * sn + local[:, 1] * c
    fwd, left = world_to_vehicle(wx, wy, view.px, view.py, view.theta)
    if fwd.max() < _Z_NEAR:
        return None
    pts = np.stack([fwd, left, local[:, 2]], 1)
    u, v, _ = cam.project(fwd, left, local[:, 2], view.pitch)
    uv = np.stack([u, v], 1)
    dx, dy = view.px - x, view.py - y
    cam_local = np.array([dx * c + dy * sn, -dx * sn + dy * c, cam.height_m])
    faces: list[tuple[np.ndarray, tuple[int, int, int]]] = []
    for k, (box, glass) in enumerate(zip(boxes, (False, True), strict=True)):
        lo, hi = box.min(axis=0), box.max(axis=0)
        for name, (idx, _) in _FACES.items():
            if not _visible(name, cam_local, lo, hi):
                continue
            poly, clipped = _face_polygon(uv, pts, [8 * k + j for j in idx], cam, view.pitch)
            if len(poly) < 3:
                continue
            col = car.color if (name == "top" or not glass) else _GLASS
            faces.append((poly, _shade(col, _SHADING[name])))
            if not glass and not clipped and name in ("back", "front"):
                faces += _lights(poly, (40, 40, 210) if name == "back" else (200, 235, 245))
    contact, _ = _face_polygon(uv, pts, [16, 17, 18, 19], cam, view.pitch)
    return [contact], faces
