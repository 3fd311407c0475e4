"""Per-drive randomization of what real cameras and roads vary (the "world" of a drive).

:func:`sample_world` draws every randomized per-drive value in one place, from its own random
stream (``np.random.default_rng([seed, 0x57])``), so the road, vehicle, traffic and light streams
of a seed stay the same for any ``randomize``. ``randomize`` scales every range around today's
value: 0 gives :data:`DEFAULT_WORLD` (renders bit-identical to the unrandomized world), 1 the
full ranges listed in ``docs/data.md``. The camera's roll and lens distortion, blur, noise and
compression are image-space effects and live in :mod:`vbp_live.synth.sensor`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

WORLD_STREAM = 0x57
DEFAULT_FOCAL_PX, DEFAULT_HORIZON_FRAC = 560.0, 0.47
ROADSIDE_KINDS = ("none", "curb", "guard_rail", "barrier")
_HOODS = ((25, 25, 25), (58, 52, 48), (150, 150, 155), (200, 200, 205), (30, 30, 140), (110, 60, 25), (70, 70, 75))


@dataclass(frozen=True)
class MarkingStyle:
    """How lane lines are painted in this drive (wear still changes every 80-350 m along the road).

    Attributes:
        line_w, yellow_w: width of white/edge lines and of the yellow center line(s) (m).
        dash_m, gap_m: dash length and gap of dashed lines (m).
        white, yellow: paint colors (BGR) before wear.
        worn_p: share of road sections with strongly worn paint.
        edge_yellow_left: one-way roads paint the left edge yellow (US divided highways).
    """

    line_w: float = 0.15
    yellow_w: float = 0.12
    dash_m: float = 3.0
    gap_m: float = 9.0
    white: tuple[int, int, int] = (235, 235, 232)
    yellow: tuple[int, int, int] = (40, 190, 235)
    worn_p: float = 0.15
    edge_yellow_left: bool = False


@dataclass(frozen=True)
class LaneLayout:
    """Lanes around the ego lane: ``left`` lanes to its left (the farthest ``oncoming`` of them
    carry oncoming traffic) and ``right`` lanes to its right; 1-4 lanes in all."""

    left: int = 1
    right: int = 1
    oncoming: int = 1

    @property
    def count(self) -> int:
        """Number of lanes."""
        return self.left + 1 + self.right


@dataclass(frozen=True)
class WorldParams:
    """Every randomized per-drive value (defaults: the unrandomized world).

    Attributes:
        randomize: the scale these were drawn with (0..1).
        cam_height_m, cam_forward_m, cam_lateral_m: camera mounting (m).
        focal_px: focal length (px) of the 640-px-wide image.
        horizon_frac: horizon row / image height at zero vehicle pitch (set by the mounting pitch).
        hood: hood in view; hood_top_frac, hood_side_frac: rows of its top edge (middle, sides) / height;
        hood_color: BGR.
        lane_width_m: lane width (m); lanes: the lane layout; marking: the paint style.
        asphalt: BGR of the road surface (None: today's per-seed gray); texture_gain: asphalt/grass grain.
        patches_per_km, cracks_per_km: repair patches and tar snakes on the road.
        roadside_left, roadside_right: one of :data:`ROADSIDE_KINDS`.
        grass: BGR beside the road (None: today's per-seed green).
        sky_top, sky_horizon: BGR (None: today's per-seed sky).
        light: global light level; clouds: std of the slow cloud brightness changes within the drive.
        shadow_level: darkness of shadows (None: today's per-seed value; near 1 = overcast).
        sun_shear, sun_stretch: shadows' slant (m along the road per m across) and length factor.
    """

    randomize: float = 0.0
    cam_height_m: float = 1.65
    cam_forward_m: float = 1.5
    cam_lateral_m: float = 0.0
    focal_px: float = DEFAULT_FOCAL_PX
    horizon_frac: float = DEFAULT_HORIZON_FRAC
    hood: bool = True
    hood_top_frac: float = 0.885
    hood_side_frac: float = 0.985
    hood_color: tuple[int, int, int] = (58, 52, 48)
    lane_width_m: float = 3.7
    lanes: LaneLayout = field(default_factory=LaneLayout)
    marking: MarkingStyle = field(default_factory=MarkingStyle)
    asphalt: tuple[int, int, int] | None = None
    texture_gain: float = 1.0
    patches_per_km: float = 0.0
    cracks_per_km: float = 0.0
    roadside_left: str = "none"
    roadside_right: str = "none"
    grass: tuple[int, int, int] | None = None
    sky_top: tuple[int, int, int] | None = None
    sky_horizon: tuple[int, int, int] | None = None
    light: float = 1.0
    clouds: float = 0.0
    shadow_level: float | None = None
    sun_shear: float = 0.0
    sun_stretch: float = 1.0

    @property
    def is_default(self) -> bool:
        """True for the unrandomized world."""
        return self == DEFAULT_WORLD

    def to_dict(self) -> dict:
        """Plain nested dict (stored in the ground-truth metadata)."""
        return asdict(self)


DEFAULT_WORLD = WorldParams()


def _color(rng: np.random.Generator, lo: tuple[int, ...], hi: tuple[int, ...]) -> tuple[int, int, int]:
    return tuple(int(rng.integers(a, b + 1)) for a, b in zip(lo, hi, strict=True))  # type: ignore[return-value]


def _white(rng: np.random.Generator) -> tuple[int, int, int]:
    """White paint: 185-250 gray, at most slightly yellowed (less blue)."""
    v = int(rng.integers(185, 251))
    return (v - int(rng.integers(0, 16)), v, v)


def _toward(default: tuple[int, ...], target: tuple[int, ...], r: float) -> tuple[int, int, int]:
    return tuple(int(round(d + r * (t - d))) for d, t in zip(default, target, strict=True))  # type: ignore[return-value]


def _camera(rng: np.random.Generator, r: float) -> dict:
    hood = bool(rng.random() >= 0.4 * r)
    top = 0.885 + r * rng.uniform(-0.09, 0.07)
    return dict(
        cam_height_m=1.65 + r * rng.uniform(-0.45, 0.75),  # 1.2 (sports car) .. 2.4 m (truck)
        cam_forward_m=1.5 + r * rng.uniform(-0.5, 1.0),
        cam_lateral_m=r * rng.uniform(-0.35, 0.35),
        focal_px=DEFAULT_FOCAL_PX * 2.0 ** (r * rng.uniform(-0.8, 0.45)),  # 320..766 px: ~45-90 deg wide
        horizon_frac=DEFAULT_HORIZON_FRAC + r * rng.uniform(-0.12, 0.13),  # 0.35 .. 0.60 H
        hood=hood, hood_top_frac=top, hood_side_frac=min(1.0, top + 0.1 + r * rng.uniform(-0.06, 0.05)),
        hood_color=_toward((58, 52, 48), _HOODS[int(rng.integers(len(_HOODS)))], r),
    )


def _lanes(rng: np.random.Generator, r: float) -> dict:
    width = 3.7 + r * rng.uniform(-0.9, 0.5)  # 2.8 .. 4.2 m
    if rng.random() < r:
        count = int(rng.choice([1, 2, 3, 4], p=[0.15, 0.35, 0.3, 0.2]))
        ego = int(rng.integers(0, count))
        two_way = count > 1 and ego < count - 1 and rng.random() < 0.6
        left = count - 1 - ego
        oncoming = int(rng.integers(1, left + 1)) if two_way else 0
        lanes = LaneLayout(left=left, right=ego, oncoming=oncoming)
    else:
        lanes = LaneLayout()
    style = MarkingStyle(
        line_w=0.15 + r * rng.uniform(-0.05, 0.1),
        yellow_w=0.12 + r * rng.uniform(-0.03, 0.08),
        dash_m=3.0 + r * rng.uniform(-1.5, 1.5),
        gap_m=9.0 + r * rng.uniform(-5.0, 3.0),
        white=_toward((235, 235, 232), _white(rng), r),
        yellow=_toward((40, 190, 235), _color(rng, (20, 150, 200), (90, 215, 250)), r),
        worn_p=0.15 + r * rng.uniform(0.0, 0.4),
        edge_yellow_left=bool(lanes.oncoming == 0 and lanes.count > 1 and rng.random() < 0.5),
    )
    return dict(lane_width_m=width, lanes=lanes, marking=style)


def _surface(rng: np.random.Generator, r: float) -> dict:
    gray = 95 + r * rng.uniform(-45.0, 65.0)  # dark fresh asphalt (50) .. light concrete (160)
    tint = r * rng.uniform(-6.0, 6.0)
    grass = [(45, 110, 70), (60, 130, 110), (70, 120, 140), (80, 110, 120)][int(rng.integers(4))]  # green .. dry
    sides = [ROADSIDE_KINDS[int(rng.choice(4, p=[0.4, 0.25, 0.2, 0.15]))] if rng.random() < r else "none"
             for _ in range(2)]
    return dict(
        asphalt=None if r == 0 else tuple(int(np.clip(gray + k * tint, 0, 255)) for k in (-1, 0, 1)),
        texture_gain=1.0 + r * rng.uniform(-0.4, 0.4),
        patches_per_km=r * rng.uniform(0.0, 30.0),
        cracks_per_km=r * rng.uniform(0.0, 40.0),
        roadside_left=sides[0], roadside_right=sides[1],
        grass=None if r == 0 else _toward((50, 112, 85), grass, r),
    )


def _sky(rng: np.random.Generator, r: float) -> dict:
    kind = int(rng.choice(3, p=[0.55, 0.3, 0.15])) if r > 0 else 0  # sunny, overcast, dusk
    top, horizon = (190, 132, 85), (225, 205, 190)
    level, shadow = 1.0, 0.42
    if kind == 1:
        top, horizon, shadow = (175, 172, 168), (205, 203, 200), rng.uniform(0.7, 0.92)
        level = rng.uniform(0.8, 1.0)
    elif kind == 2:
        top, horizon, shadow = (120, 80, 60), (120, 160, 225), rng.uniform(0.45, 0.75)
        level = rng.uniform(0.5, 0.75)
    sun_az = rng.uniform(-1.2, 1.2)  # sun azimuth relative to the road's normal (rad)
    sun_el = rng.uniform(0.25, 1.2) if kind != 2 else rng.uniform(0.08, 0.25)
    return dict(
        sky_top=None if kind == 0 else _toward((190, 132, 85), top, r),
        sky_horizon=None if kind == 0 else _toward((225, 205, 190), horizon, r),
        light=1.0 + r * (level - 1.0), clouds=r * rng.uniform(0.0, 0.15),
        shadow_level=None if kind == 0 else float(0.42 + r * (shadow - 0.42)),
        sun_shear=r * math.tan(sun_az), sun_stretch=1.0 + r * (min(1.0 / math.tan(sun_el), 4.0) / 1.5 - 1.0),
    )


def sample_world(seed: int, randomize: float) -> WorldParams:
    """Draw the world of a drive from its own stream; ``randomize`` in [0, 1] scales the ranges.

    Args:
        seed: the drive's seed.
        randomize: 0 = :data:`DEFAULT_WORLD`, 1 = the full ranges.

    Returns:
        The drive's :class:`WorldParams` (the same for the same arguments).
    """
    if not 0.0 <= randomize <= 1.0:
        raise ValueError(f"randomize must be in 0..1, got {randomize}")
    if randomize == 0.0:
        return DEFAULT_WORLD
    r = float(randomize)
    rng = np.random.default_rng([seed, WORLD_STREAM])
    kw = _camera(rng, r) | _lanes(rng, r) | _surface(rng, r) | _sky(rng, r)
    return WorldParams(randomize=r, **kw)


def world_from_dict(d: dict) -> WorldParams:
    """Inverse of :meth:`WorldParams.to_dict`."""
    kw = dict(d)
    kw["lanes"] = LaneLayout(**kw.get("lanes", {}))
    mk = dict(kw.get("marking", {}))
    for k in ("white", "yellow"):
        if k in mk:
            mk[k] = tuple(mk[k])
    kw["marking"] = MarkingStyle(**mk)
    for k in ("hood_color", "asphalt", "grass", "sky_top", "sky_horizon"):
        if kw.get(k) is not None:
            kw[k] = tuple(kw[k])
    return WorldParams(**kw)
