"""Done-when of issue 17: a real donkeycar tub, a data.txt frame folder and a comma2k19 segment with
an HEVC video encoded here each go ``prep`` -> ``train`` (a few steps) -> ``run`` with the ground
truth (``true_deg`` in the CSV) -> ``explain`` (actual angle in the caption) -> ``evaluate``,
through the real CLI. Also: an interrupted prep of a tub resumes to a byte-identical dataset.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from prep_fixtures import interrupt_prep
from recording_fixtures import write_comma_segment, write_data_txt_folder, write_tub_v2

from data_prep.config import crop_presets
from vbp_live.io.checkpoint import load_checkpoint
from vbp_live.io.dataset import PreparedDataset

ROOT = Path(__file__).resolve().parents[1]


def cli(*args: str) -> subprocess.CompletedProcess:
    """``python -m vbp_live.cli.main ARGS`` with this checkout's code; fails the test on a non-zero exit."""
    res = subprocess.run([sys.executable, "-m", "vbp_live.cli.main", *args], cwd=ROOT, capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0, f"{args[0]} failed:\n{res.stdout}\n{res.stderr}"
    return res


def _recording(name: str, tmp: Path, shared: Path) -> Path:
    if name == "tub":
        return shared / "donkeycar" / "real-car-tub"
    if name == "data_txt":
        return write_data_txt_folder(tmp / "sully", n=24)
    return write_comma_segment(tmp / "segment", n=24, size=(320, 240))


CASES = {  # recording -> (prep preset, registered model, its extra args)
    "tub": ("donkey", "donkeycar_linear", "{num_outputs: 1}"),
    "data_txt": ("pilotnet", "pilotnet", "{}"),
    "comma2k19": ("pilotnet", "pilotnet", "{}"),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CASES))
def test_prep_train_run_evaluate(tmp_path, shared_data, name):
    preset, model, args = CASES[name]
    rec = _recording(name, tmp_path, shared_data)
    ds = tmp_path / "ds"
    cli("prep", str(rec), "-o", str(ds), "--model", preset, "--no-progress", "--test-count", "8")
    dataset = PreparedDataset(ds)
    assert dataset.manifest["preprocessing"]["crop"]["preset"] == preset
    run_dir = tmp_path / "run"
    cli("train", "--config", str(ROOT / "configs" / "netsvf.yaml"), "--set", f"data.path={ds}",
        "--set", f"model.name={model}", "--set", f"model.args={args}", "--set", f"run_dir={run_dir}",
        "--set", "train.max_steps=2", "--set", "train.epochs=1", "--set", "train.batch_size=4",
        "--set", "snapshot.epochs=[0.01]", "--set", "snapshot.frames=1", "--set", "train.device=cpu",
        "--set", "train.progress=false", "--set", "train.threads=1", "--set", "data.prefetch=0")
    ckpt = run_dir / "last.pt"
    assert ckpt.is_file() and list((run_dir / "snapshots").glob("*.png"))
    assert load_checkpoint(ckpt).crop == dataset.crop == crop_presets()[preset]  # the preset travels along
    out = tmp_path / "run.csv"
    cli("run", str(rec), "--checkpoint", str(ckpt), "--csv", str(out), "--no-output", "--device", "cpu",
        "--max-frames", "12")
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 12 and all(r["true_deg"] not in ("", "nan") for r in rows)
    assert all(abs(float(r["error_deg"]) - (float(r["true_deg"]) - float(r["pred_deg"]))) < 1e-3 for r in rows)
    explained = cli("explain", str(rec), "--checkpoint", str(ckpt), "--frames", "2", "--methods", "vbp",
                    "--out", str(tmp_path / "ex"), "--device", "cpu")
    assert "actual" in explained.stdout and len(list((tmp_path / "ex").glob("*.png"))) == 2
    cli("evaluate", "--data", str(rec), "--checkpoint", str(ckpt), "--frames", "2", "--methods", "vbp",
        "--steps", "2", "--sanity-frames", "0", "--out", str(tmp_path / "ev"), "--device", "cpu")
    assert (tmp_path / "ev" / "report.md").is_file()


# ---------------------------------------------------------------- interrupted prep of a tub

N_RECORDS = 600


@pytest.fixture(scope="module")
def big_tub(tmp_path_factory):
    tub = write_tub_v2(tmp_path_factory.mktemp("tub") / "tub", n=N_RECORDS, start=40, deleted=[300, 45, 170],
                       size=(320, 240))
    (tub / "images" / "100_cam_image_array_.jpg").write_bytes(b"\xff\xd8 not a jpeg \xff\xd9")  # rejected in pass 2
    (tub / "images" / "101_cam_image_array_.jpg").write_bytes(b"")  # dropped in the scan
    return tub


def _cmd(tub: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "vbp_live.cli.main", "prep", str(tub), "-o", str(out), "--no-progress",
            "--model", "donkey", "--set", "output.checkpoint_every=40", "--threads", "1"]


@pytest.fixture(scope="module")
def reference(big_tub, tmp_path_factory):
    ref = tmp_path_factory.mktemp("ref") / "ds"
    subprocess.run(_cmd(big_tub, ref), cwd=ROOT, check=True, capture_output=True)
    counts = PreparedDataset(ref).manifest["counts"]
    assert counts["dropped"] == {"corrupt_image": 1, "deleted": 3, "empty_image": 1}
    return ref


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["kill-9", "ctrl-c"])
def test_interrupted_tub_prep_resumes_to_identical_dataset(tmp_path, big_tub, reference, sig):
    out = tmp_path / "ds"
    progress = out.parent / "ds.partial" / "progress.yaml"
    first = interrupt_prep(_cmd(big_tub, out), progress, sig, ROOT)
    assert first.returncode == (-9 if sig == signal.SIGKILL else 130) and not out.exists(), first.stderr
    assert 0 < yaml.safe_load(progress.read_text())["num_rows"] < N_RECORDS - 5
    second = subprocess.run(_cmd(big_tub, out), cwd=ROOT, capture_output=True, text=True)
    assert second.returncode == 0 and "resumed" in second.stdout, second.stderr
    for name in ("frames.u8", "index.csv", "manifest.yaml", "dropped.csv", "columns.csv"):
        assert (reference / name).read_bytes() == (out / name).read_bytes(), name
    assert sorted(os.listdir(reference)) == sorted(os.listdir(out))
