"""vbp-live prep on ROS1 bags: synthetic-world drives (exact labels) and hand-made fault bags."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from prep_fixtures import CENTER, T0, flat_jpeg, steering_series, write_bag

from data_prep.config import load_config
from data_prep.pipeline import prepare, synchronize
from vbp_live.core.errors import InputError
from vbp_live.core.preprocess import preprocess_frame
from vbp_live.io.dataset import PreparedDataset
from vbp_live.io.synth_writers import iter_records
from vbp_live.io.synth_writers import write_bag as synth_write_bag
from vbp_live.synth import DriveConfig, simulate_drive

MS = 1_000_000


def run(tmp_path: Path, inputs, name: str = "out", **over):
    """prepare() with dotted config overrides; returns (result, dataset, float64 index rows)."""
    res = prepare([str(p) for p in inputs], tmp_path / name, load_config(None, over), progress=False)
    with open(res.out_dir / "index.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return res, PreparedDataset(res.out_dir), rows


def col(rows, name, kind=float):
    return np.array([kind(r[name]) for r in rows])


def interp(t, st, sv):
    """np.interp on ns times made relative first (float64 epoch ns would round to 256 ns)."""
    base = int(np.min(st))
    return np.interp(np.asarray(t, np.int64) - base, np.asarray(st, np.int64) - base, np.asarray(sv, np.float64))


@pytest.fixture(scope="module")
def synth_bags(tmp_path_factory):
    drive = simulate_drive(DriveConfig(seed=5, frames=36, start_stopped=False))
    paths = synth_write_bag(drive, tmp_path_factory.mktemp("synth"), split=3)
    return drive, paths


def test_synthetic_world_split_bags_exact_labels_and_frames(tmp_path, synth_bags):
    drive, paths = synth_bags
    assert len(paths) == 3
    res, ds, rows = run(tmp_path, paths[::-1])  # given out of order: merged by time anyway
    assert res.counts == {"read": 36, "kept": 36, "dropped": {}}
    np.testing.assert_array_equal(col(rows, "timestamp_ns", int), drive.frame_times_ns)
    st, ft = drive.steer_times_ns, drive.frame_times_ns
    # bags store float32; linear interpolation of those samples at the camera stamps
    want_steer = interp(ft, st, drive.steer_angle.astype(np.float32))
    want_speed = interp(ft, st, drive.steer_speed.astype(np.float32))
    np.testing.assert_allclose(col(rows, "steering_rad"), want_steer, rtol=0, atol=1e-12)
    np.testing.assert_allclose(col(rows, "speed_mps"), want_speed, rtol=0, atol=1e-12)
    assert np.abs(col(rows, "steering_rad") - drive.steering).max() < 0.01  # close to the true per-frame label
    assert sorted(set(col(rows, "source", str))) == sorted(p.name for p in paths)
    spec = ds.crop
    for rec, got in zip(iter_records(drive), ds.frames, strict=False):  # the very frames, through THE crop function
        gray = cv2.imdecode(np.frombuffer(rec.jpeg(), np.uint8), cv2.IMREAD_GRAYSCALE)
        np.testing.assert_array_equal(got, preprocess_frame(gray, spec))


def test_synthetic_world_zoh_via_sync_only_api(synth_bags):
    drive, paths = synth_bags
    _, plan = synchronize(paths, load_config(None, {"sync.method": "zoh"}))
    idx = np.searchsorted(drive.steer_times_ns, drive.frame_times_ns, side="right") - 1
    np.testing.assert_array_equal(plan.t, drive.frame_times_ns)
    np.testing.assert_array_equal(plan.steering, drive.steer_angle.astype(np.float32)[idx].astype(np.float64))


def _frames(n: int, start: int = T0 + 100 * MS, value=lambda k: 40 + 3 * k):
    return [(start + k * 50 * MS, flat_jpeg(value(k))) for k in range(n)]


def test_drop_reasons_counted_exactly_never_zero_filled(tmp_path):
    frames = _frames(60)
    ft = np.array([t for t, _ in frames])
    speed = lambda t: 3.0 + 6.0 * (t - T0) / 3e9  # noqa: E731 - ramps 3 -> 9 m/s over the drive
    steer = [(t, a, float(np.float32(speed(t)))) for t, a, _ in steering_series(ft[5] - 10 * MS, ft[54] + 5 * MS)]
    steer = [s for s in steer if not ft[20] < s[0] < ft[30]]  # a 0.5 s hole in the reports
    bag = write_bag(tmp_path / "a.bag", frames, steer)
    res, ds, rows = run(tmp_path, [bag], **{"sync.max_gap_s": 0.25})
    st = np.array([s[0] for s in steer])
    expect = {}
    for t in ft:  # independent, frame-by-frame bookkeeping
        if t < st[0]:
            why = "steering_before_first"
        elif t > st[-1]:
            why = "steering_after_last"
        elif st[st <= t].max() != t and st[st > t].min() - st[st <= t].max() > 250 * MS:
            why = "steering_gap"
        elif not interp([t], st, [s[2] for s in steer])[0] > 5.0:
            why = "slow"
        else:
            continue
        expect[why] = expect.get(why, 0) + 1
    assert res.counts["dropped"] == expect and res.counts["read"] == 60
    assert res.counts["kept"] == 60 - sum(expect.values()) == len(ds)
    assert np.isfinite(ds.steering).all() and (ds.speed > 5).all()
    with open(res.out_dir / "dropped.csv", newline="") as f:
        dropped = list(csv.DictReader(f))
    assert len(dropped) == sum(expect.values()) and {r["reason"] for r in dropped} == set(expect)
    kept_t = col(rows, "timestamp_ns", int)
    np.testing.assert_allclose(col(rows, "steering_rad"), interp(kept_t, st, [s[1] for s in steer]), atol=1e-12)


def test_zero_header_stamps_fall_back_to_record_time(tmp_path):
    rec = [T0 + 100 * MS + k * 50 * MS + 7 for k in range(10)]
    bag = write_bag(tmp_path / "z.bag", [(0, flat_jpeg(90))] * 10, steering_series(T0, T0 + 800 * MS), record_ns=rec)
    res, ds, _ = run(tmp_path, [bag])
    np.testing.assert_array_equal(ds.timestamps_ns, rec)
    assert res.info["zero_stamp_frames"] == 10 and res.counts["kept"] == 10


def test_reordered_and_duplicate_stamps(tmp_path):
    stamps = [T0 + 100 * MS + k * 50 * MS for k in range(12)]
    order = [0, 2, 1, 3, 5, 4, 6, 7, 7, 9, 8, 11]  # record order; stamp index 7 twice, 10 missing
    frames = [(stamps[k], flat_jpeg(20 * (k % 12) + 10)) for k in order]
    steer = steering_series(T0, T0 + 900 * MS)
    steer = steer[::-1] + [steer[10]]  # reports recorded newest first, one repeated
    bag = write_bag(tmp_path / "r.bag", frames, steer,
                    record_ns=[T0 + 100 * MS + i * 50 * MS for i in range(len(order))],
                    steer_record_ns=[T0 + k for k in range(len(steer))])
    res, ds, rows = run(tmp_path, [bag])
    assert res.counts["dropped"] == {"duplicate_timestamp": 1} and res.counts["kept"] == 11
    assert res.info["frames_reordered"] == 3
    assert res.info["steering_samples"]["duplicate_times"] == 1 and res.info["steering_samples"]["reordered"] > 0
    want = sorted(set(order))
    np.testing.assert_array_equal(ds.timestamps_ns, [stamps[k] for k in want])
    means = ds.frames.reshape(len(ds), -1).mean(1)
    np.testing.assert_allclose(means, [20 * k + 10 for k in want], atol=2.0)  # each frame still has its own pixels
    good = sorted(steering_series(T0, T0 + 900 * MS))
    np.testing.assert_allclose(col(rows, "steering_rad"),
                               interp(ds.timestamps_ns, [s[0] for s in good], [s[1] for s in good]), atol=1e-12)


def test_corrupt_images_skipped_counted_reported(tmp_path):
    frames = _frames(12)
    frames[3] = (frames[3][0], b"\x00garbage, not an image at all")
    frames[7] = (frames[7][0], frames[7][1][: len(frames[7][1]) // 2])  # JPEG cut short
    frames[9] = (frames[9][0], b"\xff\xd8\xff\xe0" + b"\x13" * 200 + b"\xff\xd9")  # header, no image
    bag = write_bag(tmp_path / "c.bag", frames, steering_series(T0, T0 + 900 * MS))
    res, ds, _ = run(tmp_path, [bag], **{"split.test_count": 2})
    assert res.counts["dropped"] == {"corrupt_image": 3} and len(ds) == 9
    bad = {frames[k][0] for k in (3, 7, 9)}
    assert bad.isdisjoint(ds.timestamps_ns.tolist())
    man = yaml.safe_load((res.out_dir / "manifest.yaml").read_text())
    assert {r["timestamp_ns"] for r in man["rejected_images"]} == bad
    assert any("skipped 3 image" in w for w in man["warnings"]) and "cut short" in str(man["rejected_images"])
    assert list(ds.split) == ["train"] * 7 + ["test"] * 2  # split decided on the frames actually kept


def test_raw_image_topics(tmp_path):
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(4)]
    frames = [(T0 + 100 * MS + k * 50 * MS, im) for k, im in enumerate(imgs)]
    bag = write_bag(tmp_path / "raw.bag", frames, steering_series(T0, T0 + 400 * MS),
                    topic="/center_camera/image_color")
    res, ds, _ = run(tmp_path, [bag])
    for im, got in zip(imgs, ds.frames, strict=True):
        np.testing.assert_array_equal(got, preprocess_frame(im, ds.crop))
    assert res.info["camera_topics"] == {"raw.bag": "/center_camera/image_color"}


def test_left_center_swap_for_2016_10_25_bags(tmp_path):
    for name, want in (("2016-10-25-11-22-33_1.bag", 200), ("2016-11-01.bag", 30)):
        frames = _frames(6, value=lambda k: 30)
        left = [("/left_camera/image_color/compressed", t, flat_jpeg(200)) for t, _ in frames]
        bag = write_bag(tmp_path / name, frames, steering_series(T0, T0 + 500 * MS), extra=left)
        res, ds, _ = run(tmp_path, [bag], name=name + ".out")
        assert abs(float(ds.frames.mean()) - want) < 2
        assert res.info["swapped_left_center"] == ([name] if want == 200 else [])


def test_missing_topics_list_what_is_there(tmp_path):
    bag = write_bag(tmp_path / "m.bag", [], steering_series(T0, T0 + 100 * MS),
                    extra=[("/foo/image", T0 + 5 * MS, flat_jpeg(1))])
    with pytest.raises(InputError) as e:
        prepare([bag], tmp_path / "o", progress=False)
    msg = str(e.value)
    assert CENTER in msg and "/foo/image (sensor_msgs/CompressedImage, 1 msgs)" in msg
    assert "/vehicle/steering_report" in msg
    bag2 = write_bag(tmp_path / "n.bag", _frames(3))
    with pytest.raises(InputError, match=r"no steering: topic '/vehicle/steering_report'.*center_camera"):
        prepare([bag2], tmp_path / "o", progress=False)


def test_empty_and_useless_inputs(tmp_path):
    with pytest.raises(InputError, match="no inputs"):
        prepare([], tmp_path / "o", progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="empty"):
        prepare([tmp_path / "empty"], tmp_path / "o", progress=False)
    (tmp_path / "zero.bag").write_bytes(b"")
    with pytest.raises(ValueError, match=r"zero.bag: the file is empty"):
        prepare([tmp_path / "zero.bag"], tmp_path / "o", progress=False)
    slow = [(t, a, 2.0) for t, a, _ in steering_series(T0, T0 + 500 * MS)]
    bag = write_bag(tmp_path / "slow.bag", _frames(5), slow)
    with pytest.raises(InputError, match=r"no frames left.*read 5.*'slow': 5"):
        prepare([bag], tmp_path / "o", progress=False)
    assert not (tmp_path / "o").exists() and not (tmp_path / "o.partial").exists()


def test_truncated_bag_end_to_end(tmp_path):
    frames = _frames(40)
    bag = write_bag(tmp_path / "t.bag", frames, steering_series(T0, T0 + 2300 * MS), chunk_threshold=8_000)
    cut = tmp_path / "cut" / "t.bag"
    cut.parent.mkdir()
    cut.write_bytes(bag.read_bytes()[: bag.stat().st_size * 6 // 10])
    res, ds, rows = run(tmp_path, [cut])
    from vbp_live.recordings.bagscan import BagScanner

    msgs = [(c.topic, t) for c, t, _ in BagScanner(cut).messages()]
    cam = [t - MS for tp, t in msgs if tp == CENTER]  # record time = stamp + 1 ms
    last_steer = max(t - MS for tp, t in msgs if tp != CENTER)
    assert ds.timestamps_ns.tolist() == [t for t in cam if t <= last_steer] and 0 < len(ds) < 40
    assert any("t.bag" in w and "at byte" in w and "whole messages" in w for w in res.warnings)


def test_real_duckietown_bag_merged_with_a_steering_bag(tmp_path, shared_data):
    real = shared_data / "rosbag1" / "duckietown_gym_test.bag"
    t_rec = 1539268786723917961  # its header stamp is 0: the record time is the frame time
    steer = steering_series(t_rec - 200 * MS, t_rec + 200 * MS, slope_per_s=0.5)
    steering_bag = write_bag(tmp_path / "steer.bag", [], steer)
    res, ds, rows = run(tmp_path, [real, steering_bag], **{"camera.topics": ["/gym/observations"]})
    assert ds.timestamps_ns.tolist() == [t_rec] and res.info["zero_stamp_frames"] == 1
    want = interp([t_rec], [s[0] for s in steer], [s[1] for s in steer])[0]
    assert float(rows[0]["steering_rad"]) == pytest.approx(want, abs=1e-12)
    from rosbags.rosbag1 import Reader
    from rosbags.typesys import Stores, get_typestore

    with Reader(real) as r:  # the real JPEG (an all-black 124x123 observation), decoded independently
        _, _, raw = next(r.messages())
    jpeg = get_typestore(Stores.ROS1_NOETIC).deserialize_ros1(raw, "sensor_msgs/msg/CompressedImage").data
    gray = cv2.imdecode(jpeg, cv2.IMREAD_GRAYSCALE)
    assert gray.shape == (124, 123)
    np.testing.assert_array_equal(ds.frames[0], preprocess_frame(gray, ds.crop))
    assert rows[0]["source"] == "duckietown_gym_test.bag"


def test_split_and_manifest(tmp_path):
    bag = write_bag(tmp_path / "s.bag", _frames(30), steering_series(T0, T0 + 1700 * MS))
    res, ds, rows = run(tmp_path, [bag], **{"split.test_fraction": 0.2, "crop.preset": "nethvf"})
    assert list(ds.split) == ["train"] * 24 + ["test"] * 6
    assert (np.diff(ds.timestamps_ns) > 0).all()
    man = ds.manifest
    assert man["crop"] == ds.crop.to_dict() and ds.frames.shape == (30, 125, 351)
    assert man["preprocessing"] == load_config(None, {"split.test_fraction": 0.2, "crop.preset": "nethvf"}).to_dict()
    c = man["counts"]
    assert c["read"] == c["kept"] + sum(c["dropped"].values()) == 30
    assert man["splits"] == {"test": 6, "train": 24}
    assert man["sources"] == [{"name": "s.bag", "bytes": bag.stat().st_size}]
    res2, ds2, _ = run(tmp_path, [bag], name="o2", **{"split.test_count": 7, "split.test_fraction": 0.5})
    assert list(ds2.split[-8:]) == ["train"] + ["test"] * 7  # the count wins over the fraction
    with pytest.raises(ValueError, match="already exists"):
        run(tmp_path, [bag], name="o2")


LATER_DEF = """Header header
float32 steering_wheel_angle
float32 steering_wheel_angle_velocity
float32 steering_wheel_torque
float32 speed
uint8 steering_mode
bool enabled
bool override
bool timeout
"""


def test_steering_report_definition_is_taken_from_the_bag(tmp_path):
    from prep_fixtures import STEERING_TYPE, image_msg
    from rosbags.rosbag1 import Writer
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    ts = get_typestore(Stores.ROS1_NOETIC)  # a later SteeringReport layout, same type name
    ts.register(get_types_from_msg(LATER_DEF, STEERING_TYPE))
    t, hdr = ts.types, lambda s: ts.types["std_msgs/msg/Header"](
        seq=0, stamp=ts.types["builtin_interfaces/msg/Time"](sec=s // 10**9, nanosec=s % 10**9), frame_id="")
    path = tmp_path / "later.bag"
    with Writer(path) as w:
        cam = w.add_connection(CENTER, "sensor_msgs/msg/CompressedImage", typestore=ts)
        steer = w.add_connection("/vehicle/steering_report", STEERING_TYPE, typestore=ts)
        for k in range(12):
            s = T0 + k * 50 * MS
            msg = t[STEERING_TYPE](header=hdr(s), steering_wheel_angle=0.01 * k, steering_wheel_angle_velocity=-3.0,
                                   steering_wheel_torque=1.5, speed=7.0 + k, steering_mode=2, enabled=True,
                                   override=False, timeout=False)
            w.write(steer, s, ts.serialize_ros1(msg, STEERING_TYPE))
            if 2 <= k <= 9:
                mt, im = image_msg(ts, s + 25 * MS, flat_jpeg(100))
                w.write(cam, s + 25 * MS, ts.serialize_ros1(im, mt))
    res, ds, rows = run(tmp_path, [path])
    k = np.arange(2, 10) + 0.5
    np.testing.assert_allclose(col(rows, "steering_rad"), 0.01 * k, atol=1e-6)  # float32 samples, interpolated
    np.testing.assert_allclose(col(rows, "speed_mps"), 7.0 + k, atol=1e-9)
    with pytest.raises(InputError, match=r"has no field\(s\) \['velocity'\].*'steering_mode'"):
        prepare([path], tmp_path / "x", load_config(None, {"steering.speed_field": "velocity"}), progress=False)
