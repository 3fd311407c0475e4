"""The ego vehicle: pure-pursuit steering, a kinematic bicycle, a speed profile and sensor clocks.

Conventions: steering wheel angle (SWA) in radians, positive = left; road-wheel angle =
SWA / steering ratio. The vehicle reference point is the rear axle; its state in road (Frenet)
coordinates is arc length ``s``, lateral offset ``e`` (m, left +) from the ego lane center and
heading error ``psi`` (rad, vehicle heading minus road heading).

The steering *command* is pure pursuit on the lane center at a fixed look-ahead (default 12 m,
i.e. inside the rows a network sees) plus a small slow noise; the *measured* wheel angle follows
the command with a short actuator lag. Lateral offset and heading errors come from a slowly
varying yaw disturbance (crosswind, road crown) that pure pursuit then corrects, so the steering
is a function of the geometry visible in the image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np

from vbp_live.synth.road import Road

SIM_DT = 0.01  # s, simulation step (100 Hz)

_MATH = SimpleNamespace(cos=math.cos, sin=math.sin, atan2=math.atan2)
_NUMPY = SimpleNamespace(cos=np.cos, sin=np.sin, atan2=np.arctan2)


@dataclass(frozen=True)
class VehicleParams:
    """Vehicle and controller constants (Lincoln MKZ defaults)."""

    wheelbase_m: float = 2.85
    steering_ratio: float = 14.8
    lookahead_m: float = 12.0
    actuator_lag_s: float = 0.08
    steer_noise_rad: float = 0.01  # SWA, std of the slow command noise
    yaw_disturbance: float = 0.03  # rad/s, std of the yaw-rate disturbance at 10 m/s


def pure_pursuit_swa(road: Road, s: np.ndarray | float, e: np.ndarray | float, psi: np.ndarray | float,
                     params: VehicleParams = VehicleParams()) -> np.ndarray:
    """Pure-pursuit steering wheel angle (rad, left +) towards the lane center ``lookahead_m`` ahead.

    The target is the ego lane center at arc length ``s + lookahead_m``; the vehicle (rear axle)
    sits at offset ``e`` with heading error ``psi``. Vectorized over its array arguments.
    """
    scalar = all(isinstance(v, float) for v in (s, e, psi))
    if not scalar:
        s, e, psi = np.asarray(s, np.float64), np.asarray(e, np.float64), np.asarray(psi, np.float64)
    m = _MATH if scalar else _NUMPY
    vx, vy = road.frenet_to_world(s, e)
    _, _, h = road.pose(s)
    theta = h + psi
    tx, ty, _ = road.pose(s + params.lookahead_m)
    dx, dy = tx - vx, ty - vy
    c, sn = m.cos(theta), m.sin(theta)
    fwd, left = dx * c + dy * sn, -dx * sn + dy * c
    ld2 = fwd * fwd + left * left
    delta = m.atan2(2.0 * params.wheelbase_m * left, ld2)  # = atan(2 L sin(alpha) / ld)
    return delta * params.steering_ratio


@dataclass
class _Phase:
    kind: str  # "wait", "cruise", "stop", "slow"
    until: float  # end time (s) for timed phases
    target: float  # target speed (m/s)
    decel: float = 2.0


@dataclass
class SimTrace:
    """Vehicle state sampled every ``SIM_DT`` seconds (arrays of equal length)."""

    t: np.ndarray
    s: np.ndarray
    e: np.ndarray
    psi: np.ndarray
    v: np.ndarray
    accel: np.ndarray
    swa_cmd: np.ndarray
    swa: np.ndarray
    pitch: np.ndarray
    stops_s: np.ndarray  # arc lengths where the vehicle came to a stop (rear axle)
    slow_spans: np.ndarray  # (K, 2) [t_start, t_end] of slow-traffic phases


class _SpeedPlanner:
    """Phase state machine: wait at a stop line, cruise, brake to a stop, crawl in slow traffic."""

    def __init__(self, rng: np.random.Generator, start_stopped: bool) -> None:
        self.rng = rng
        self.stops: list[float] = []
        self.slow: list[list[float]] = []
        self.phase = _Phase("wait", rng.uniform(1.0, 2.5), 0.0) if start_stopped else self._cruise(0.0)

    def _cruise(self, t: float) -> _Phase:
        return _Phase("cruise", t + self.rng.uniform(8.0, 25.0), self.rng.uniform(10.0, 19.0))

    def _next(self, t: float) -> _Phase:
        kind = self.phase.kind
        if kind == "cruise":
            pick = self.rng.choice(3, p=[0.4, 0.35, 0.25])
            if pick == 0:
                return _Phase("stop", math.inf, 0.0, self.rng.uniform(1.5, 2.8))
            if pick == 1:
                self.slow.append([t, math.inf])
                return _Phase("slow", t + self.rng.uniform(6.0, 15.0), self.rng.uniform(1.5, 4.5))
        if kind == "slow":
            self.slow[-1][1] = t
        return self._cruise(t)

    def accel(self, t: float, s: float, v: float, v_curve: float) -> float:
        """Commanded acceleration (m/s^2) at time ``t``; advances phases."""
        ph = self.phase
        if ph.kind == "stop" and v <= 0.0:
            self.stops.append(s)
            ph = self.phase = _Phase("wait", t + self.rng.uniform(2.0, 5.0), 0.0)
        elif t >= ph.until:
            ph = self.phase = self._next(t)
        if ph.kind == "wait":
            return -3.0
        if ph.kind == "stop":
            return -ph.decel
        target = min(ph.target, v_curve)
        return float(np.clip(0.8 * (target - v), -3.0, 1.8))


def _curve_limit(road: Road, s: float, v: float, a_lat: float = 2.2) -> float:
    i0 = int(s / road.ds)
    i1 = i0 + int((30.0 + 2.5 * v) / road.ds)
    k = float(np.abs(road.curvature[i0:i1 + 1]).max()) if i0 < len(road.curvature) else 0.0
    return math.sqrt(a_lat / max(k, 1e-6))


def simulate(road: Road, duration_s: float, rng: np.random.Generator, params: VehicleParams = VehicleParams(),
             start_stopped: bool = True) -> SimTrace:
    """Drive along ``road`` for ``duration_s`` seconds; returns the 100 Hz trace."""
    n = int(math.ceil(duration_s / SIM_DT)) + 1
    rng_speed, rng_noise = (np.random.default_rng(x) for x in rng.integers(0, 2**63, 2))
    s, e, psi = 0.0, float(rng_noise.normal(0, 0.15)), float(rng_noise.normal(0, 0.01))
    noise = rng_noise.standard_normal((n, 4))
    planner = _SpeedPlanner(rng_speed, start_stopped)
    out = np.zeros((n, 9))
    v = 0.0 if start_stopped else 12.0
    a = w = nz = pitch = 0.0
    swa = pure_pursuit_swa(road, s, e, psi, params)
    tau_w, tau_n, dt = 2.0, 0.6, SIM_DT
    for i in range(n):
        t = i * dt
        swa_cmd = pure_pursuit_swa(road, s, e, psi, params) + nz
        out[i] = (t, s, e, psi, v, a, swa_cmd, swa, pitch)
        a_cmd = planner.accel(t, s, v, _curve_limit(road, s, v))
        a += float(np.clip(a_cmd - a, -4.0 * dt, 4.0 * dt)) if planner.phase.kind != "stop" else a_cmd - a
        v = max(v + a * dt, 0.0)
        if v == 0.0:
            a = min(a, 0.0)
        swa += (swa_cmd - swa) * dt / params.actuator_lag_s
        kappa = road.kappa(s)
        s_dot = v * math.cos(psi) / (1.0 - kappa * e)
        yaw = v * math.tan(swa / params.steering_ratio) / params.wheelbase_m + w * min(v / 10.0, 1.5)
        s, e, psi = s + s_dot * dt, e + v * math.sin(psi) * dt, psi + (yaw - kappa * s_dot) * dt
        w += -w * dt / tau_w + params.yaw_disturbance * math.sqrt(2 * dt / tau_w) * noise[i, 0]
        nz += -nz * dt / tau_n + params.steer_noise_rad * math.sqrt(2 * dt / tau_n) * noise[i, 1]
        pitch += ((-0.003 * a + 0.0015 * noise[i, 2]) - pitch) * dt / 0.25
    slow = np.array([[a0, min(b0, duration_s)] for a0, b0 in planner.slow], np.float64).reshape(-1, 2)
    cols = [out[:, j].copy() for j in range(9)]
    return SimTrace(*cols, stops_s=np.array(planner.stops, np.float64), slow_spans=slow)


def frame_clock(rng: np.random.Generator, n_frames: int, t0_s: float = 0.1, fps: float = 20.0,
                jitter_s: float = 0.0007) -> np.ndarray:
    """Camera times (s): ``1/fps`` spacing with +-``jitter_s`` uniform jitter per stamp."""
    k = np.arange(n_frames, dtype=np.float64)
    return t0_s + k / fps + rng.uniform(-jitter_s, jitter_s, n_frames)


def report_clock(rng: np.random.Generator, t_end_s: float, rate_hz: float = 50.0, t0_s: float = 0.02) -> np.ndarray:
    """Steering-report times (s): ~``rate_hz`` with gaussian jitter and rare dropped messages."""
    period = 1.0 / rate_hz
    n = int(math.ceil((t_end_s - t0_s) / period * 1.05)) + 8
    steps = period + np.clip(rng.normal(0.0, 0.03 * period, n), -0.12 * period, 0.12 * period)
    steps += period * (rng.random(n) < 0.005)
    t = t0_s + np.concatenate([[0.0], np.cumsum(steps[:-1])])
    return t[t <= t_end_s]
