"""The analysis script the README quotes runs end to end on a small synthetic drive."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from vbp_live.cli.main import main

ROOT = Path(__file__).resolve().parents[1]


def test_lane_focus_reports_every_class(tmp_path):
    drive = tmp_path / "drive"
    assert main(["synth", "--out", str(drive), "--seed", "2", "--frames", "60", "--format", "bag,gt"]) == 0
    crop = ["--set", "crop.top=0.52", "--set", "crop.bottom=0.72"]  # the default shipped model's crop
    assert main(["prep", str(drive / "synth_seed2.bag"), "-o", str(tmp_path / "ds"), "--min-speed", "0", *crop]) == 0
    run = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "lane_focus.py"), "--drive", str(tmp_path / "ds"),
         str(drive / "ground_truth.npz"), "--frames", "12", "--threads", "2"],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert run.returncode == 0, run.stderr
    rows = dict(re.findall(r"^\| (lane|hmark|shadow|car|road) \| (.+) \|$", run.stdout, flags=re.M))
    assert set(rows) == {"lane", "hmark", "shadow", "car", "road"}
    road = [float(v.rstrip("%")) for v in rows["road"].split(" | ")]
    assert 50 < road[0] <= 100 and road[1] > 0  # the road covers most of the crop, and gets mass
    assert re.search(r"lane-marking focus \d+\.\d\d", run.stdout)
