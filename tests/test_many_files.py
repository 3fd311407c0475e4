"""``vbp-live run a.mp4 b.mp4 dir/ --out-dir DIR``: expansion, a failing input, the summary, torchrun shares."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from stream_util import read_video, tiny_checkpoint, write_video
from train_helpers import make_steering_dataset

from vbp_live.cli.main import main
from vbp_live.stream.batch import Place, expand_inputs, output_names

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("c") / "t.pt")


def _images(folder: Path, n: int) -> Path:
    folder.mkdir(parents=True)
    for i in range(n):
        cv2.imwrite(str(folder / f"{i}.png"), np.full((240, 320, 3), 60 + i, np.uint8))
    return folder


def test_folders_expand_to_their_videos_and_recordings_but_one_input_folders_stay(tmp_path):
    d = tmp_path / "drives"
    d.mkdir()
    for name in ("b10.mp4", "b2.MOV", "notes.txt", ".hidden.mp4"):
        (d / name).write_bytes(b"x")
    _images(d / "frames", 2)  # an image folder: one input
    (d / "ds").mkdir()
    (d / "ds" / "manifest.yaml").write_text("{}")  # a prepared dataset: one input
    (d / "bags").mkdir()
    (d / "bags" / "part1.bag").write_bytes(b"")  # the bag parts of one drive: one input
    (d / "empty").mkdir()
    images = _images(tmp_path / "imgs", 2)
    got = expand_inputs([str(d), str(images), str(tmp_path / "missing.mp4"), str(d / "b2.MOV")])
    assert got == [str(d / n) for n in ("b2.MOV", "b10.mp4", "bags", "ds", "frames")] + [
        str(images), str(tmp_path / "missing.mp4")]
    assert expand_inputs([str(d / "empty")]) == [str(d / "empty")]  # reported as that input's error
    assert output_names(["a/x.mp4", "b/x.mp4", "x/", "0", "http://h/v.mjpg"]) == ["x", "x_2", "x_3", "camera0",
                                                                                "stream"]
    assert Place(1, 3).share(list(range(8))) == [1, 4, 7]


def test_many_inputs_one_failing_summary_and_exit_code(tmp_path, ckpt, capsys):
    a = write_video(tmp_path / "a.mp4", 6, fps=10)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    ds = make_steering_dataset(tmp_path / "ds", n=8, height=125, width=160)
    out, summary = tmp_path / "overlays", tmp_path / "summary.json"
    rc = main(["run", str(a), str(broken), str(ds), "-c", str(ckpt), "--out-dir", str(out),
               "--summary-json", str(summary), "--batch", "4", "-q"])
    text = capsys.readouterr().out
    assert rc == 1
    assert "3 inputs, 2 ok, 1 failed" in text and "FAILED: " in text
    data = json.loads(summary.read_text())
    by = {Path(r["source"]).name: r for r in data["inputs"]}
    assert list(by) == ["a.mp4", "broken.mp4", "ds"] and data["failed"] == 1 and data["complete"]
    assert by["a.mp4"]["ok"] and by["a.mp4"]["frames"] == 6 and by["a.mp4"]["rmse_deg"] is None
    assert not by["broken.mp4"]["ok"] and "broken.mp4" in by["broken.mp4"]["error"]
    assert by["ds"]["ok"] and by["ds"]["frames"] == 8 and by["ds"]["frames_with_truth"] == 8
    errs = [float(r["error_deg"]) for r in csv.DictReader((out / "ds_overlay.csv").open())]
    assert by["ds"]["rmse_deg"] == pytest.approx(float(np.sqrt(np.mean(np.square(errs)))), rel=1e-3)
    assert len(read_video(out / "a_overlay.mp4")[0]) == 6
    assert sorted(p.name for p in out.iterdir()) == ["a_overlay.csv", "a_overlay.mp4", "ds_overlay.csv",
                                                     "ds_overlay.mp4"]


def test_single_input_options_are_refused_with_several(tmp_path, ckpt, capsys):
    a, b = write_video(tmp_path / "a.mp4", 2), write_video(tmp_path / "b.mp4", 2)
    assert main(["run", str(a), str(b), "-c", str(ckpt), "--out", str(tmp_path / "o.mp4")]) == 1
    assert "--out: one input only" in capsys.readouterr().err
    assert main(["run", str(a), str(b), "-c", str(ckpt), "--serve", "0", "--csv", "x.csv"]) == 1
    assert "--csv, --serve: one input only" in capsys.readouterr().err


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR")}
    return {**env, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **extra}


@pytest.mark.slow
def test_torchrun_two_processes_share_the_inputs_and_rank0_prints_all(tmp_path, ckpt):
    (tmp_path / "in").mkdir()
    videos = [write_video(tmp_path / "in" / f"v{i}.mp4", 3 + i, fps=10) for i in range(4)]
    (tmp_path / "in" / "zz_broken.mp4").write_bytes(b"junk")
    out, summary = tmp_path / "out", tmp_path / "s.json"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m",
           "vbp_live.cli.main", "run", str(tmp_path / "in"), "-c", str(ckpt), "--out-dir", str(out),
           "--summary-json", str(summary), "--device", "cpu", "-q"]
    run = subprocess.run(cmd, capture_output=True, text=True, env=_env(), cwd=tmp_path, timeout=300)
    assert run.returncode != 0, run.stdout + run.stderr  # one input failed
    assert run.stdout.count("5 inputs, 4 ok, 1 failed") == 1, run.stdout + run.stderr  # rank 0 only
    data = json.loads(summary.read_text())
    assert data["complete"] and data["world"] == 2
    assert [Path(r["source"]).name for r in data["inputs"]] == [v.name for v in videos] + ["zz_broken.mp4"]
    assert [r["rank"] for r in data["inputs"]] == [0, 1, 0, 1, 0]
    assert [r["frames"] for r in data["inputs"]] == [3, 4, 5, 6, 0]
    for v in videos:
        assert len(read_video(out / f"{v.stem}_overlay.mp4")[0]) == int(v.stem[1:]) + 3


@pytest.mark.slow
def test_env_vars_alone_take_this_process_share(tmp_path, ckpt):
    videos = [write_video(tmp_path / f"v{i}.mp4", 2, fps=10) for i in range(3)]
    out, summary = tmp_path / "out", tmp_path / "s.json"
    cmd = [sys.executable, "-m", "vbp_live.cli.main", "run", *map(str, videos), "-c", str(ckpt), "--out-dir",
           str(out), "--summary-json", str(summary), "-q"]
    run = subprocess.run(cmd, capture_output=True, text=True, env=_env(RANK="1", WORLD_SIZE="2"), cwd=tmp_path,
                         timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    data = json.loads((tmp_path / "s.rank1.json").read_text())
    assert not data["complete"] and [Path(r["source"]).name for r in data["inputs"]] == ["v1.mp4"]
    assert sorted(p.name for p in out.iterdir()) == ["v1_overlay.csv", "v1_overlay.mp4"]
