"""What stands on and beside the road: markings, stop lines, crosswalks, shadows, other cars, light.

Everything is placed in road (Frenet) coordinates ``(s, d)`` and drawn from ``rng`` in order
along the road, so the same seed gives the same world. Lanes (lane width ``W``): an oncoming
lane centered at ``d = +W``, the ego lane at ``d = 0`` and a same-direction lane at ``d = -W``.
Boundaries: left road edge (solid white, ``d = 1.5W``), center line (yellow, double solid or
dashed, ``d = 0.5W``), ego/right lane line (white, dashed or solid, ``d = -0.5W``) and right
road edge (solid white, ``d = -1.5W``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from vbp_live.synth.world import LaneLayout, MarkingStyle

_LANES, _STYLE = LaneLayout(), MarkingStyle()
WHITE, YELLOW = _STYLE.white, _STYLE.yellow  # BGR
DASH_M, GAP_M = _STYLE.dash_m, _STYLE.gap_m


@dataclass
class MarkingPieces:
    """Painted strips along the road: piece ``i`` spans ``s0[i]..s1[i]`` at offset ``d[i]``.

    ``color`` rows are BGR (already faded on worn sections); ``kind`` is 0 for lane markings.
    """

    s0: np.ndarray
    s1: np.ndarray
    d: np.ndarray
    width: np.ndarray
    color: np.ndarray  # (N, 3) uint8


@dataclass
class Car:
    """Another vehicle: box size (m), body color, lateral offset, and its arc length per frame.

    ``s`` holds the car's center arc length at every frame time (NaN where it is not in the
    world); ``oncoming`` cars face the ego vehicle.
    """

    d: float
    length: float
    width: float
    height: float
    color: tuple[int, int, int]
    s: np.ndarray
    oncoming: bool = False


@dataclass
class Scene:
    """All world objects of one drive.

    Attributes:
        markings: lane markings (solid and dashed, white and yellow).
        hmarks: horizontal markings as Frenet quads (K, 4, 2) of ``(s, d)`` (stop lines, crosswalk stripes).
        shadows: shadow polygons in Frenet coordinates, each (M, 2) of ``(s, d)``.
        shadow_s: (K, 2) ``[s_min, s_max]`` of each shadow polygon.
        shadow_level: darkness multiplier of shadows (0..1, lower is darker).
        cars: other vehicles.
        brightness: per-frame global light level (around 1.0).
        sky_top, sky_horizon, grass: BGR colors of this drive.
        texture_seed: seed of the asphalt/grass texture.
        stop_lines_s: arc length of each stop line.
    """

    markings: MarkingPieces
    hmarks: np.ndarray
    shadows: list[np.ndarray]
    shadow_s: np.ndarray
    shadow_level: float
    cars: list[Car]
    brightness: np.ndarray
    sky_top: tuple[int, int, int]
    sky_horizon: tuple[int, int, int]
    grass: tuple[int, int, int]
    asphalt: tuple[int, int, int]
    texture_seed: int
    stop_lines_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    patches: np.ndarray = field(default_factory=lambda: np.zeros((0, 4, 2)))
    patch_colors: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.uint8))
    cracks: np.ndarray = field(default_factory=lambda: np.zeros((0, 4, 2)))
    crack_color: tuple[int, int, int] = (40, 40, 42)


def road_edges(lane_width: float, lanes: LaneLayout = _LANES) -> tuple[float, float]:
    """Frenet offsets ``(left, right)`` of the painted road edges (ego lane center at 0)."""
    return (lanes.left + 0.5) * lane_width, -(lanes.right + 0.5) * lane_width


def _fade(color: tuple[int, int, int], asphalt: tuple[int, int, int], worn: float) -> np.ndarray:
    return np.round(np.array(color) * (1 - worn) + np.array(asphalt) * worn).astype(np.uint8)


def _dashes(a: float, b: float, phase: float, style: MarkingStyle = _STYLE) -> list[tuple[float, float]]:
    period = style.dash_m + style.gap_m
    start = a + (phase % period)
    return [(s, min(s + style.dash_m, b)) for s in np.arange(start, b, period)]


def lane_markings(
    rng: np.random.Generator, length: float, lane_width: float, asphalt: tuple[int, int, int],
    lanes: LaneLayout = _LANES, style: MarkingStyle = _STYLE,
) -> MarkingPieces:
    """Marking pieces for every boundary, with styles and wear changing every 80-350 m.

    Boundaries: both road edges (solid), the center line between same-direction and oncoming
    lanes (yellow, double solid or dashed) and the lines between lanes (white, mostly dashed).
    """
    rows: list[tuple[float, float, float, float, np.ndarray]] = []
    w, a, lw, period = lane_width, 0.0, style.line_w, style.dash_m + style.gap_m
    center = lanes.left - lanes.oncoming if lanes.oncoming > 0 else None  # boundary index j: d = (j + 0.5) w
    inner = [j for j in range(-lanes.right, lanes.left) if j != center]
    while a < length:
        b = a + rng.uniform(80.0, 350.0)
        worn = rng.uniform(0.35, 0.6) if rng.random() < style.worn_p else rng.uniform(0.0, 0.15)
        white, yellow = _fade(style.white, asphalt, worn), _fade(style.yellow, asphalt, worn)
        d_left, d_right = road_edges(w, lanes)
        rows.append((a, b, d_left, lw, yellow if style.edge_yellow_left else white))
        rows.append((a, b, d_right, lw, white))
        if center is not None:
            dc = (center + 0.5) * w
            if rng.random() < 0.6:  # double solid yellow, else dashed yellow (passing allowed)
                rows += [(a, b, dc + off, style.yellow_w, yellow) for off in (-0.11, 0.11)]
            else:
                dashes = _dashes(a, b, rng.uniform(0, period), style)
                rows += [(s0, s1, dc, style.yellow_w, yellow) for s0, s1 in dashes]
        for j in inner:
            if rng.random() < 0.8:
                rows += [(s0, s1, (j + 0.5) * w, lw, white) for s0, s1 in _dashes(a, b, rng.uniform(0, period), style)]
            else:
                rows.append((a, b, (j + 0.5) * w, lw, white))
        a = b
    arr = list(zip(*rows, strict=True))
    return MarkingPieces(np.array(arr[0]), np.array(arr[1]), np.array(arr[2]), np.array(arr[3]), np.stack(arr[4]))


def horizontal_markings(
    rng: np.random.Generator, stop_s: np.ndarray, length: float, lane_width: float, lanes: LaneLayout = _LANES
) -> tuple[np.ndarray, np.ndarray]:
    """Stop lines (across the ego lane) with a crosswalk behind each, plus some mid-block crosswalks.

    Returns:
        (quads (K, 4, 2) in (s, d), stop line positions (S,)).
    """
    quads: list[list[tuple[float, float]]] = []
    w = lane_width
    d_left, d_right = road_edges(w, lanes)
    walks = [s + rng.uniform(1.5, 3.0) for s in stop_s]
    walks += list(rng.uniform(150.0, max(length, 151.0), size=int(length // 400)))
    for s in stop_s:
        quads.append([(s, -0.5 * w), (s + 0.45, -0.5 * w), (s + 0.45, 0.5 * w), (s, 0.5 * w)])
    for s in walks:
        for d0 in np.arange(d_right + 0.3, d_left - 0.5, 1.2):
            quads.append([(s, d0), (s + 3.0, d0), (s + 3.0, d0 + 0.6), (s, d0 + 0.6)])
    return np.array(quads, np.float64).reshape(-1, 4, 2), np.asarray(stop_s, np.float64)


def shadow_polygons(rng: np.random.Generator, length: float, lane_width: float,
                    lanes: LaneLayout = _LANES) -> list[np.ndarray]:
    """Tree and building shadows: jagged bands across the whole road and blobs, every 10-70 m."""
    polys: list[np.ndarray] = []
    d_left, d_right = road_edges(lane_width, lanes)
    s, lo, hi = rng.uniform(10.0, 40.0), d_right - 2.5, d_left + 2.5
    while s < length:
        if rng.random() < 0.45:  # a band across the road: hides every marking it covers
            depth, n = rng.uniform(2.0, 10.0), 9
            d = np.linspace(lo, hi, n)
            near = s + rng.uniform(-0.8, 0.8, n)
            far = s + depth + rng.uniform(-1.2, 1.2, n)
            polys.append(np.concatenate([np.stack([near, d], 1), np.stack([far, d], 1)[::-1]]))
        else:  # a blob (single tree, pole cluster)
            ang = np.linspace(0, 2 * np.pi, 12, endpoint=False)
            r = rng.uniform(1.5, 4.5) * rng.uniform(0.7, 1.3, 12)
            center_d = rng.uniform(lo, hi)
            polys.append(np.stack([s + 1.6 * r * np.cos(ang), center_d + r * np.sin(ang)], 1))
        s += rng.uniform(10.0, 70.0)
    return polys


def ou_series(rng: np.random.Generator, n: int, mean: float, std: float, tau_steps: float) -> np.ndarray:
    """An Ornstein-Uhlenbeck series of ``n`` samples (correlation time ``tau_steps`` samples)."""
    out = np.empty(n)
    x, k = mean + rng.normal(0, std), 1.0 / tau_steps
    z = rng.standard_normal(n)
    for i in range(n):
        out[i] = x
        x += (mean - x) * k + std * np.sqrt(2 * k) * z[i]
    return out


_CAR_COLORS = [(40, 40, 40), (200, 200, 205), (30, 30, 150), (140, 90, 30), (90, 90, 95), (230, 230, 235),
               (40, 60, 20), (20, 120, 200), (110, 30, 30), (160, 160, 160)]


def _new_car(rng: np.random.Generator, d: float, s: np.ndarray, oncoming: bool = False) -> Car:
    kind = rng.random()
    length, width, height = (4.6, 1.85, 1.45) if kind < 0.6 else ((5.0, 2.0, 1.8) if kind < 0.9 else (7.5, 2.4, 2.8))
    color = _CAR_COLORS[int(rng.integers(len(_CAR_COLORS)))]
    return Car(d, length * rng.uniform(0.92, 1.08), width, height, color, s, oncoming)


def _traffic_lanes(lane_width: float, lanes: LaneLayout) -> tuple[float, float, float]:
    """Centers (d) of the oncoming lane, the overtaking/overtaken lane and the parking spot (NaN: none)."""
    w = lane_width
    oncoming = (lanes.left - lanes.oncoming + 1) * w if lanes.oncoming > 0 else np.nan
    beside = -w if lanes.right > 0 else (w if lanes.left > lanes.oncoming else np.nan)
    return oncoming, beside, road_edges(w, lanes)[1] - 1.4


def traffic(rng: np.random.Generator, t: np.ndarray, s_ego: np.ndarray, v_ego: np.ndarray,
            slow_spans: np.ndarray, lane_width: float, road_length: float, lanes: LaneLayout = _LANES) -> list[Car]:
    """Lead cars in slow traffic, oncoming cars, cars in the right lane and parked cars.

    Where the layout has no oncoming lane (or no lane beside the ego lane) those cars are drawn
    from ``rng`` all the same (so the rest of the traffic is unchanged) but never appear.

    Args:
        t: frame times (s); s_ego, v_ego: ego arc length (m) and speed (m/s) at those times.
        slow_spans: (K, 2) slow-traffic intervals (s); a lead car sits ahead in the ego lane.
        lanes: the lane layout.
    """
    w, cars = lane_width, []
    d_oncoming, d_beside, d_park = _traffic_lanes(w, lanes)
    for t0, t1 in slow_spans:  # the lead car closes in from 60 m, keeps a speed-dependent gap, then leaves
        gap = 8.0 + 1.2 * v_ego
        closing = (60.0 - gap) * np.exp(-np.clip(t - t0, 0, None) / 2.5)
        leaving = 0.75 * np.clip(t - t1, 0, None) ** 2
        s = np.where((t >= t0) & (gap + closing + leaving < 170.0), s_ego + gap + closing + leaving, np.nan)
        cars.append(_new_car(rng, rng.normal(0.0, 0.15), s))
    spawn = -8.0
    while spawn < t[-1] if len(t) else False:  # oncoming traffic, mean one car every 7 s
        v, s0 = rng.uniform(8.0, 17.0), np.interp(spawn, t, s_ego) + 170.0
        s = s0 - v * (t - spawn)
        s_seen = np.where((t >= spawn) & (s > s_ego - 10.0), s, np.nan)
        cars.append(_new_car(rng, d_oncoming + rng.normal(0, 0.15), s_seen, True))
        spawn += rng.exponential(7.0)
    spawn = -10.0
    while spawn < t[-1] if len(t) else False:  # same-direction traffic in the right lane
        v, s0 = rng.uniform(6.0, 20.0), np.interp(spawn, t, s_ego) + 165.0
        s = s0 + v * (t - spawn)
        s_seen = np.where((t >= spawn) & (np.abs(s - s_ego - 75) < 95), s, np.nan)
        cars.append(_new_car(rng, d_beside + rng.normal(0, 0.15), s_seen))
        spawn += rng.exponential(12.0)
    s_park = rng.uniform(30.0, 120.0)
    while s_park < road_length:  # parked on the right shoulder
        cars.append(_new_car(rng, d_park, np.full(len(t), s_park)))
        s_park += rng.uniform(40.0, 250.0)
    return [c for c in cars if np.isfinite(c.d)]


def sun_slant(polys: list[np.ndarray], shear: float, stretch: float) -> list[np.ndarray]:
    """Lengthen shadows (``stretch``, from their near edge) and slant them (``shear`` m along per m across)."""
    if shear == 0.0 and stretch == 1.0:
        return polys
    out = []
    for p in polys:
        s0 = p[:, 0].min()
        out.append(np.stack([s0 + (p[:, 0] - s0) * stretch + shear * p[:, 1], p[:, 1]], 1))
    return out


def _rect(s: float, d: float, length: float, width: float) -> list[tuple[float, float]]:
    return [(s, d - 0.5 * width), (s + length, d - 0.5 * width), (s + length, d + 0.5 * width),
            (s, d + 0.5 * width)]


def road_patches(rng: np.random.Generator, length: float, edges: tuple[float, float], per_km: float,
                 asphalt: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Repair patches: rectangles (1-6 m long) of lighter or darker asphalt inside the road edges.

    Returns:
        (quads (K, 4, 2) in (s, d), colors (K, 3) uint8 BGR).
    """
    quads, colors = [], []
    for s in np.sort(rng.uniform(0.0, length, int(rng.poisson(per_km * length / 1000.0)))):
        width = rng.uniform(0.8, min(3.5, edges[0] - edges[1]))
        d = rng.uniform(edges[1] + 0.5 * width, edges[0] - 0.5 * width)
        quads.append(_rect(float(s), float(d), rng.uniform(1.0, 6.0), width))
        colors.append(np.clip(np.array(asphalt) * rng.uniform(0.7, 1.3), 0, 255))
    return np.array(quads, np.float64).reshape(-1, 4, 2), np.array(colors, np.uint8).reshape(-1, 3)


def tar_snakes(rng: np.random.Generator, length: float, edges: tuple[float, float], per_km: float) -> np.ndarray:
    """Crack sealant lines ("tar snakes"): wiggly chains of thin quads, 3-12 m long, inside the road.

    Returns:
        quads (K, 4, 2) in (s, d).
    """
    quads: list[list[tuple[float, float]]] = []
    for s in np.sort(rng.uniform(0.0, length, int(rng.poisson(per_km * length / 1000.0)))):
        n, width = int(rng.integers(4, 13)), rng.uniform(0.04, 0.1)
        steps = rng.uniform(0.6, 1.2, n)
        d = np.clip(rng.uniform(edges[1], edges[0]) + np.cumsum(rng.normal(0, 0.25, n + 1)), edges[1], edges[0])
        ss = float(s) + np.concatenate([[0.0], np.cumsum(steps)])
        for k in range(n):
            h = 0.5 * width
            quads.append([(ss[k], d[k] - h), (ss[k + 1], d[k + 1] - h), (ss[k + 1], d[k + 1] + h), (ss[k], d[k] + h)])
    return np.array(quads, np.float64).reshape(-1, 4, 2)
