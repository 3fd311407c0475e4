"""donkeycar tubs (v2 and v1): layout, deleted records, missing images, sessions, sign, filters, errors."""

from __future__ import annotations

import json
import math
import os
import signal

import numpy as np
import pytest
import yaml
from recording_fixtures import angle_of, write_tub_v1, write_tub_v2

from data_prep.config import PrepConfig
from data_prep.pipeline import prepare, synchronize
from data_prep.workers import FrameWriter, WorkResult
from vbp_live.core.errors import InputError
from vbp_live.core.signals import Interrupted, raise_on_signals
from vbp_live.io.dataset import PreparedDataset
from vbp_live.recordings.formats import detect_kind, open_recording
from vbp_live.recordings.options import RecordingOptions, TubConfig
from vbp_live.recordings.tub import TubRecording


def test_real_tub(shared_data):
    tub = shared_data / "donkeycar" / "real-car-tub"
    rec = open_recording([tub])
    scan = rec.scan()
    assert rec.kind == "tub" and len(scan.frame_t) == 827
    assert scan.names == ["real-car-tub/24-10-21_0", "real-car-tub/24-10-22_1"]
    assert int((scan.frame_source == 1).sum()) == 271  # the second session
    assert np.all(np.diff(scan.frame_t) > 0) and scan.frame_t[0] == 1729502364204 * 1_000_000
    steer = scan.presynced["steering"]
    assert np.isclose(np.abs(steer).max(), math.radians(25.0))  # 418 frames at full lock
    assert int(np.isclose(np.abs(steer), math.radians(25.0)).sum()) == 418
    assert "speed" not in scan.presynced and not scan.has_speed
    assert np.all(scan.reason == "")


def test_angle_sign_and_scale(tmp_path):
    tub = write_tub_v2(tmp_path / "t", n=10)
    full_right = TubRecording([tub]).scan().presynced["steering"]
    assert np.allclose(full_right, [-angle_of(i) * math.radians(25) for i in range(10)])  # +1 right -> rad, + = left
    cfg = TubConfig(full_scale_deg=30.0, positive_right=False)
    assert np.allclose(TubRecording([tub], cfg).scan().presynced["steering"], -full_right * 30 / 25)


def test_deleted_missing_empty_and_offset_indexes(tmp_path):
    tub = write_tub_v2(tmp_path / "t", n=20, start=100, deleted=[117, 103, 110])  # unsorted, as real tubs
    (tub / "images" / "105_cam_image_array_.jpg").unlink()
    (tub / "images" / "106_cam_image_array_.jpg").write_bytes(b"")
    scan, plan = synchronize([tub])
    assert plan.dropped() == {"deleted": 3, "empty_image": 1, "missing_image": 1}
    assert plan.info["speed_filter"].startswith("skipped")
    res = prepare([tub], tmp_path / "ds", PrepConfig.from_dict({"crop": {"preset": "donkey"}}), progress=False)
    assert res.counts == {"read": 20, "kept": 15, "dropped": {"deleted": 3, "empty_image": 1, "missing_image": 1}}
    dropped = (tmp_path / "ds" / "dropped.csv").read_text().splitlines()
    assert len(dropped) == 6 and dropped[0] == "timestamp_ns,source,reason"
    ds = PreparedDataset(tmp_path / "ds")
    assert ds.frame_shape == (80, 160, 3) and np.all(np.isnan(ds.speed))
    assert ds.manifest["info"]["speed_filter"] == "skipped: the recording has no speed"
    throttle = (tmp_path / "ds" / "columns.csv").read_text().splitlines()
    assert throttle[0] == "i,throttle" and len(throttle) == 16


def test_folder_of_tubs_is_sessions_in_time_order(tmp_path):
    write_tub_v2(tmp_path / "data" / "a_later", n=5, session="s2", t0_ms=2_000_000)
    write_tub_v2(tmp_path / "data" / "b_earlier", n=4, session="s1", t0_ms=1_000_000)
    rec = open_recording([tmp_path / "data"])
    scan = rec.scan()
    assert scan.names == ["b_earlier/s1", "a_later/s2"] and list(scan.frame_source) == [0] * 4 + [1] * 5
    assert np.all(np.diff(scan.frame_t) > 0)
    both = open_recording([tmp_path / "data" / "a_later", tmp_path / "data" / "b_earlier"]).scan()
    assert both.names == scan.names


def test_several_catalogs(tmp_path):
    tub = write_tub_v2(tmp_path / "t", n=25, max_len=10)
    assert sorted(p.name for p in tub.glob("*.catalog")) == ["catalog_0.catalog", "catalog_1.catalog",
                                                             "catalog_2.catalog"]
    assert len(TubRecording([tub]).scan().frame_t) == 25


def test_tub_v1(tmp_path):
    tub = write_tub_v1(tmp_path / "v1", n=12)
    assert detect_kind(tub) == "tub"
    scan = open_recording([tub]).scan()
    assert len(scan.frame_t) == 12 and scan.frame_t[1] - scan.frame_t[0] == 50_000_000
    assert np.allclose(scan.presynced["steering"], [-angle_of(i) * math.radians(25) for i in range(12)])


def test_throttle_and_mode_filters_off_by_default(tmp_path):
    tub = write_tub_v2(tmp_path / "t", n=20)
    lines = (tub / "catalog_0.catalog").read_text().splitlines()
    recs = [json.loads(x) for x in lines]
    recs[7]["user/mode"] = "local"
    (tub / "catalog_0.catalog").write_text("".join(json.dumps(r) + "\r\n" for r in recs), newline="")
    assert synchronize([tub])[1].dropped() == {}
    cfg = PrepConfig.from_dict({"tub": {"min_throttle": 0.345, "modes": ["user"]}})
    assert synchronize([tub], cfg)[1].dropped() == {"mode": 1, "throttle": 10}


