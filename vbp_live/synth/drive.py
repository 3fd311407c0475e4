"""One synthetic drive: road + vehicle simulation + scene, sampled on the sensor clocks."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import numpy as np

from vbp_live.synth.camera import Camera
from vbp_live.synth.road import SHARP_CURVES, Road, generate_road
from vbp_live.synth.scene import (
    Scene,
    horizontal_markings,
    lane_markings,
    ou_series,
    road_edges,
    road_patches,
    shadow_polygons,
    sun_slant,
    tar_snakes,
    traffic,
)
from vbp_live.synth.vehicle import SimTrace, VehicleParams, frame_clock, report_clock, simulate
from vbp_live.synth.world import DEFAULT_WORLD, WORLD_STREAM, WorldParams, sample_world

# 2016-11-17 23:30:41 UTC, the day Udacity's challenge-2 test bag was recorded
DEFAULT_START_NS = 1_479_425_441_000_000_000


@dataclass(frozen=True)
class DriveConfig:
    """Everything that defines a drive; the same config gives the same drive, bit for bit.

    Attributes:
        seed: random seed (road, traffic, noise, textures).
        frames: number of camera frames.
        fps: camera rate (Hz).
        steer_rate_hz: steering-report rate (Hz), jittered.
        start_time_ns: epoch time of the simulation start; camera stamps begin ~0.1 s later.
        start_stopped: begin waiting at a stop line (gives a slow stretch even in short drives).
        lane_width_m: lane width (m).
        vehicle: vehicle and controller constants.
        camera: the center camera.
        randomize: 0..1, how far the world (camera mounting, lanes, paint, surface, roadside, sky
            and light) is randomized per drive (:func:`vbp_live.synth.world.sample_world`);
            0 = the fixed world of earlier releases, bit for bit.
        sharp_curves: share of road sections that are sharp curves (radius 35-90 m), 0..1; the
            default 0.30 gives the roads of earlier releases, bit for bit.
    """

    seed: int = 0
    frames: int = 600
    fps: float = 20.0
    steer_rate_hz: float = 50.0
    start_time_ns: int = DEFAULT_START_NS
    start_stopped: bool = True
    lane_width_m: float = 3.7
    vehicle: VehicleParams = field(default_factory=VehicleParams)
    camera: Camera = field(default_factory=Camera)
    randomize: float = 0.0
    sharp_curves: float = SHARP_CURVES

    def __post_init__(self) -> None:
        if not 0.0 <= self.randomize <= 1.0:
            raise ValueError(f"randomize must be in 0..1, got {self.randomize}")
        if not 0.0 <= self.sharp_curves <= 1.0:
            raise ValueError(f"sharp_curves must be in 0..1, got {self.sharp_curves}")
        if self.frames < 1:
            raise ValueError(f"frames must be >= 1, got {self.frames}")
        if self.fps <= 0 or self.steer_rate_hz <= 0:
            raise ValueError("fps and steer_rate_hz must be positive")

    def to_dict(self) -> dict[str, Any]:
        """Nested plain dict (JSON/YAML friendly)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DriveConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown DriveConfig keys {unknown}; known: {sorted(names)}")
        kw = dict(d)
        if isinstance(kw.get("vehicle"), Mapping):
            kw["vehicle"] = VehicleParams(**kw["vehicle"])
        if isinstance(kw.get("camera"), Mapping):
            kw["camera"] = Camera(**kw["camera"])
        return cls(**kw)


