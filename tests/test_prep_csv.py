"""vbp-live prep on CSV recordings (bag dumps, simulator logs) and the real comma2k19 / challenge-2 files."""

from __future__ import annotations

import csv
import math
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from data_prep.config import load_config
from data_prep.pipeline import prepare
from vbp_live.core.errors import InputError
from vbp_live.core.preprocess import preprocess_frame
from vbp_live.io.dataset import PreparedDataset
from vbp_live.io.synth_writers import write_outputs
from vbp_live.recordings.dump import DumpRecording
from vbp_live.recordings.formats import open_recording
from vbp_live.recordings.images import decode_payload
from vbp_live.recordings.labels import frame_steering
from vbp_live.recordings.options import RecordingOptions, SimulatorConfig, SyncConfig
from vbp_live.recordings.simlog import MPH_TO_MPS, SimLogRecording, sim_timestamp
from vbp_live.synth import DriveConfig, simulate_drive

COMMA = "comma2k19-example1/b0c9d2329ad1606b_2018-08-02--08-34-47_40"


def index(out: Path) -> list[dict[str, str]]:
    with open(out / "index.csv", newline="") as f:
        return list(csv.DictReader(f))


def col(rows, name, kind=float):
    return np.array([kind(r[name]) for r in rows])


def interp(t, st, sv):
    base = int(np.min(st))
    return np.interp(np.asarray(t, np.int64) - base, np.asarray(st, np.int64) - base, np.asarray(sv, np.float64))


def prep(inputs, out, labels_only=False, **over):
    return prepare([str(p) for p in inputs], out, load_config(None, over), labels_only=labels_only, progress=False)


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    drive = simulate_drive(DriveConfig(seed=9, frames=24, start_stopped=False))
    out = tmp_path_factory.mktemp("synth_csv")
    write_outputs(drive, out, ["dump", "simlog"])
    return drive, out


def test_dump_folder_synchronizes_steering_csv(tmp_path, synth):
    drive, root = synth
    res = prep([root / "dump"], tmp_path / "o")
    rows, ds = index(res.out_dir), PreparedDataset(res.out_dir)
    assert res.counts["kept"] == 24 and res.info["labels_from"] == "camera.csv"
    np.testing.assert_array_equal(ds.timestamps_ns, drive.frame_times_ns)
    want = interp(drive.frame_times_ns, drive.steer_times_ns, drive.steer_angle)
    np.testing.assert_allclose(col(rows, "steering_rad"), want, atol=1e-12)
    for t, got in zip(ds.timestamps_ns[:5], ds.frames[:5], strict=True):
        gray = cv2.imread(str(root / "dump" / "center" / f"{t}.jpg"), cv2.IMREAD_GRAYSCALE)
        np.testing.assert_array_equal(got, preprocess_frame(gray, ds.crop))


def test_dump_folder_without_steering_csv_uses_interpolated_csv(tmp_path, synth):
    _, root = synth
    dump = tmp_path / "dump"
    shutil.copytree(root / "dump", dump)
    (dump / "steering.csv").unlink()
    res = prep([dump], tmp_path / "o")
    with open(dump / "interpolated.csv", newline="") as f:
        interp_rows = [r for r in csv.DictReader(f) if r["frame_id"] == "center_camera"]
    assert col(index(res.out_dir), "steering_rad").tolist() == [float(r["angle"]) for r in interp_rows]
    assert any("already synchronized" in w for w in res.warnings)


