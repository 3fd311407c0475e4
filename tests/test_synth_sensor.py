"""Camera and sensor effects (vbp_live.synth.sensor): identity at 0, determinism, exact masks, ranges."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from vbp_live.io.synth_writers import H264RoundTrip, drive_h264_crf, write_outputs
from vbp_live.synth import DriveConfig, Renderer, simulate_drive
from vbp_live.synth import sensor as sn
from vbp_live.synth.sensor import SensorParams, apply_sensor, sample_sensor

H, W = 480, 640
GEOMETRY = SensorParams(seed=1, randomize=1.0, roll_deg=sn.ROLL_MAX_DEG, k1=sn.K1_RANGE[0], k2=sn.K2_MAX)


def _scene(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A gray (100) frame with random white (200) polygons and two masks: the polygons, and its left half."""
    rng = np.random.default_rng(seed)
    frame = np.full((H, W, 3), 100, np.uint8)
    shapes = np.zeros((H, W), np.uint8)
    for _ in range(12):
        c = rng.uniform([0, 0], [W, H])
        poly = np.round(c + rng.uniform(-60, 60, (5, 2))).astype(np.int32)
        cv2.fillPoly(frame, [poly], (200, 200, 200))
        cv2.fillPoly(shapes, [poly], 1)
    half = np.zeros((H, W), bool)
    half[:, : W // 2] = True
    return frame, np.stack([shapes.astype(bool), half])


def _textured(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur(rng.integers(40, 220, (H, W, 3), dtype=np.uint8), (7, 7), 2)


def test_randomize_zero_is_identity():
    frame, masks = _scene()
    p = sample_sensor(7, 0.0)
    assert p == SensorParams(seed=7) and p.is_identity
    out, out_masks = apply_sensor(frame, masks, p, 3, 20.0)
    assert out is frame and out_masks is masks
    assert (out == _scene()[0]).all()


def test_randomize_must_be_in_0_1():
    with pytest.raises(ValueError, match="randomize"):
        sample_sensor(0, 1.5)
    with pytest.raises(ValueError, match="randomize"):
        sample_sensor(0, -0.1)


def test_ranges_respected_and_scaled_by_randomize():
    for r in (1.0, 0.3):
        ps = [sample_sensor(s, r) for s in range(300)]
        assert all(abs(p.roll_deg) <= r * sn.ROLL_MAX_DEG for p in ps)
        assert all(r * sn.K1_RANGE[0] <= p.k1 <= 0 and abs(p.k2) <= r * sn.K2_MAX for p in ps)
        assert all(0 <= p.blur_px_per_mps <= r * sn.BLUR_MAX_PX_PER_MPS for p in ps)
        assert all(r * sn.READ_NOISE_RANGE[0] <= p.read_noise <= r * sn.READ_NOISE_RANGE[1] for p in ps)
        assert all(0 <= p.shot_gain <= r * sn.SHOT_GAIN_MAX for p in ps)
        q_lo = round(95 - r * (95 - sn.JPEG_QUALITY_RANGE[0]))
        assert all(q_lo <= p.jpeg_quality <= sn.JPEG_QUALITY_RANGE[1] for p in ps)
        assert all(0 <= p.vignette <= r * sn.VIGNETTE_MAX for p in ps)
        assert all(p.wb_gains[1] == 1.0 and max(abs(np.log(p.wb_gains))) <= r * sn.WB_LOG_MAX + 1e-12 for p in ps)
        assert all(r * sn.EXPOSURE_EV_RANGE[0] <= p.exposure_ev <= r * sn.EXPOSURE_EV_RANGE[1] for p in ps)
        assert all(sn.H264_CRF_RANGE[0] <= p.h264_crf <= sn.H264_CRF_RANGE[1] for p in ps)
        gains = np.array([sn.frame_gains(p, i) for p in ps[:20] for i in range(0, 2000, 50)])
        lim = np.exp(r * (sn.WB_LOG_MAX + sn.DRIFT_WB_LOG_MAX)) * 2 ** (r * (0.6 + sn.DRIFT_EV_MAX))
        assert gains.min() >= 1 / lim and gains.max() <= lim
    p1 = [sample_sensor(s, 1.0) for s in range(300)]
    assert max(abs(p.roll_deg) for p in p1) > 2.5 and min(p.jpeg_quality for p in p1) <= 35  # ranges are used


def test_per_drive_stream_is_its_own():
    assert sample_sensor(3, 0.8) == sample_sensor(3, 0.8)
    assert sample_sensor(3, 0.8) != sample_sensor(4, 0.8)


def test_exposure_and_white_balance_drift_slowly():
    p = sample_sensor(5, 1.0)
    g = np.array([sn.frame_gains(p, i) for i in range(1200)])  # (N, 3)
    step = np.abs(np.diff(np.log(g), axis=0)).max()
    assert step < 0.005  # < 0.5 % per frame
    assert np.ptp(np.log(g[:, 0])) > 10 * step  # but it does move over the drive


def test_deterministic_per_frame_in_any_order():
    frame, masks = _scene()
    p = sample_sensor(11, 1.0)
    forward = [apply_sensor(frame, masks, p, i, 12.0) for i in range(4)]
    sn._prepare.cache_clear()  # a fresh worker process builds its tables again
    backward = [apply_sensor(frame, masks, p, i, 12.0) for i in reversed(range(4))][::-1]
    for (fa, ma), (fb, mb) in zip(forward, backward, strict=True):
        assert (fa == fb).all() and (ma == mb).all()
    assert (forward[0][0] != forward[1][0]).any()  # new noise every frame


def test_masks_stay_exact_under_the_warp():
    frame, masks = _scene()
    out, out_masks = apply_sensor(frame, masks, GEOMETRY, 0, 0.0)  # geometry only: no photometric effect
    assert out_masks.dtype == bool and out_masks.shape == masks.shape
    shape = out_masks[0]
    inside = cv2.erode(shape.astype(np.uint8), np.ones((5, 5), np.uint8), borderType=cv2.BORDER_CONSTANT,
                       borderValue=0).astype(bool)
    outside = ~cv2.dilate(shape.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    assert (out[inside] == 200).all() and (out[outside] == 100).all()
    painted = out[..., 0] > 150  # what the frame shows as the shapes after bilinear resampling
    edge = ~inside & ~outside
    assert (painted[edge] == shape[edge]).mean() > 0.9
    assert (painted != shape).sum() < 0.1 * edge.sum()
    assert not (out_masks[1] & (np.arange(W) > W // 2 + 30)).any()  # the half-frame mask is warped too
    assert 0.85 < shape.sum() / masks[0].sum() < 1.25  # a slight zoom, not a different shape


def test_warp_zooms_just_enough_for_no_border():
    for p in (GEOMETRY, dataclasses.replace(GEOMETRY, roll_deg=-2.0, k2=-sn.K2_MAX), sample_sensor(9, 1.0)):
        mx, my = sn.source_coords(p, H, W)
        assert mx.min() >= -1e-3 and mx.max() <= W - 1 + 1e-3
        assert my.min() >= -1e-3 and my.max() <= H - 1 + 1e-3
        touch = min(mx.min(), my.min(), W - 1 - mx.max(), H - 1 - my.max())
        assert touch < 1.0  # tight: the zoom is no larger than needed
    black = np.full((H, W, 3), 180, np.uint8)
    for seed in range(5):
        out, _ = apply_sensor(black, np.zeros((1, H, W), bool), sample_sensor(seed, 1.0), 0, 25.0)
        border = np.concatenate([out[0], out[-1], out[:, 0], out[:, -1]])
        assert border.min() > 40  # no black edge (vignetting and exposure darken at most ~2x)


def test_photometric_effects_never_touch_masks():
    frame, masks = _scene()
    p = dataclasses.replace(sample_sensor(2, 1.0), roll_deg=0.0, k1=0.0, k2=0.0)
    out, out_masks = apply_sensor(frame, masks, p, 5, 30.0)
    assert out_masks is masks
    assert (out != frame).any()


def test_noise_matches_shot_plus_read_model():
    p = SensorParams(seed=4, randomize=1.0, read_noise=3.0, shot_gain=0.2)
    flat = np.full((H, W, 3), 128, np.uint8)
    out, _ = apply_sensor(flat, np.zeros((1, H, W), bool), p, 0, 0.0)
    expected = np.sqrt(3.0**2 + 0.2 * 128)
    assert abs(out.astype(float).std() - expected) < 0.1 * expected
    assert abs(out.astype(float).mean() - 128) < 0.2


def test_motion_blur_grows_with_speed():
    p = SensorParams(seed=4, randomize=1.0, blur_px_per_mps=0.3, blur_angle_deg=0.0)
    frame = _textured()

    def sharpness(img: np.ndarray) -> float:
        return float(np.abs(np.diff(img.astype(float), axis=1)).mean())

    s = [sharpness(apply_sensor(frame, np.zeros((1, H, W), bool), p, 0, v)[0]) for v in (0.0, 10.0, 25.0)]
    assert s[0] == sharpness(frame) and s[0] > s[1] > s[2]
    k = sn.blur_kernel(6.3, 30.0)
    assert k.shape[0] % 2 == 1 and abs(k.sum() - 1) < 1e-6


def test_vignetting_darkens_corners_only():
    p = SensorParams(seed=0, randomize=1.0, vignette=0.4)
    out, _ = apply_sensor(np.full((H, W, 3), 200, np.uint8), np.zeros((1, H, W), bool), p, 0, 0.0)
    assert abs(int(out[H // 2, W // 2, 1]) - 200) <= 1 and abs(int(out[0, 0, 1]) - 120) <= 2


def test_jpeg_quality_adds_block_artifacts():
    frame = _textured()
    p = SensorParams(seed=0, randomize=1.0, jpeg_quality=30)
    out, _ = apply_sensor(frame, np.zeros((1, H, W), bool), p, 0, 0.0)
    err = np.abs(out.astype(float) - frame).mean()
    assert 1.0 < err < 20.0


def _randomized_drive(r: float, frames: int = 12):
    """A drive with ``config.randomize = r`` (a DriveConfig subclass where DriveConfig has no such field)."""
    if "randomize" in {f.name for f in dataclasses.fields(DriveConfig)}:
        return simulate_drive(DriveConfig(seed=6, frames=frames, randomize=r))
    drive = simulate_drive(DriveConfig(seed=6, frames=frames))
    cfg = dataclasses.make_dataclass("Cfg", [("randomize", float, r)], bases=(DriveConfig,), frozen=True)
    return dataclasses.replace(drive, config=cfg(**{f.name: getattr(drive.config, f.name)
                                                    for f in dataclasses.fields(DriveConfig)}))


def test_renderer_applies_the_sensor_when_randomized():
    plain = Renderer(_randomized_drive(0.0)).render(8)
    drive = _randomized_drive(0.9)
    frame, masks = Renderer(drive).render(8)
    again, masks2 = Renderer(drive).render(8)
    assert (frame == again).all() and (masks.stack() == masks2.stack()).all()
    assert frame.shape == plain[0].shape and (frame != plain[0]).any()
    assert masks.lane.dtype == bool and masks.lane.any() and masks.road.any()
    gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY).astype(float)
    assert gray[masks.lane].mean() > gray[masks.road & ~masks.lane].mean() + 30  # masks still on the paint


def test_h264_round_trip_option(tmp_path):
    drive = simulate_drive(DriveConfig(seed=2, frames=6))
    assert drive_h264_crf(drive) == sn.H264_CRF_RANGE[0]  # randomize 0: the mildest CRF
    assert sn.H264_CRF_RANGE[0] <= drive_h264_crf(_randomized_drive(1.0)) <= sn.H264_CRF_RANGE[1]
    runs = []
    for name, h264 in (("plain", False), ("a", True), ("b", True)):
        write_outputs(drive, tmp_path / name, ["dump"], h264=h264)
        runs.append(sorted((tmp_path / name / "dump" / "center").glob("*.jpg")))
    plain, a, b = ([cv2.imread(str(f)) for f in files] for files in runs)
    assert all(x.read_bytes() == y.read_bytes() for x, y in zip(runs[1], runs[2], strict=True))  # deterministic
    assert any((x != y).any() for x, y in zip(plain, a, strict=True))
    for x, y in zip(plain, a, strict=True):
        assert cv2.PSNR(x, y) > 28  # compression artifacts, not a different picture
    trip = H264RoundTrip(40)
    frame = _textured()
    assert cv2.PSNR(trip(frame), frame) < cv2.PSNR(H264RoundTrip(18)(frame), frame)  # CRF sets the damage
