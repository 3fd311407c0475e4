"""Frame folders with data.txt (SullyChen) or a labels CSV; comma2k19 segments with video.hevc."""

from __future__ import annotations

import math

import numpy as np
import pytest
from recording_fixtures import angle_of, write_comma_segment, write_data_txt_folder, write_label_csv_folder

from data_prep.config import PrepConfig
from data_prep.pipeline import prepare, synchronize
from vbp_live.core.errors import InputError
from vbp_live.io.dataset import PreparedDataset
from vbp_live.io.sources import open_source
from vbp_live.recordings.folder import FolderRecording, natural_key
from vbp_live.recordings.formats import detect_kind, open_recording
from vbp_live.recordings.options import FolderConfig


def test_natural_order_unit_and_sign(tmp_path):
    d = write_data_txt_folder(tmp_path / "sully", n=12)
    lines = (d / "data.txt").read_text().splitlines()
    (d / "data.txt").write_text("\n".join(reversed(lines)) + "\n")  # file order must not matter without times
    rec = open_recording([d])
    scan = rec.scan()
    assert rec.kind == "folder" and [f.name for f in rec.files][:3] == ["0.jpg", "1.jpg", "2.jpg"]
    assert rec.files[10].name == "10.jpg" and scan.frame_t[1] == 50_000_000  # 20 fps default
    want = [-math.radians(round(angle_of(i) * 90, 6)) for i in range(12)]  # degrees, + = right -> rad, + = left
    assert np.allclose(scan.presynced["steering"], want)
    left = FolderRecording(d / "data.txt", FolderConfig(positive_right=False, fps=10.0)).scan()
    assert np.allclose(left.presynced["steering"], -np.array(want)) and left.frame_t[1] == 100_000_000
    assert natural_key("a2.jpg") < natural_key("a10.jpg")


def test_sullychen_line_with_date_and_no_speed(tmp_path):
    d = tmp_path / "s"
    d.mkdir()
    (d / "0.jpg").write_bytes(b"x")
    (d / "data.txt").write_text("0.jpg 12.500000,2018-07-01 17:09:44:912\n1.jpg -3.0\n")
    scan, plan = synchronize([d])
    assert np.allclose(scan.presynced["steering"], [-math.radians(12.5), math.radians(3.0)])
    assert plan.dropped() == {"missing_image": 1} and "speed_filter" in plan.info


def test_label_csv_with_time_and_speed(tmp_path):
    d = write_label_csv_folder(tmp_path / "c", n=10)
    assert detect_kind(d) == "folder" and detect_kind(d / "labels.csv") == "folder"
    scan, plan = synchronize([d], PrepConfig.from_dict({"filter": {"min_speed_mps": 6.5}}))
    assert scan.frame_t[0] == 100_000_000_000 and scan.has_speed
    assert plan.dropped() == {"slow": 4}  # speeds 6, 7, 8, 6, ...: the 6 m/s frames


def test_csv_time_out_of_range(tmp_path):
    d = write_label_csv_folder(tmp_path / "c", n=3)
    text = (d / "labels.csv").read_text().replace("100.050", "1e300")
    (d / "labels.csv").write_text(text)
    with pytest.raises(InputError, match=r"labels.csv:3: time 1e\+300 s is out of range"):
        open_recording([d]).scan()


def test_prep_and_source_with_truth(tmp_path):
    d = write_data_txt_folder(tmp_path / "sully", n=16)
    res = prepare([d], tmp_path / "ds", PrepConfig.from_dict({"crop": {"preset": "donkey"}}), progress=False)
    assert res.counts["kept"] == 16
    assert PreparedDataset(tmp_path / "ds").manifest["input_kind"] == "folder"
    with open_source(str(d)) as src:
        recs = list(src.frames())
    assert src.info.total == 16 and len(recs) == 16
    assert recs[3].truth_rad == pytest.approx(-math.radians(round(angle_of(3) * 90, 6)))


