"""Udacity-layout bags written with rosbags and read back with rosbags' AnyReader."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from rosbags.highlevel import AnyReader

from vbp_live.io.synth_writers import write_bag, write_outputs
from vbp_live.io.udacity_bag import (
    STEERING_REPORT_MD5,
    SteeringSamples,
    UdacityBagWriter,
    udacity_typestore,
    write_udacity_bag,
)
from vbp_live.synth import DriveConfig, render_frames, simulate_drive

N = 60
COMPRESSED_MD5 = "8f7a12909da2c9d3332d540a0977563f"  # sensor_msgs/CompressedImage
IMAGE_MD5 = "060021388200f6f0f447d0fcd9c64743"  # sensor_msgs/Image
CENTER = "/center_camera/image_color/compressed"


@pytest.fixture(scope="module")
def drive():
    return simulate_drive(DriveConfig(seed=21, frames=N))


@pytest.fixture(scope="module")
def bag(drive, tmp_path_factory):
    out = tmp_path_factory.mktemp("bag")
    return write_bag(drive, out)[0]


def read_all(paths: list[Path]) -> tuple[dict, list]:
    with AnyReader(paths) as r:
        conns = {c.topic: c for c in r.connections}
        msgs = [(c.topic, t, r.deserialize(raw, c.msgtype)) for c, t, raw in r.messages()]
    return conns, msgs


def stamp_ns(msg) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


def test_typestore_gives_the_2016_md5():
    store = udacity_typestore()
    md5 = store.generate_msgdef("dbw_mkz_msgs/msg/SteeringReport")[1]
    assert md5 == STEERING_REPORT_MD5 == "25bf2c220d904531d8bc16ab5271325d"


def test_bag_reads_back_with_right_types_counts_rates_and_stamps(bag, drive):
    conns, msgs = read_all([bag])
    assert conns[CENTER].msgtype == "sensor_msgs/msg/CompressedImage" and conns[CENTER].digest == COMPRESSED_MD5
    st = conns["/vehicle/steering_report"]
    assert st.msgtype == "dbw_mkz_msgs/msg/SteeringReport" and st.digest == STEERING_REPORT_MD5
    assert "float32 steering_wheel_angle" in st.msgdef.data
    frames = [(t, m) for topic, t, m in msgs if topic == CENTER]
    steer = [(t, m) for topic, t, m in msgs if topic == "/vehicle/steering_report"]
    assert len(frames) == N and len(steer) == len(drive.steer_times_ns)
    f_stamps = np.array([stamp_ns(m) for _, m in frames])
    s_stamps = np.array([stamp_ns(m) for _, m in steer])
    np.testing.assert_array_equal(f_stamps, drive.frame_times_ns)
    np.testing.assert_array_equal(s_stamps, drive.steer_times_ns)
    assert abs(np.median(np.diff(f_stamps)) / 1e6 - 50.0) < 0.5 and abs(np.median(np.diff(s_stamps)) / 1e6 - 20.0) < 0.5
    assert all(t > stamp_ns(m) for t, m in frames + steer)  # recorded after they were stamped
    angles = np.array([m.steering_wheel_angle for _, m in steer])
    np.testing.assert_allclose(angles, drive.steer_angle.astype(np.float32))
    np.testing.assert_allclose([m.speed for _, m in steer], drive.steer_speed.astype(np.float32))
    assert [m.header.seq for _, m in frames] == list(range(N))
    rec_times = [t for _, t, _ in msgs]
    assert rec_times == sorted(rec_times)


def test_bag_frames_are_the_rendered_frames(bag, drive):
    _, msgs = read_all([bag])
    jpegs = [m for topic, _, m in msgs if topic == CENTER]
    for (frame, _), msg in zip(render_frames(drive, stop=3), jpegs[:3], strict=True):
        assert msg.format == "jpeg" and msg.header.frame_id == "center_camera"
        img = cv2.imdecode(np.asarray(msg.data), cv2.IMREAD_COLOR)
        assert img.shape == (480, 640, 3)
        assert cv2.PSNR(img, frame) > 30


def test_raw_images(tmp_path):
    drive = simulate_drive(DriveConfig(seed=21, frames=5))
    path = write_outputs(drive, tmp_path, ["bag"], raw=True).paths[0]
    conns, msgs = read_all([path])
    topic = "/center_camera/image_color"
    assert conns[topic].msgtype == "sensor_msgs/msg/Image" and conns[topic].digest == IMAGE_MD5
    imgs = [m for t, _, m in msgs if t == topic]
    frame, _ = next(render_frames(drive, stop=1))
    assert imgs[0].encoding == "bgr8" and (imgs[0].height, imgs[0].width, imgs[0].step) == (480, 640, 1920)
    np.testing.assert_array_equal(np.asarray(imgs[0].data).reshape(480, 640, 3), frame)


def test_split_bags_hold_the_whole_drive_in_order(drive, bag, tmp_path):
    parts = write_bag(drive, tmp_path, split=3)
    assert [p.name for p in parts] == [f"synth_seed21_{k}.bag" for k in range(3)]
    per_part = [read_all([p])[1] for p in parts]
    assert [sum(t == CENTER for t, _, _ in msgs) for msgs in per_part] == [20, 20, 20]
    ends = [(min(t for _, t, _ in m), max(t for _, t, _ in m)) for m in per_part]
    assert ends[0][1] < ends[1][0] and ends[1][1] < ends[2][0]  # consecutive, not overlapping
    _, merged = read_all(parts)
    _, whole = read_all([bag])
    assert [(t, topic) for topic, t, _ in merged] == [(t, topic) for topic, t, _ in whole]


def test_2016_10_25_naming_swaps_left_and_center(drive, tmp_path):
    parts = write_bag(drive, tmp_path, split=2, swap_2016_10_25=True)
    assert all(p.name.startswith("2016-10-25-") and p.name.endswith(f"_{k}.bag") for k, p in enumerate(parts))
    conns, msgs = read_all(parts)
    assert "/left_camera/image_color/compressed" in conns and CENTER not in conns
    assert sum(t == "/left_camera/image_color/compressed" for t, _, _ in msgs) == N


def test_same_seed_identical_bytes_different_seed_differs(tmp_path):
    a = write_bag(simulate_drive(DriveConfig(seed=3, frames=15)), tmp_path / "a")[0]
    b = write_bag(simulate_drive(DriveConfig(seed=3, frames=15)), tmp_path / "b")[0]
    c = write_bag(simulate_drive(DriveConfig(seed=4, frames=15)), tmp_path / "c")[0]
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()


def test_writer_refuses_overwrite_and_leaves_nothing_on_error(tmp_path, bag):
    with pytest.raises(FileExistsError, match="exists already"):
        UdacityBagWriter(bag)
    target = tmp_path / "broken.bag"
    with pytest.raises(RuntimeError, match="boom"), UdacityBagWriter(target) as w:
        w.write_steering(1, 0.1, 5.0)
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_generic_writer_with_custom_samples(tmp_path):
    """Other engineers' use: their own frames and steering, e.g. a bag with zero header stamps."""
    frame = np.full((48, 64, 3), 120, np.uint8)
    steer = SteeringSamples(np.array([0, 0]), np.array([0.5, -0.5]), np.array([3.0, 4.0]))
    counts = write_udacity_bag(tmp_path / "z.bag", [(0, frame)], steer, record_delay_ns=1_000)
    assert counts == {"/vehicle/steering_report": 2, CENTER: 1}
    with UdacityBagWriter(tmp_path / "rec.bag") as w:
        w.write_image(0, frame, record_ns=1_500_000_000_000_000_000)
    conns, msgs = read_all([tmp_path / "rec.bag"])
    assert msgs[0][1] == 1_500_000_000_000_000_000 and stamp_ns(msgs[0][2]) == 0


def test_side_cameras_and_their_swap(tmp_path):
    drive = simulate_drive(DriveConfig(seed=5, frames=6))
    conns, msgs = read_all(write_bag(drive, tmp_path / "plain", side_cameras=True))
    topics = [f"/{c}_camera/image_color/compressed" for c in ("left", "center", "right")]
    assert all(conns[t].msgcount == 6 for t in topics)
    frame_ids = {t: m.header.frame_id for t, _, m in msgs if t in topics}
    assert frame_ids == {t: t.split("/")[1] for t in topics}
    _, swapped = read_all(write_bag(drive, tmp_path / "swap", side_cameras=True, swap_2016_10_25=True))
    data = {t: [bytes(m.data) for tt, _, m in msgs if tt == t] for t in topics}
    sdata = {t: [bytes(m.data) for tt, _, m in swapped if tt == t] for t in topics}
    assert sdata[topics[0]] == data[topics[1]] and sdata[topics[1]] == data[topics[0]]  # left <-> center
    assert sdata[topics[2]] == data[topics[2]] and data[topics[0]] != data[topics[1]]
