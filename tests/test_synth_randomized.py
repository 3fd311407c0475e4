"""The randomized synthetic world: randomize=0 is today's world bit for bit, ranges, exact masks."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest

from vbp_live.io.ground_truth import GroundTruthError, load_ground_truth, write_ground_truth
from vbp_live.synth import DriveConfig, Renderer, render_frames, simulate_drive
from vbp_live.synth.scene import MarkingPieces
from vbp_live.synth.sensor import sample_sensor
from vbp_live.synth.world import DEFAULT_WORLD, ROADSIDE_KINDS, sample_world, world_from_dict

# sha256 of labels, frames and masks (seeds 0 and 3, frames 0/40/119) computed on main before the world
# was randomizable (commit 59b307b); randomize=0 must keep reproducing it.
MAIN_HASH = "5e1d56b179cdf005d79419bbf352e87345403639aa8ec79c0799fcc386202f35"
SEEDS = range(40)


def _hash_of(randomize: float) -> str:
    h = hashlib.sha256()
    for seed in (0, 3):
        d = simulate_drive(DriveConfig(seed=seed, frames=120, randomize=randomize))
        for f in ("steering", "speed", "pitch", "offset", "steer_angle", "frame_times_ns"):
            h.update(np.ascontiguousarray(getattr(d, f)).tobytes())
        r = Renderer(d)
        for i in (0, 40, 119):
            frame, masks = r.render(i)
            h.update(frame.tobytes())
            h.update(masks.stack().tobytes())
    return h.hexdigest()


def test_randomize_zero_is_bit_identical_to_the_fixed_world():
    assert sample_world(5, 0.0) is DEFAULT_WORLD
    assert _hash_of(0.0) == MAIN_HASH


def test_same_seed_same_world_and_pixels():
    assert sample_world(8, 1.0) == sample_world(8, 1.0)
    a = simulate_drive(DriveConfig(seed=8, frames=40, randomize=1.0))
    b = simulate_drive(DriveConfig(seed=8, frames=40, randomize=1.0))
    assert a.world == b.world
    for (fa, ma), (fb, mb) in zip(render_frames(a, start=30, stop=32), render_frames(b, start=30, stop=32),
                                  strict=True):
        assert fa.tobytes() == fb.tobytes()
        np.testing.assert_array_equal(ma.stack(), mb.stack())


def test_labels_and_clocks_do_not_depend_on_the_world():
    """The world has its own random stream: road, vehicle, clocks and so the labels are unchanged."""
    a = simulate_drive(DriveConfig(seed=2, frames=200))
    b = simulate_drive(DriveConfig(seed=2, frames=200, randomize=1.0))
    for name in ("frame_times_ns", "steering", "speed", "steer_times_ns", "steer_angle", "curvature"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert a.world != b.world


@pytest.mark.parametrize("r", [1.0, 0.5])
def test_ranges_are_respected_and_scale_with_randomize(r):
    worlds = [sample_world(s, r) for s in SEEDS]
    assert all(abs(w.horizon_frac - 0.47) <= 0.13 * r + 1e-9 for w in worlds)
    assert all(560 * 2 ** (-0.8 * r) - 1e-6 <= w.focal_px <= 560 * 2 ** (0.45 * r) + 1e-6 for w in worlds)
    assert all(1.65 - 0.45 * r <= w.cam_height_m <= 1.65 + 0.75 * r for w in worlds)
    assert all(3.7 - 0.9 * r <= w.lane_width_m <= 3.7 + 0.5 * r for w in worlds)
    assert all(abs(w.cam_lateral_m) <= 0.35 * r for w in worlds)
    assert all(1 <= w.lanes.count <= 4 and 0 <= w.lanes.oncoming <= w.lanes.left for w in worlds)
    assert all(w.roadside_left in ROADSIDE_KINDS and w.roadside_right in ROADSIDE_KINDS for w in worlds)
    assert all(0.1 <= w.marking.line_w <= 0.25 and 1.5 <= w.marking.dash_m <= 4.5 for w in worlds)
    if r == 1.0:  # the full ranges are used: horizons spread, every lane count, ego lane in any position
        hz = np.array([w.horizon_frac for w in worlds])
        assert hz.min() < 0.4 and hz.max() > 0.55 and hz.std() > 0.05
        assert {w.lanes.count for w in worlds} == {1, 2, 3, 4}
        assert {w.lanes.right for w in worlds} == {0, 1, 2, 3}
        assert not all(w.hood for w in worlds) and any(w.hood for w in worlds)
        assert {w.roadside_left for w in worlds} | {w.roadside_right for w in worlds} == set(ROADSIDE_KINDS)


def test_rendered_horizon_row_spreads_over_seeds():
    rows = []
    for seed in range(12):
        d = simulate_drive(DriveConfig(seed=seed, frames=5, randomize=1.0))
        cam = d.camera
        rows.append(cam.horizon_row(float(d.pitch[0]) + cam.pitch_rad) / cam.height)
        assert rows[-1] == pytest.approx(d.world.horizon_frac, abs=0.01)  # vehicle pitch moves it a little
    assert max(rows) - min(rows) > 0.12


def test_world_roundtrips_through_the_ground_truth_dict():
    w = sample_world(13, 1.0)
    assert world_from_dict(json.loads(json.dumps(w.to_dict()))) == w


def _multi_lane_drive(min_lanes: int) -> object:
    seed = next(s for s in SEEDS if sample_world(s, 1.0).lanes.count >= min_lanes
                and sample_world(s, 1.0).roadside_right != "none")
    return simulate_drive(DriveConfig(seed=seed, frames=160, randomize=1.0))


@pytest.fixture(scope="module")
def wide():
    d = _multi_lane_drive(3)
    r = _no_sensor(Renderer(d))
    return d, {i: r.render(i) for i in (60, 150)}


def _no_sensor(r: Renderer) -> Renderer:
    """The scene alone: camera/sensor effects (blur, noise, JPEG) touch every pixel; tests/test_synth_sensor.py
    checks that their warp moves the masks with the frame."""
    r.sensor = sample_sensor(0, 0.0)
    return r


def _bare(drive, **changes):
    return _no_sensor(Renderer(dataclasses.replace(drive, scene=dataclasses.replace(drive.scene, **changes))))


def test_lane_mask_is_exactly_the_painted_markings(wide):
    d, rendered = wide
    empty = MarkingPieces(*(np.zeros(0) for _ in range(4)), np.zeros((0, 3), np.uint8))
    bare = _bare(d, markings=empty)
    for i, (frame, masks) in rendered.items():
        changed = (frame != bare.render(i)[0]).any(axis=2)
        assert not (changed & ~masks.lane).any(), "pixels changed outside the lane mask"
        assert changed[masks.lane].mean() > 0.95
        # paint lies on the road (up to a few far-tip pixels at the horizon, where the road and paint
        # polygons rasterize separately; the fixed world has the same)
        assert (masks.lane & ~masks.road).sum() <= 0.01 * masks.lane.sum()


def test_road_mask_covers_every_lane_and_the_hood_never(wide):
    d, rendered = wide
    r = Renderer(d)
    lanes = d.world.lanes
    for _frame, masks in rendered.values():
        v = int(0.9 * d.camera.height) if r.hood_mask is None else r.hood_r0 - 3
        row = np.nonzero(masks.road[v])[0]
        assert len(row) > 0
        if r.hood_mask is not None:
            assert not masks.stack()[:, r.hood_r0:][:, r.hood_mask].any()
    # the painted road edges are where the layout puts them: every lane's markings are inside the road mask
    assert lanes.count >= 3
    assert set(np.round(np.unique(d.scene.markings.d[d.scene.markings.width > 0]) / d.road.lane_width * 2)) >= {
        -(2 * lanes.right + 1), 2 * lanes.left + 1}


def test_roadside_and_defects_are_neither_lane_nor_road_paint(wide):
    d, rendered = wide
    r = _no_sensor(Renderer(d))
    assert r.roadside
    no_side = _no_sensor(Renderer(d))
    no_side.roadside = []
    for i, (frame, masks) in rendered.items():
        other, other_masks = no_side.render(i)
        changed = np.abs(frame.astype(int) - other.astype(int)).max(axis=2) > 8  # blurred shadow edges differ a bit
        assert changed.any()
        assert not (changed & (masks.lane | masks.road)).any()
        assert not (masks.road & ~other_masks.road).any()  # the roadside only ever hides road
    if len(d.scene.patches) or len(d.scene.cracks):
        flat = _bare(d, patches=np.zeros((0, 4, 2)), cracks=np.zeros((0, 4, 2)))
        for i, (frame, masks) in rendered.items():
            changed = (frame != flat.render(i)[0]).any(axis=2)
            assert not (changed & ~masks.road).any() and not (changed & masks.lane).any()


def _synth_cli(out, *options: str) -> subprocess.CompletedProcess:
    """``vbp-live synth`` of seed 4, 4 frames, ground truth only, with ``options``."""
    cmd = [sys.executable, "-m", "vbp_live.cli.main", "synth", "--out", str(out), "--seed", "4",
           "--frames", "4", "--format", "gt", "--workers", "1", *options]
    return subprocess.run(cmd, capture_output=True, text=True)


def test_cli_randomize_writes_the_world_and_rejects_out_of_range(tmp_path):
    bad = _synth_cli(tmp_path, "--randomize", "1.5")
    assert bad.returncode == 2 and "--randomize" in bad.stderr
    ok = _synth_cli(tmp_path, "--randomize", "0.7")
    assert ok.returncode == 0, ok.stderr
    gt = load_ground_truth(tmp_path / "ground_truth.npz")
    assert gt.config.randomize == 0.7 and gt.world == sample_world(4, 0.7)


def test_cli_sharp_curves_is_stored_in_the_ground_truth(tmp_path):
    bad = _synth_cli(tmp_path, "--sharp-curves", "2")
    assert bad.returncode == 2 and "--sharp-curves" in bad.stderr
    ok = _synth_cli(tmp_path, "--sharp-curves", "0.8")
    assert ok.returncode == 0, ok.stderr
    gt = load_ground_truth(tmp_path / "ground_truth.npz")
    assert gt.config.sharp_curves == 0.8
    assert gt.config == DriveConfig(seed=4, frames=4, sharp_curves=0.8, start_time_ns=gt.config.start_time_ns)


def test_a_damaged_world_record_is_a_ground_truth_error(tmp_path):
    d = simulate_drive(DriveConfig(seed=1, frames=2, randomize=1.0))
    path = write_ground_truth(tmp_path / "gt.npz", d, [m for _, m in render_frames(d)])
    assert load_ground_truth(path).world == d.world
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["world_json"] = np.array(json.dumps({"lanes": {"left": 1}, "no_such_key": 3}))
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(GroundTruthError, match="world_json"):
        load_ground_truth(tmp_path / "bad.npz")


def test_cli_h264_round_trip_writes_a_readable_bag(tmp_path):
    cmd = [sys.executable, "-m", "vbp_live.cli.main", "synth", "--out", str(tmp_path), "--seed", "4",
           "--frames", "6", "--format", "bag", "--workers", "1", "--randomize", "1", "--h264"]
    ok = subprocess.run(cmd, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    from vbp_live.recordings.formats import open_recording

    scan = open_recording([tmp_path / "synth_seed4.bag"]).scan()
    assert len(scan.frame_t) == 6
