"""``vbp-live run`` and ``vbp-live demo`` end to end, in process: outputs, stats JSON, CSV, messages."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from stream_util import MjpegServer, coded_frame, decode_index, jpeg, read_video, tiny_checkpoint, write_video

from vbp_live.cli.main import main


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("c") / "t.pt")


def test_run_writes_video_csv_and_stats_json(tmp_path, ckpt, capsys):
    src = write_video(tmp_path / "in.mp4", 12, fps=12)
    out, stats_json, log_csv = tmp_path / "o.mp4", tmp_path / "s.json", tmp_path / "p.csv"
    rc = main(["run", str(src), "-c", str(ckpt), "--out", str(out), "--stats-json", str(stats_json),
               "--csv", str(log_csv), "--batch", "4", "-q"])
    text = capsys.readouterr().out
    assert rc == 0
    assert f"wrote {out}" in text and "ended: end of stream" in text and "p50" in text
    stats = json.loads(stats_json.read_text())
    assert (stats["frames_in"], stats["frames_out"], stats["dropped"]) == (12, 12, 0)
    assert stats["fps"] > 0 and stats["model_fps"] > 0
    assert stats["source"]["name"] == str(src) and stats["source"]["warnings"] == []
    assert stats["source"]["fps"] == pytest.approx(12) and stats["source"]["live"] is False
    for stage in ("read", "model", "render", "write", "end_to_end"):
        assert stats["latency"][stage]["p95_ms"] >= stats["latency"][stage]["p50_ms"] >= 0
    rows = list(csv.DictReader(log_csv.open()))
    assert [int(r["index"]) for r in rows] == list(range(12)) and rows[0]["true_deg"] == ""
    frames, fps = read_video(out)
    assert len(frames) == 12 and fps == pytest.approx(12)


def test_default_output_name_and_max_frames(tmp_path, ckpt, monkeypatch, capsys):
    src = write_video(tmp_path / "drive.mp4", 20)
    monkeypatch.chdir(tmp_path)
    assert main(["run", str(src), "-c", str(ckpt), "--max-frames", "5", "--no-hud", "-q"]) == 0
    assert "ended: max frames" in capsys.readouterr().out
    frames, _ = read_video(tmp_path / "drive_overlay.mp4")
    assert [decode_index(f) for f in frames] == list(range(5))


def test_clear_errors_for_a_missing_source_or_checkpoint(tmp_path, ckpt, capsys):
    assert main(["run", str(tmp_path / "none.mp4"), "-c", str(ckpt)]) == 1
    assert "none.mp4: no such file" in capsys.readouterr().err
    src = write_video(tmp_path / "in.mp4", 2)
    assert main(["run", str(src), "-c", str(tmp_path / "missing.pt")]) == 1
    assert "missing.pt: no such checkpoint" in capsys.readouterr().err


def test_lost_stream_ends_with_a_clear_message(tmp_path, ckpt, capsys):
    with MjpegServer([lambda: [jpeg(coded_frame(i)) for i in range(10)]], fps=30) as server:
        rc = main(["run", server.url, "-c", str(ckpt), "--out", str(tmp_path / "live.mp4"),
                   "--reconnect-timeout", "0.5", "-q"])
    captured = capsys.readouterr()
    assert rc == 1
    assert "ended: source lost" in captured.err and "giving up" in captured.err
    assert "live: stale frames are dropped" in captured.out
    frames, _ = read_video(tmp_path / "live.mp4")  # what was shown before the loss is kept, playable
    assert 0 < len(frames) <= 10


def test_demo_writes_an_overlay_video_and_reports_fps(tmp_path, capsys):
    out = tmp_path / "demo.mp4"
    assert main(["demo", "--frames", "6", "--out", str(out), "--device", "cpu", "-q"]) == 0
    text = capsys.readouterr().out
    assert f"wrote {out.resolve()}" in text and "fps" in text and "RMSE" in text
    assert "model:" in text and ("UNTRAINED" in text or "nethvf_randomized.pt" in text)
    frames, fps = read_video(out)
    assert len(frames) == 6 and frames[0].shape == (480, 640, 3) and fps == pytest.approx(20)


def test_checkpoint_names_a_shipped_model(tmp_path, monkeypatch):
    from vbp_live.cli.options import DEFAULT_NAME, SHIPPED_NAMES, checkpoint_or_shipped
    from vbp_live.core.errors import CheckpointError
    from vbp_live.stream.session import DEFAULT_MODEL, SHIPPED_MODELS

    assert DEFAULT_NAME == DEFAULT_MODEL  # what --help calls the default
    assert SHIPPED_NAMES.replace(" or ", ", ").split(", ") == list(SHIPPED_MODELS)  # what --help lists
    monkeypatch.chdir(tmp_path)
    for name, path in SHIPPED_MODELS.items():
        if path.is_file():
            assert checkpoint_or_shipped(name) == path
        else:
            with pytest.raises(CheckpointError, match=f"shipped model {name}"):
                checkpoint_or_shipped(name)
    (tmp_path / "netsvf").write_bytes(b"")  # a file of that name in the working directory wins
    assert checkpoint_or_shipped("netsvf") == Path("netsvf")
    assert checkpoint_or_shipped("my.pt") == Path("my.pt")


def test_run_camera_topic_plays_another_robots_bag(shared_data, tmp_path, ckpt, capsys):
    bag = shared_data / "rosbag1" / "qoi_raw.bag"
    stats_json = tmp_path / "s.json"
    rc = main(["run", str(bag), "-c", str(ckpt), "--camera-topic", "/spot/camera/hand_color/image",
               "--no-output", "--stats-json", str(stats_json), "-q"])
    text = capsys.readouterr().out
    assert rc == 0 and "source warning: no steering reports" in text
    stats = json.loads(stats_json.read_text())
    assert stats["frames_out"] == 1 and stats["source"]["skipped"]["counts"] == {}


def test_horizon_moves_the_band_as_a_checkpoint_made_for_that_camera_would(tmp_path, capsys):
    from dataclasses import replace

    import torch
    from stream_util import CROP

    from vbp_live.io.checkpoint import save_checkpoint
    from vbp_live.models import create_model

    src = write_video(tmp_path / "in.mp4", 6, fps=12)
    torch.manual_seed(0)
    net = create_model("netsvf", height=125, width=160)
    band = replace(CROP, top=0.3, bottom=0.6, horizon=0.3)
    here = save_checkpoint(tmp_path / "here.pt", net, band)  # the band chosen for a horizon at 0.3 H
    there = save_checkpoint(tmp_path / "there.pt", net, replace(band, top=0.45, bottom=0.75, horizon=None))

    def preds(ckpt: Path, *extra: str) -> list[str]:
        log = tmp_path / f"{ckpt.stem}{len(extra)}.csv"
        assert main(["run", str(src), "-c", str(ckpt), "--no-output", "--csv", str(log), "-q", *extra]) == 0
        return [r["pred_deg"] for r in csv.DictReader(log.open())]

    moved = preds(here, "--horizon", "0.45")
    assert moved == preds(there) and moved != preds(here)
    assert "crop rows 0.450-0.750 for the horizon at 0.450 H" in capsys.readouterr().out
    assert main(["run", str(src), "-c", str(there), "--horizon", "0.45", "--no-output"]) == 1
    err = capsys.readouterr().err
    assert "--horizon 0.45: " in err and "there.pt: the crop has no reference horizon" in err