@pytest.mark.parametrize("text, message", [
    ("0.jpg\n", r"data.txt:1: expected '<image> <angle>'"),
    ("0.jpg 1.0\n1.jpg abc\n", r"data.txt:2: column angle is not a number: 'abc'"),
    ("0.jpg nan\n", r"data.txt:1: nan is not a finite number"),
    ("0.jpg 1\n0.jpg 2\n", r"data.txt:2: image '0.jpg' is listed twice \(first on line 1\)"),
    ("/etc/passwd 1\n", r"data.txt:1: image '/etc/passwd' must be a path relative"),
    ("\n", r"data.txt: no labelled frames"),
])
def test_bad_data_txt(tmp_path, text, message):
    (tmp_path / "data.txt").write_text(text)
    with pytest.raises(InputError, match=message):
        open_recording([tmp_path]).scan()


def test_comma_segment_with_video(tmp_path):
    seg = write_comma_segment(tmp_path / "seg", n=24, video_frames=22)
    rec = open_recording([seg])
    assert rec.has_images and detect_kind(seg) == "comma2k19"
    scan, plan = synchronize([seg])
    assert plan.dropped() == {"no_video_frame": 2} and scan.info["video_frames"] == 22
    res = prepare([seg], tmp_path / "ds", PrepConfig.from_dict({"crop": {"preset": "donkey"}}), progress=False)
    assert res.counts == {"read": 24, "kept": 22, "dropped": {"no_video_frame": 2}}
    with open_source(str(seg)) as src:
        frames = list(src.frames())
    assert len(frames) == 22 and frames[0].image.shape == (96, 160, 3)
    assert all(f.truth_rad is not None for f in frames) and src.corrupt == 2


def test_comma_without_video_is_labels_only(shared_data):
    seg = next((shared_data / "comma2k19-example1").iterdir())
    assert not open_recording([seg]).has_images
    with pytest.raises(InputError, match="no images to play"):
        open_source(str(seg))


def test_image_folder_with_another_csv_stays_an_image_folder(tmp_path):
    d = write_data_txt_folder(tmp_path / "f", n=3)
    (d / "data.txt").unlink()
    (d / "notes.csv").write_text("a,b\n1,2\n")
    assert detect_kind(d) is None
    with open_source(str(d)) as src:
        assert type(src).__name__ == "ImageFolderSource"


def test_prep_cli_lists_and_flags():
    import argparse

    from data_prep.config import crop_presets, load_config
    from vbp_live.cli import cmd_prep
    from vbp_live.recordings import formats, options

    assert cmd_prep.KINDS == formats.KINDS and cmd_prep.ANGLE_UNITS == options.ANGLE_UNITS
    assert sorted(cmd_prep.PRESETS) == sorted(crop_presets())
    parser = argparse.ArgumentParser()
    cmd_prep.register(parser.add_subparsers())
    args = parser.parse_args(["prep", "x", "-o", "y", "--positive", "left", "--fps", "30", "--angle-unit", "rad",
                              "--full-scale-deg", "20", "--mode", "user", "--min-throttle", "0.1"])
    cfg = load_config(None, cmd_prep.overrides(args))
    assert cfg.folder == FolderConfig(angle_unit="rad", positive_right=False, fps=30.0, full_scale_deg=20.0)
    assert (cfg.tub.positive_right, cfg.tub.full_scale_deg, cfg.tub.modes, cfg.tub.min_throttle) == \
        (False, 20.0, ("user",), 0.1)


@pytest.mark.parametrize("damage", ["cut", "garbage", "empty"])
def test_damaged_video_is_counted_or_one_line(tmp_path, damage):
    seg = write_comma_segment(tmp_path / "seg", n=20)
    data = (seg / "video.hevc").read_bytes()
    (seg / "video.hevc").write_bytes({"cut": data[: len(data) // 2], "garbage": bytes(range(256)) * 8,
                                      "empty": b""}[damage])
    cfg = PrepConfig.from_dict({"crop": {"preset": "donkey"}})
    try:
        res = prepare([seg], tmp_path / "ds", cfg, progress=False)
    except InputError as e:
        assert "\n" not in str(e)
        return
    assert damage == "cut" and res.counts["read"] == 20 and res.counts["kept"] < 20
