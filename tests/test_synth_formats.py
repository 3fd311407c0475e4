"""mp4, bag-dump folder, simulator log and ground-truth file: consistent with the bag and the drive."""

from __future__ import annotations

import csv
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from rosbags.highlevel import AnyReader
from stream_util import read_video

from vbp_live.cli.main import main
from vbp_live.io.ground_truth import GroundTruthError, load_ground_truth
from vbp_live.io.synth_writers import write_outputs
from vbp_live.synth import DriveConfig, render_frames, simulate_drive

N = 40


@pytest.fixture(scope="module")
def drive():
    return simulate_drive(DriveConfig(seed=13, frames=N))


@pytest.fixture(scope="module")
def out(drive, tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("synth")
    write_outputs(drive, d, ["bag", "mp4", "dump", "simlog", "gt"])
    return d


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f, skipinitialspace=True))


def test_dump_folder_matches_the_bag(out, drive):
    rows = _rows(out / "dump" / "camera.csv")
    assert list(rows[0]) == ["seq", "timestamp", "width", "height", "frame_id", "filename"]
    assert [int(r["timestamp"]) for r in rows] == drive.frame_times_ns.tolist()
    assert {r["frame_id"] for r in rows} == {"center_camera"}
    with AnyReader([out / "synth_seed13.bag"]) as reader:
        conn = [c for c in reader.connections if c.topic == "/center_camera/image_color/compressed"]
        for (c, _, raw), row in zip(reader.messages(connections=conn), rows, strict=True):
            msg = reader.deserialize(raw, c.msgtype)
            assert (out / "dump" / row["filename"]).read_bytes() == bytes(msg.data)  # the very same JPEG
    steer = _rows(out / "dump" / "steering.csv")
    assert list(steer[0]) == ["timestamp", "angle", "torque", "speed"]
    np.testing.assert_allclose([float(r["angle"]) for r in steer], drive.steer_angle)


def test_interpolated_csv(out, drive):
    rows = _rows(out / "dump" / "interpolated.csv")
    assert list(rows[0]) == ["index", "timestamp", "width", "height", "frame_id", "filename", "angle", "torque",
                             "speed", "lat", "long", "alt"]
    assert rows[0]["index"].startswith("2016-11-17 23:30:41.")
    t = np.array([int(r["timestamp"]) for r in rows], float)
    expect = np.interp(t, drive.steer_times_ns.astype(float), drive.steer_angle)
    np.testing.assert_allclose([float(r["angle"]) for r in rows], expect)
    np.testing.assert_allclose([float(r["angle"]) for r in rows], drive.steering, atol=0.02)  # close to the truth
    lat = np.array([float(r["lat"]) for r in rows])
    assert np.all(np.abs(lat - 37.4) < 0.05)


def test_simulator_log(out, drive):
    text = (out / "simlog" / "driving_log.csv").read_text().splitlines()
    assert text[0] == "center,left,right,steering,throttle,brake,speed"
    assert ", IMG/" in text[1]  # the official sample's leading space after each comma
    rows = _rows(out / "simlog" / "driving_log.csv")
    assert len(rows) == N
    img = cv2.imread(str(out / "simlog" / rows[5]["center"]))
    assert img.shape == (160, 320, 3)
    steer = np.array([float(r["steering"]) for r in rows])
    wheel_deg = np.degrees(drive.steering / drive.config.vehicle.steering_ratio)
    np.testing.assert_allclose(steer, np.clip(-wheel_deg / 25.0, -1, 1), atol=1e-5)  # simulator: positive = right
    np.testing.assert_allclose([float(r["speed"]) for r in rows], drive.speed * 2.2369363, atol=1e-3)


def test_mp4_has_every_frame(out, drive):
    frames, _ = read_video(out / "synth_seed13.mp4")
    assert len(frames) == N and frames[0].shape == (480, 640, 3)
    rendered = [f for f, _ in render_frames(drive, stop=2)]
    assert cv2.PSNR(frames[1], rendered[1]) > 22
    with av.open(str(out / "synth_seed13.mp4")) as video:  # H.264 yuv420p: plays in browsers too
        stream = video.streams.video[0]
        assert (stream.codec_context.name, stream.codec_context.pix_fmt) == ("h264", "yuv420p")


def test_ground_truth_roundtrip(out, drive):
    gt = load_ground_truth(out / "ground_truth.npz")
    assert len(gt) == N and gt.config == drive.config
    np.testing.assert_array_equal(gt.frame_times_ns, drive.frame_times_ns)
    np.testing.assert_array_equal(gt.steering, drive.steering)
    np.testing.assert_array_equal(gt.steer_angle, drive.steer_angle)
    assert gt.lookahead_uv.shape == (N, 2)
    for i, (_, masks) in enumerate(render_frames(drive, start=10, stop=12), start=10):
        np.testing.assert_array_equal(gt.masks(i).stack(), masks.stack())
    size = (out / "ground_truth.npz").stat().st_size
    assert size < N * 5 * 640 * 480 / 8 / 4  # compressed well below the packed-bit size
    with pytest.raises(IndexError):
        gt.masks(N)


def test_ground_truth_errors(tmp_path):
    with pytest.raises(GroundTruthError, match="not found"):
        load_ground_truth(tmp_path / "nope.npz")
    bad = tmp_path / "bad.npz"
    np.savez(bad, format=np.array("something-else"))
    with pytest.raises(GroundTruthError, match="format"):
        load_ground_truth(bad)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(GroundTruthError, match="not a readable"):
        load_ground_truth(tmp_path / "junk.npz")


def test_cli_writes_outputs_and_refuses_to_overwrite(tmp_path, capsys):
    args = ["synth", "--out", str(tmp_path), "--seed", "2", "--frames", "12", "--format", "bag,gt,dump", "--split", "2"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "frames/s" in printed and "synth_seed2_1.bag" in printed
    assert (tmp_path / "ground_truth.npz").is_file() and (tmp_path / "dump" / "camera.csv").is_file()
    assert main(args) == 1
    assert "--force" in capsys.readouterr().err
    assert main(args + ["--force"]) == 0
    assert main(["synth", "--out", str(tmp_path), "--format", "bag,nope"]) == 1


def test_worker_processes_give_identical_files(tmp_path):
    drive = simulate_drive(DriveConfig(seed=8, frames=16))
    one = write_outputs(drive, tmp_path / "one", ["bag", "gt", "dump"], workers=1)
    two = write_outputs(drive, tmp_path / "two", ["bag", "gt", "dump"], workers=2)
    assert two.workers == 2 and two.frames == one.frames == 16 and two.render_cpu_s > 0
    for a, b in zip(one.paths, two.paths, strict=True):
        assert a.name == b.name and a.read_bytes() == b.read_bytes()


def test_interrupted_run_leaves_no_partial_files(tmp_path):
    drive = simulate_drive(DriveConfig(seed=8, frames=30))

    def stop_at_21(records):
        for rec in records:
            if rec.index == 21:  # part 2 (frames 20-29) is being written
                raise KeyboardInterrupt
            yield rec

    with pytest.raises(KeyboardInterrupt):
        write_outputs(drive, tmp_path, ["bag", "mp4", "gt", "dump"], split=3, progress=stop_at_21)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["dump", "synth_seed8_0.bag", "synth_seed8_1.bag"]  # finished parts only, no temp files
    assert not (tmp_path / "dump" / "camera.csv").exists()
    with AnyReader([tmp_path / "synth_seed8_1.bag"]) as r:
        assert sum(c.msgcount for c in r.connections if "camera" in c.topic) == 10
