"""Synthetic world: determinism, clocks, speed profile, steering vs the visible road geometry."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from vbp_live.core.preprocess import CROP_PRESETS
from vbp_live.synth import DriveConfig, VehicleParams, pure_pursuit_swa, render_frames, simulate_drive


@pytest.fixture(scope="module")
def drive():
    return simulate_drive(DriveConfig(seed=7, frames=400))


def test_same_seed_same_drive_and_pixels():
    a = simulate_drive(DriveConfig(seed=11, frames=60))
    b = simulate_drive(DriveConfig(seed=11, frames=60))
    for name in ("frame_times_ns", "steering", "speed", "steer_times_ns", "steer_angle", "offset"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    pairs = zip(render_frames(a, start=50, stop=53), render_frames(b, start=50, stop=53), strict=True)
    for (fa, ma), (fb, mb) in pairs:
        assert fa.tobytes() == fb.tobytes()
        np.testing.assert_array_equal(ma.stack(), mb.stack())


def test_different_seed_different_drive():
    a = simulate_drive(DriveConfig(seed=1, frames=200))
    b = simulate_drive(DriveConfig(seed=2, frames=200))
    assert not np.allclose(a.steering, b.steering)
    assert not np.array_equal(a.frame_times_ns, b.frame_times_ns)
    fa, _ = next(render_frames(a, start=150, stop=151))
    fb, _ = next(render_frames(b, start=150, stop=151))
    assert np.abs(fa.astype(int) - fb.astype(int)).mean() > 5


def test_config_roundtrip_and_validation():
    cfg = DriveConfig(seed=3, frames=10, vehicle=VehicleParams(lookahead_m=10.0))
    assert DriveConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown DriveConfig keys"):
        DriveConfig.from_dict({"seed": 1, "fames": 3})
    with pytest.raises(ValueError, match="frames"):
        DriveConfig(frames=0)


def test_clocks_look_like_udacity(drive):
    dt_ms = np.diff(drive.frame_times_ns) / 1e6
    assert dt_ms.min() >= 48.6 and dt_ms.max() <= 51.4
    assert abs(np.median(dt_ms) - 50.0) < 0.3
    ds_ms = np.diff(drive.steer_times_ns) / 1e6
    assert abs(np.median(ds_ms) - 20.0) < 0.5 and ds_ms.std() > 0.1  # ~50 Hz with jitter
    assert ds_ms.min() > 0
    rate = (len(drive.steer_times_ns) - 1) / ((drive.steer_times_ns[-1] - drive.steer_times_ns[0]) / 1e9)
    assert 47.0 < rate < 51.0
    assert drive.steer_times_ns[0] < drive.frame_times_ns[0]  # reports cover every frame
    assert drive.steer_times_ns[-1] > drive.frame_times_ns[-1]


def test_speed_profile_has_slow_and_fast_stretches(drive):
    slow = drive.speed < 5.0
    assert 0.05 < slow.mean() < 0.95
    assert drive.speed.min() == 0.0 and drive.speed.max() > 8.0


def test_long_drive_curves_both_ways_and_stops():
    d = simulate_drive(DriveConfig(seed=5, frames=6000))  # 5 minutes, no rendering
    kappa = d.curvature
    assert kappa.max() > 1 / 100 and kappa.min() < -1 / 100  # sharp curves both ways
    assert (np.abs(kappa) < 1e-4).mean() > 0.1  # and straights
    assert np.abs(np.diff(kappa)).max() < 1e-3  # curvature changes smoothly frame to frame
    assert (d.speed < 5.0).mean() > 0.05
    assert 0.05 < np.abs(d.offset).max() < 1.2 and np.abs(d.heading_error).max() < 0.15


def test_steering_is_pure_pursuit_of_the_road(drive):
    swa = pure_pursuit_swa(drive.road, drive.s, drive.offset, drive.heading_error, drive.config.vehicle)
    err = drive.steering_cmd - swa
    assert np.abs(err).max() < 0.06 and err.std() < 0.02  # only the small command noise
    assert np.corrcoef(drive.steering, drive.steering_cmd)[0, 1] > 0.95  # measured angle tracks the command


def test_steering_follows_from_the_lookahead_pixel(drive):
    """Back-project the look-ahead pixel to the ground and redo pure pursuit from the image alone."""
    cam, veh = drive.config.camera, drive.config.vehicle
    uv = drive.lookahead_pixels()
    for i in range(0, drive.n_frames, 37):
        z, k = cam.ground_rows(np.array([uv[i, 1]]), float(drive.pitch[i]))
        fwd = z[0] + cam.forward_m  # relative to the rear axle
        left = -(uv[i, 0] - cam.cx) * k[0]
        swa = np.arctan2(2 * veh.wheelbase_m * left, fwd**2 + left**2) * veh.steering_ratio
        want = pure_pursuit_swa(drive.road, drive.s[i], drive.offset[i], drive.heading_error[i], veh)
        assert swa == pytest.approx(want, abs=1e-6)


def test_lookahead_and_road_inside_the_netsvf_band(drive):
    cam = drive.config.camera
    spec = CROP_PRESETS["netsvf"]
    v = drive.lookahead_pixels()[:, 1] / cam.height
    assert (v > spec.top).all() and (v < spec.bottom).all()
    horizon = np.array([cam.horizon_row(p) for p in drive.pitch]) / cam.height
    assert (horizon > 0.42).all() and (horizon < 0.48).all()
    z, _ = cam.ground_rows(np.array([spec.top * cam.height, spec.bottom * cam.height]), 0.0)
    assert 15.0 < z[0] < 35.0 and 3.0 < z[1] < 8.0  # the band sees the road from ~24 m down to ~6 m


def test_lookahead_shorter_changes_steering():
    a = simulate_drive(DriveConfig(seed=9, frames=300))
    b = simulate_drive(dataclasses.replace(a.config, vehicle=VehicleParams(lookahead_m=8.0)))
    assert not np.allclose(a.steering, b.steering)
