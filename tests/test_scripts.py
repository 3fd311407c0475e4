"""The analysis scripts the docs quote run end to end on a small synthetic drive."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from vbp_live.cli.main import main
from vbp_live.io.checkpoint import load_checkpoint, save_checkpoint
from vbp_live.io.dataset import PreparedDataset
from vbp_live.models import create_model, frames_to_input
from vbp_live.stream.session import SHIPPED_MODELS

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """A folder with a 60-frame synthetic drive (``drive/``: bag and ground truth) prepared into ``ds/``."""
    tmp_path = tmp_path_factory.mktemp("scripts")
    drive = tmp_path / "drive"
    assert main(["synth", "--out", str(drive), "--seed", "2", "--frames", "60", "--format", "bag,gt"]) == 0
    crop = ["--crop-of", "netsvf"]  # the shipped NetSVF's crop (lane_focus.py runs that model below)
    assert main(["prep", str(drive / "synth_seed2.bag"), "-o", str(tmp_path / "ds"), "--min-speed", "0", *crop]) == 0
    return tmp_path


def test_lane_focus_reports_every_class(work):
    run = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "lane_focus.py"), "--checkpoint", str(SHIPPED_MODELS["netsvf"]),
         "--drive", str(work / "ds"), str(work / "drive" / "ground_truth.npz"), "--frames", "12", "--threads", "2"],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert run.returncode == 0, run.stderr
    rows = dict(re.findall(r"^\| (lane|hmark|shadow|car|road) \| (.+) \|$", run.stdout, flags=re.M))
    assert set(rows) == {"lane", "hmark", "shadow", "car", "road"}
    road = [float(v.rstrip("%")) for v in rows["road"].split(" | ")]
    assert 50 < road[0] <= 100 and road[1] > 0  # the road covers most of the crop, and gets mass
    assert re.search(r"lane-marking focus \d+\.\d\d", run.stdout)


def test_export_model_writes_fp16_and_reports_held_out_error(work, tmp_path):
    ds = PreparedDataset(work / "ds")
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "last.pt", create_model("netsvf"), ds.crop, config={"lr": 0.1})
    run = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "export_model.py"), str(tmp_path / "last.pt"),
         str(tmp_path / "shipped.pt"), "--test", str(work / "ds")],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert run.returncode == 0, run.stderr
    assert re.search(r"RMSE [\d.]+ rad = [\d.]+ deg SWA .*mean error [-+][\d.]+ deg, gain", run.stdout)
    ck = load_checkpoint(tmp_path / "shipped.pt")
    assert all(v.dtype == torch.float16 for v in ck.state_dict.values() if v.is_floating_point())
    test = ck.meta["test"]["ds"]
    model = ck.build_model().eval()
    with torch.no_grad():  # the shipped model's own forward, the reference for the reported error
        pred = model(frames_to_input(np.asarray(ds.frames), "cpu")).reshape(-1).double().numpy()  # (N,)
    err = np.degrees(pred - ds.steering)  # (N,)
    assert test["frames"] == len(ds)
    assert test["error_mean_deg"] == pytest.approx(err.mean(), abs=1e-3)
    assert test["val_rmse_deg"] == pytest.approx(np.sqrt(np.mean(err ** 2)), abs=1e-3)
    again = subprocess.run(  # an exported model again, to record the horizon its band was chosen for
        [sys.executable, str(ROOT / "scripts" / "export_model.py"), str(tmp_path / "shipped.pt"),
         str(tmp_path / "h.pt"), "--horizon", "0.47"], capture_output=True, text=True, timeout=300, check=False)
    assert again.returncode == 0, again.stderr
    moved = load_checkpoint(tmp_path / "h.pt")
    assert moved.crop.horizon == 0.47 and moved.crop.top == ck.crop.top  # the band itself unchanged
    assert moved.meta.keys() == ck.meta.keys() and moved.meta["test"]["ds"]["val_rmse_deg"] == test["val_rmse_deg"]
    assert all(torch.equal(moved.state_dict[k], v) for k, v in ck.state_dict.items())