@dataclass
class Drive:
    """A simulated drive. Times are epoch nanoseconds; angles radians (left +); speeds m/s.

    Per camera frame (length ``n_frames``): ``frame_times_ns``, ``steering`` (measured steering
    wheel angle: the label), ``steering_cmd`` (pure-pursuit command), ``speed``, ``accel``,
    ``s`` (arc length of the rear axle), ``offset`` (lateral offset from the lane center, left +),
    ``heading_error``, ``curvature`` (road curvature at ``s``), ``pitch``.

    Steering reports (~50 Hz): ``steer_times_ns``, ``steer_angle``, ``steer_cmd``,
    ``steer_torque``, ``steer_speed``.
    """

    config: DriveConfig
    road: Road
    scene: Scene
    trace: SimTrace
    frame_times_ns: np.ndarray
    steering: np.ndarray
    steering_cmd: np.ndarray
    speed: np.ndarray
    accel: np.ndarray
    s: np.ndarray
    offset: np.ndarray
    heading_error: np.ndarray
    curvature: np.ndarray
    pitch: np.ndarray
    steer_times_ns: np.ndarray
    steer_angle: np.ndarray
    steer_cmd: np.ndarray
    steer_torque: np.ndarray
    steer_speed: np.ndarray
    world: WorldParams = DEFAULT_WORLD

    @property
    def camera(self) -> Camera:
        """The center camera as mounted in this drive (``config.camera`` with the world's mounting)."""
        return mounted_camera(self.config.camera, self.world)

    @property
    def n_frames(self) -> int:
        """Number of camera frames."""
        return len(self.frame_times_ns)

    def camera_pose(self, i: int, camera: Camera | None = None) -> tuple[float, float, float]:
        """World ``(x, y, heading)`` of ``camera`` (default: the drive's camera) at frame ``i``."""
        cam = camera or self.camera
        x, y = self.road.frenet_to_world(float(self.s[i]), float(self.offset[i]))
        theta = float(self.road.pose(float(self.s[i]))[2]) + float(self.heading_error[i])
        c, sn = math.cos(theta), math.sin(theta)
        return x + cam.forward_m * c - cam.lateral_m * sn, y + cam.forward_m * sn + cam.lateral_m * c, theta

    def lookahead_pixels(self, camera: Camera | None = None) -> np.ndarray:
        """(N, 2) pixel ``(u, v)`` of the pure-pursuit target (lane center ``lookahead_m`` ahead) per frame."""
        cam = camera or self.camera
        x, y = self.road.frenet_to_world(self.s, self.offset)
        theta = self.road.pose(self.s)[2] + self.heading_error
        c, sn = np.cos(theta), np.sin(theta)
        px, py = x + cam.forward_m * c - cam.lateral_m * sn, y + cam.forward_m * sn + cam.lateral_m * c
        tx, ty, _ = self.road.pose(self.s + self.config.vehicle.lookahead_m)
        fwd, left = (tx - px) * c + (ty - py) * sn, -(tx - px) * sn + (ty - py) * c
        u, v, _ = cam.project(fwd, left, 0.0, self.pitch + cam.pitch_rad)
        return np.stack([u, v], 1)


def mounted_camera(camera: Camera, world: WorldParams) -> Camera:
    """``camera`` with the world's mounting: height and focal length scaled, offsets added, pitch, hood."""
    if world.is_default:
        return camera
    d = DEFAULT_WORLD
    focal = camera.focal_px * world.focal_px / d.focal_px
    return replace(
        camera, height_m=camera.height_m * world.cam_height_m / d.cam_height_m, focal_px=focal,
        forward_m=camera.forward_m + world.cam_forward_m - d.cam_forward_m,
        lateral_m=camera.lateral_m + world.cam_lateral_m, hood=camera.hood and world.hood,
        pitch_rad=camera.pitch_rad + math.atan((camera.horizon_frac - world.horizon_frac) * camera.height / focal),
    )


def _streams(seed: int) -> dict[str, np.random.Generator]:
    names = ("road", "vehicle", "clock", "steer_clock", "markings", "hmarks", "shadows", "traffic", "light")
    children = np.random.SeedSequence(seed).spawn(len(names))
    return {n: np.random.default_rng(c) for n, c in zip(names, children, strict=True)}


def _scene(cfg: DriveConfig, rng: dict[str, np.random.Generator], road: Road, trace: SimTrace,
           t_frames: np.ndarray, world: WorldParams = DEFAULT_WORLD) -> Scene:
    light, lanes, w = rng["light"], world.lanes, road.lane_width
    gray = int(light.integers(78, 112))
    asphalt = world.asphalt or (gray, gray + 2, gray + 4)
    stop_lines = trace.stops_s + cfg.camera.forward_m + light.uniform(5.5, 8.0, len(trace.stops_s))
    if cfg.start_stopped:
        stop_lines = np.concatenate([[cfg.camera.forward_m + 7.0], stop_lines])
    length = road.length
    hmarks, stop_s = horizontal_markings(rng["hmarks"], stop_lines, length, w, lanes)
    shadows = sun_slant(shadow_polygons(rng["shadows"], length, w, lanes), world.sun_shear, world.sun_stretch)
    s_ego = np.interp(t_frames, trace.t, trace.s)
    v_ego = np.interp(t_frames, trace.t, trace.v)
    cars = traffic(rng["traffic"], t_frames, s_ego, v_ego, trace.slow_spans, w, length, lanes)
    brightness = np.clip(ou_series(light, len(t_frames), 1.0, 0.08, 150.0), 0.72, 1.25)
    sky_b = light.uniform(0.8, 1.0)
    scene = Scene(
        markings=lane_markings(rng["markings"], length, w, asphalt, lanes, world.marking),
        hmarks=hmarks,
        shadows=shadows,
        shadow_s=np.array([[p[:, 0].min(), p[:, 0].max()] for p in shadows]).reshape(-1, 2),
        shadow_level=float(light.uniform(0.3, 0.55)),
        cars=cars,
        brightness=brightness,
        sky_top=(int(200 * sky_b), int(140 * sky_b), int(90 * sky_b)),
        sky_horizon=(int(235 * sky_b), int(215 * sky_b), int(200 * sky_b)),
        grass=(int(light.integers(40, 70)), int(light.integers(95, 130)), int(light.integers(70, 100))),
        asphalt=asphalt,
        texture_seed=int(light.integers(0, 2**31)),
        stop_lines_s=stop_s,
    )
    return scene if world.is_default else _world_scene(scene, cfg.seed, world, road)