def _catalog_line(tub, k: int, text: str) -> None:
    lines = (tub / "catalog_0.catalog").read_text().splitlines()
    lines[k] = text
    (tub / "catalog_0.catalog").write_text("\r\n".join(lines) + "\r\n", newline="")


def _edit_record(tub, k: int, **changes) -> None:
    rec = json.loads((tub / "catalog_0.catalog").read_text().splitlines()[k])
    rec.update({k2.replace("__", "/"): v for k2, v in changes.items()})
    _catalog_line(tub, k, json.dumps(rec))


@pytest.mark.parametrize("edit, message", [
    (lambda t: _catalog_line(t, 4, '{"_index": 4, "cam/ima'), r"catalog_0.catalog:5: not valid JSON"),
    (lambda t: _edit_record(t, 2, user__angle="left"), r"catalog_0.catalog:3: 'user/angle' must be a number"),
    (lambda t: _edit_record(t, 2, user__angle=float("nan")), r"catalog_0.catalog:3: 'user/angle' is nan"),
    (lambda t: _edit_record(t, 2, _timestamp_ms=1e300), r"catalog_0.catalog:3: time 1e\+300 ms is out of range"),
    (lambda t: _edit_record(t, 6, _index=2), r"catalog_0.catalog:7: duplicated _index 2 \(first at .*:3\)"),
    (lambda t: _edit_record(t, 1, cam__image_array="../../etc/passwd"), r"catalog_0.catalog:2: 'cam/image_array'"),
    (lambda t: _catalog_line(t, 0, '{"_session_id": "\\ud800"}'), r"catalog_0.catalog:1: '_session_id' is not valid"),
    (lambda t: _catalog_line(t, 0, "[1, 2]"), r"catalog_0.catalog:1: a record must be a JSON object"),
    (lambda t: (t / "catalog_0.catalog").unlink(), r"manifest.json:5: lists catalog 'catalog_0.catalog'"),
    (lambda t: (t / "manifest.json").write_text("[]\n[]\n"), r"manifest.json: expected 5 JSON lines"),
])
def test_bad_tubs_fail_with_one_line_naming_file_and_line(tmp_path, edit, message):
    tub = write_tub_v2(tmp_path / "t", n=10)
    edit(tub)
    with pytest.raises(InputError, match=message) as e:
        open_recording([tub], RecordingOptions()).scan()
    assert "\n" not in str(e.value)


def test_cut_last_line_is_left_out_with_a_warning(tmp_path):
    tub = write_tub_v2(tmp_path / "t", n=10)
    cat = tub / "catalog_0.catalog"
    cat.write_bytes(cat.read_bytes()[:-30])  # power lost mid-write
    scan = TubRecording([tub]).scan()
    assert len(scan.frame_t) == 9 and "cut short" in scan.warnings[0]
    assert scan.skipped.counts == {"cut_record": 1}


@pytest.mark.parametrize("key, value", [("tub.full_scale_deg", 0.0), ("tub.frame_period_s", 1e9),
                                        ("folder.fps", 0.0), ("folder.angle_unit", "grad"), ("folder.time_unit", "h")])
def test_config_errors_name_the_key(key, value):
    from vbp_live.core.errors import ConfigError

    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        PrepConfig.from_dict({key.split(".")[0]: {key.split(".")[1]: value}})


def test_run_takes_a_tub_or_a_folder_of_tubs_as_one_input(tmp_path):
    from vbp_live.stream.batch import expand_inputs

    write_tub_v2(tmp_path / "data" / "a", n=3)
    write_tub_v2(tmp_path / "data" / "b", n=3, t0_ms=2_000_000)
    for spec in (str(tmp_path / "data"), str(tmp_path / "data" / "a")):
        assert expand_inputs([spec]) == [spec]


def test_a_signal_in_pass_2_stops_between_frames_and_resumes_to_the_same_bytes(tmp_path, monkeypatch, caplog):
    """Ctrl-C only sets an event while the decode pool runs: no KeyboardInterrupt lands inside the
    pool's locking (that could hang its shutdown); the loop stops after the frame it stored."""
    tub = write_tub_v2(tmp_path / "t", n=60)
    cfg = PrepConfig.from_dict({"crop": {"preset": "donkey"}, "output": {"checkpoint_every": 7}})
    prepare([tub], tmp_path / "ref", cfg, progress=False)
    store = FrameWriter._store

    def store_then_signal(self: FrameWriter, ordinal: int, res: WorkResult) -> None:
        store(self, ordinal, res)
        if self.done == 25:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(FrameWriter, "_store", store_then_signal)
    with raise_on_signals(), pytest.raises(Interrupted) as stopped:
        prepare([tub], tmp_path / "ds", cfg, progress=False)
    assert stopped.value.exit_code == 130 and "stopping after the frames in flight" in caplog.text
    progress = yaml.safe_load((tmp_path / "ds.partial" / "progress.yaml").read_text())
    assert progress["num_rows"] == 25  # exactly the frames stored before the signal, checkpointed
    monkeypatch.setattr(FrameWriter, "_store", store)
    res = prepare([tub], tmp_path / "ds", cfg, progress=False)
    assert res.resumed_at == 25
    for name in ("frames.u8", "index.csv", "manifest.yaml"):
        assert (tmp_path / "ds" / name).read_bytes() == (tmp_path / "ref" / name).read_bytes(), name