def test_simulator_log_with_header_relative_paths_and_spaces(tmp_path, synth):
    drive, root = synth
    assert ", IMG/center_" in (root / "simlog" / "driving_log.csv").read_text()
    res = prep([root / "simlog"], tmp_path / "o")
    rows = index(res.out_dir)
    # steering normalized to [-1, 1] (6 decimals, positive = right) -> wheel angle in rad, positive = left
    np.testing.assert_allclose(col(rows, "steering_rad"), drive.steering, atol=0.5e-6 * math.radians(25) * 14.8 + 1e-12)
    np.testing.assert_allclose(col(rows, "speed_mps"), drive.speed, atol=1e-5)
    np.testing.assert_array_equal(col(rows, "timestamp_ns", int), drive.frame_times_ns // 10**6 * 10**6)
    assert PreparedDataset(res.out_dir).frames.shape == (24, 125, 640)


def test_simulator_log_without_header_windows_paths_missing_image(tmp_path, synth):
    _, root = synth
    sim = tmp_path / "my recording"
    shutil.copytree(root / "simlog", sim)
    lines = (sim / "driving_log.csv").read_text().splitlines()[1:]
    out = []
    for line in lines:
        cells = [c.strip() for c in line.split(",")]
        cells[:3] = ["C:\\Users\\me\\Desktop\\sim\\IMG\\" + c.split("/")[-1] for c in cells[:3]]
        out.append(",".join(cells))
    (sim / "driving_log.csv").write_text("\n".join(out) + "\n")
    missing = sim / "IMG" / lines[4].split(",")[0].strip().split("/")[-1]
    missing.unlink()
    res = prep([sim / "driving_log.csv"], tmp_path / "o")
    assert res.counts["dropped"] == {"missing_image": 1} and res.counts["kept"] == 23
    ref = index(prep([root / "simlog"], tmp_path / "ref").out_dir)
    got = index(res.out_dir)
    assert [r["steering_rad"] for r in got] == [r["steering_rad"] for k, r in enumerate(ref) if k != 4]


def test_sim_steering_mapping_and_units():
    cfg = load_config()
    assert cfg.simulator.to_rad(1.0) == pytest.approx(-math.radians(25) * 14.8)  # full right lock
    road_wheel_left = load_config(None, {"simulator.steering_ratio": 1.0, "simulator.positive_right": False}).simulator
    assert road_wheel_left.to_rad(-0.5) == pytest.approx(-math.radians(12.5))
    assert pytest.approx(26.8224) == MPH_TO_MPS * 60
    assert sim_timestamp("center_2016_12_01_13_30_48_287.jpg") == 1480599048287 * 10**6
    assert sim_timestamp("frame_0001.jpg") is None


def _write_steering(path: Path, t, angle, speed) -> None:
    with open(path, "w") as f:
        f.write("timestamp,angle,torque,speed\n")
        for a, b, c in zip(np.asarray(t).tolist(), np.asarray(angle).tolist(), np.asarray(speed).tolist(), strict=True):
            f.write(f"{a},{b!r},0.0,{c!r}\n")


def test_real_challenge2_camera_timestamps_labels_only(tmp_path, shared_data):
    dump = tmp_path / "hmb3"
    dump.mkdir()
    (dump / "camera.csv").symlink_to(shared_data / "udacity-ch2" / "CH2_001_camera.csv")
    with open(dump / "camera.csv", newline="") as f:
        cam = np.array([int(r["timestamp"]) for r in csv.DictReader(f)], np.int64)
    assert len(cam) == 5614
    st = np.arange(cam[0] + 1_000_000_000, cam[-1] - 2_000_000_000, 20_000_000, dtype=np.int64)
    hole = (st > cam[2000]) & (st < cam[2000] + 1_500_000_000)
    st = st[~hole]
    angle = 0.05 * np.sin((st - st[0]) / 3e9)
    speed = 4.0 + (st - st[0]) / 2e10  # crosses 5 m/s part way through
    _write_steering(dump / "steering.csv", st, angle, speed)
    for method in ("linear", "zoh"):
        res = prep([dump], tmp_path / method, labels_only=True, **{"sync.method": method, "sync.max_gap_s": 0.25})
        rows = index(res.out_dir)
        expect = {}
        for t in cam:  # independent bookkeeping, frame by frame
            left, right = st[st <= t], st[st >= t]
            if not len(left):
                why = "steering_before_first"
            elif not len(right):
                why = "steering_after_last"
            elif (right[0] - left[-1] if method == "linear" else t - left[-1]) > 250_000_000:
                why = "steering_gap"
            elif not (interp([t], st, speed)[0] if method == "linear" else speed[len(left) - 1]) > 5.0:
                why = "slow"
            else:
                continue
            expect[why] = expect.get(why, 0) + 1
        assert res.counts["dropped"] == expect and res.counts["read"] == 5614
        assert set(expect) == {"steering_before_first", "steering_after_last", "steering_gap", "slow"}
        t = col(rows, "timestamp_ns", int)
        want = interp(t, st, angle) if method == "linear" else angle[np.searchsorted(st, t, side="right") - 1]
        np.testing.assert_allclose(col(rows, "steering_rad"), want, atol=1e-12)
    man = yaml.safe_load((res.out_dir / "manifest.yaml").read_text())
    assert man["format"] == "vbp_live/labels-v1" and not (res.out_dir / "frames.u8").exists()
    assert man["num_frames"] == len(rows) == man["splits"]["train"] + man["splits"]["test"]


def test_real_comma2k19_segment_labels_only(tmp_path, shared_data):
    seg = shared_data / COMMA
    res = prep([seg], tmp_path / "o", labels_only=True)
    ft = np.load(seg / "global_pose" / "frame_times")
    can = seg / "processed_log/CAN/steering_angle"
    st, sv = np.load(can / "t"), np.load(can / "value")
    # the first frame is 37 ms early
    assert res.counts == {"read": 1200, "kept": 1199, "dropped": {"steering_before_first": 1}}
    rows = index(res.out_dir)
    ft_ns = np.round(ft * 1e9).astype(np.int64)
    np.testing.assert_array_equal(col(rows, "timestamp_ns", int), ft_ns[1:])
    want = interp(ft_ns[1:], np.round(st * 1e9).astype(np.int64), np.deg2rad(sv))  # degrees -> radians
    np.testing.assert_allclose(col(rows, "steering_rad"), want, atol=1e-12)
    assert col(rows, "speed_mps").min() > 7.9 and col(rows, "speed_mps").max() < 19.9
    with pytest.raises(InputError, match="no video"):
        prep([seg], tmp_path / "frames")


def test_csv_errors_name_file_and_line(tmp_path):
    d = tmp_path / "dump"
    d.mkdir()
    (d / "camera.csv").write_text("timestamp,width,height,frame_id,filename\n12x,640,480,center_camera,center/1.jpg\n")
    _write_steering(d / "steering.csv", [1, 2], [0.0, 0.0], [9.0, 9.0])
    with pytest.raises(InputError, match=r"camera.csv:2: column 'timestamp' is not a number"):
        prep([d], tmp_path / "o")
    (d / "camera.csv").write_text("timestamp,width,height,frame_id,filename\n")
    with pytest.raises(InputError, match="no center camera frames"):
        prep([d], tmp_path / "o")
    (d / "steering.csv").unlink()
    with pytest.raises(InputError, match="no steering.csv"):
        prep([d], tmp_path / "o")
    log = tmp_path / "driving_log.csv"
    log.write_text("center,left,right,steering,throttle,brake,speed\n")
    with pytest.raises(InputError, match="empty driving log"):
        prep([log], tmp_path / "o")
    log.write_text("IMG/a.jpg, IMG/b.jpg, IMG/c.jpg, 0.1, 0, 0\n")
    with pytest.raises(InputError, match=r"driving_log.csv:1: expected 7 columns"):
        prep([log], tmp_path / "o")
    with pytest.raises(InputError, match="cannot tell what this recording is"):
        prep([Path(__file__)], tmp_path / "o")


def test_recordings_are_read_without_data_prep(synth):
    """vbp_live.recordings alone: the dispatcher tells the formats apart; labels land on the frames."""
    drive, root = synth
    dump = open_recording([root / "dump"])
    options = RecordingOptions(simulator=SimulatorConfig(steering_ratio=2))
    sim = open_recording([root / "simlog" / "driving_log.csv"], options)
    assert isinstance(dump, DumpRecording) and isinstance(sim, SimLogRecording)
    scan = dump.scan()
    steering = frame_steering(scan, SyncConfig())  # (F,) rad, interpolated onto the camera stamps
    np.testing.assert_allclose(steering, interp(scan.frame_t, drive.steer_times_ns, drive.steer_angle), atol=1e-12)
    wanted = np.zeros(len(scan.frame_t), bool)
    wanted[[0, 5]] = True
    got = [(o, decode_payload(p, gray=False)) for o, p in dump.payloads(wanted)]
    assert [o for o, _ in got] == [0, 5]
    np.testing.assert_array_equal(got[1][1], cv2.imread(str(root / "dump" / "center" / f"{scan.frame_t[5]}.jpg")))
    sim_scan = sim.scan()
    default = SimLogRecording(root / "simlog" / "driving_log.csv").scan()
    np.testing.assert_allclose(frame_steering(sim_scan, SyncConfig()), 2 / 14.8 * frame_steering(default, SyncConfig()))