def _world_scene(scene: Scene, seed: int, world: WorldParams, road: Road) -> Scene:
    """Apply the randomized world to a scene: sky, grass, shadows, clouds, patches and tar snakes.

    Within-drive draws (clouds, patches, tar snakes) come from ``default_rng([seed, 0x57, k])``.
    """
    n = len(scene.brightness)
    clouds = np.exp(ou_series(np.random.default_rng([seed, WORLD_STREAM, 1]), n, 0.0, world.clouds, 80.0))
    edges = road_edges(road.lane_width, world.lanes)
    extra = np.random.default_rng([seed, WORLD_STREAM, 2])
    patches, colors = road_patches(extra, road.length, edges, world.patches_per_km, scene.asphalt)
    crack = tuple(int(0.45 * c) for c in scene.asphalt)
    return replace(
        scene, brightness=np.clip(scene.brightness * world.light * clouds, 0.3, 1.4),
        sky_top=world.sky_top or scene.sky_top, sky_horizon=world.sky_horizon or scene.sky_horizon,
        grass=world.grass or scene.grass,
        shadow_level=scene.shadow_level if world.shadow_level is None else world.shadow_level,
        patches=patches, patch_colors=colors, crack_color=crack,
        cracks=tar_snakes(extra, road.length, edges, world.cracks_per_km),
    )


def simulate_drive(config: DriveConfig) -> Drive:
    """Simulate a drive: road, vehicle, sensor clocks, scene. Deterministic for ``config``.

    Args:
        config: the drive's definition (seed, length, rates, camera, vehicle).

    Returns:
        A :class:`Drive`; render it with :func:`vbp_live.synth.render_frames`.
    """
    rng = _streams(config.seed)
    world = sample_world(config.seed, config.randomize)
    t_frames = frame_clock(rng["clock"], config.frames, 0.1, config.fps)
    duration = float(t_frames[-1]) + 0.3
    lane_width = config.lane_width_m
    if not world.is_default:
        lane_width *= world.lane_width_m / DEFAULT_WORLD.lane_width_m
    road = generate_road(rng["road"], 22.0 * duration + 250.0, lane_width, config.sharp_curves)
    trace = simulate(road, duration, rng["vehicle"], config.vehicle, config.start_stopped)
    t_steer = report_clock(rng["steer_clock"], duration - 0.05, config.steer_rate_hz)
    scene = _scene(config, rng, road, trace, t_frames, world)

    def at(t: np.ndarray, arr: np.ndarray) -> np.ndarray:
        return np.interp(t, trace.t, arr)

    s = at(t_frames, trace.s)
    swa_s, cmd_s = at(t_steer, trace.swa), at(t_steer, trace.swa_cmd)
    v_s = at(t_steer, trace.v)
    return Drive(
        config=config, road=road, scene=scene, trace=trace,
        frame_times_ns=config.start_time_ns + np.round(t_frames * 1e9).astype(np.int64),
        steering=at(t_frames, trace.swa), steering_cmd=at(t_frames, trace.swa_cmd),
        speed=at(t_frames, trace.v), accel=at(t_frames, trace.accel), s=s,
        offset=at(t_frames, trace.e), heading_error=at(t_frames, trace.psi),
        curvature=road.kappa(s), pitch=at(t_frames, trace.pitch),
        steer_times_ns=config.start_time_ns + np.round(t_steer * 1e9).astype(np.int64),
        steer_angle=swa_s, steer_cmd=cmd_s,
        steer_torque=2.0 * (cmd_s - swa_s) + 0.02 * v_s * swa_s,  # Nm: driver effort + self-aligning
        steer_speed=v_s,
        world=world,
    )
