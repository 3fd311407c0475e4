"""Road geometry: a smooth curvature profile integrated into a world centerline.

The road is parametrized by arc length ``s`` (m) along the *ego lane center*. Curvature
``kappa(s)`` (1/m, positive = left) is built from sections (straights, gentle curves, sharp
curves, both ways) joined by linear curvature ramps (clothoids), so heading and curvature are
continuous. Lateral positions use a Frenet offset ``d`` (m, positive = left of the ego lane
center). World coordinates are metres, x/y on the ground plane, heading in radians.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

DS = 0.25  # m, centerline sampling step


@dataclass(frozen=True)
class Road:
    """A sampled centerline (uniform arc-length grid starting at s = 0).

    Attributes:
        ds: grid step (m).
        x, y: centerline world coordinates (m), shape (N,).
        heading: centerline heading (rad, unwrapped), shape (N,).
        curvature: signed curvature (1/m, positive = left), shape (N,).
        lane_width: lane width (m).
    """

    ds: float
    x: np.ndarray
    y: np.ndarray
    heading: np.ndarray
    curvature: np.ndarray
    lane_width: float = 3.7

    @property
    def length(self) -> float:
        """Usable length (m)."""
        return (len(self.x) - 1) * self.ds

    def _lerp(self, arr: np.ndarray, s: np.ndarray | float) -> np.ndarray:
        if isinstance(s, float):  # scalar fast path for the simulation loop
            idx_f = min(max(s / self.ds, 0.0), len(arr) - 1.000001)
            j = int(idx_f)
            return float(arr[j]) + (float(arr[j + 1]) - float(arr[j])) * (idx_f - j)
        idx = np.clip(np.asarray(s, np.float64) / self.ds, 0.0, len(arr) - 1.000001)
        i0 = idx.astype(np.int64)
        frac = idx - i0
        return arr[i0] * (1.0 - frac) + arr[i0 + 1] * frac

    def pose(self, s: np.ndarray | float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Centerline ``(x, y, heading)`` at arc length ``s`` (clamped to the road)."""
        return self._lerp(self.x, s), self._lerp(self.y, s), self._lerp(self.heading, s)

    def kappa(self, s: np.ndarray | float) -> np.ndarray:
        """Curvature (1/m) at arc length ``s``."""
        return self._lerp(self.curvature, s)

    def frenet_to_world(self, s: np.ndarray | float, d: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """World ``(x, y)`` of the point at arc length ``s`` and lateral offset ``d`` (left +)."""
        x, y, h = self.pose(s)
        if isinstance(h, float) and isinstance(d, float):
            return x - math.sin(h) * d, y + math.cos(h) * d
        return x - np.sin(h) * d, y + np.cos(h) * d


SHARP_CURVES = 0.30  # the default share of road sections that are sharp curves


def curvature_profile(
    rng: np.random.Generator, length: float, ds: float = DS, lead_straight: float = 80.0,
    sharp_curves: float = SHARP_CURVES,
) -> np.ndarray:
    """Curvature samples (1/m) on a ``ds`` grid covering at least ``length`` metres.

    Sections are drawn one after another from ``rng`` (so a longer road starts with the same
    sections as a shorter one for the same seed): straights (60-250 m), gentle curves
    (radius 250-1000 m), sharp curves (radius 35-90 m, 30-110 degrees), each side equally
    likely, joined by 15-40 m linear ramps. ``sharp_curves`` is the share of sharp-curve
    sections (0..1); straights and gentle curves split the rest evenly. The default 0.30 gives
    the roads of earlier releases, bit for bit.
    """
    if not 0.0 <= sharp_curves <= 1.0:
        raise ValueError(f"sharp_curves must be in 0..1, got {sharp_curves}")
    other = 0.5 * (1.0 - sharp_curves)
    knots_s, knots_k = [0.0, lead_straight], [0.0, 0.0]
    while knots_s[-1] < length + 50.0:
        kind = rng.choice(3, p=[other, other, sharp_curves])
        sign = rng.choice([-1.0, 1.0])
        if kind == 0:
            kappa, span = 0.0, rng.uniform(60.0, 250.0)
        elif kind == 1:
            kappa, span = sign / rng.uniform(250.0, 1000.0), rng.uniform(80.0, 300.0)
        else:
            radius = rng.uniform(35.0, 90.0)
            kappa, span = sign / radius, np.deg2rad(rng.uniform(30.0, 110.0)) * radius
        ramp = rng.uniform(15.0, 40.0)
        knots_s += [knots_s[-1] + ramp, knots_s[-1] + ramp + span]
        knots_k += [kappa, kappa]
    grid = np.arange(0.0, knots_s[-1], ds)
    return np.interp(grid, knots_s, knots_k)


def build_road(curvature: np.ndarray, ds: float = DS, lane_width: float = 3.7) -> Road:
    """Integrate a curvature profile into a centerline starting at the origin heading +x."""
    heading = np.concatenate([[0.0], np.cumsum(0.5 * (curvature[1:] + curvature[:-1]) * ds)])
    mid = 0.5 * (heading[1:] + heading[:-1])
    x = np.concatenate([[0.0], np.cumsum(np.cos(mid) * ds)])
    y = np.concatenate([[0.0], np.cumsum(np.sin(mid) * ds)])
    return Road(ds=ds, x=x, y=y, heading=heading, curvature=curvature, lane_width=lane_width)


def generate_road(
    rng: np.random.Generator, length: float, lane_width: float = 3.7, sharp_curves: float = SHARP_CURVES
) -> Road:
    """A random road at least ``length`` metres long (see :func:`curvature_profile`)."""
    return build_road(curvature_profile(rng, length, sharp_curves=sharp_curves), DS, lane_width)
