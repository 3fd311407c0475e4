"""scripts/bench_train.py: the floor, the full Trainer step and the overhead ratio, in one short run."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_bench_train_prints_floor_step_and_overhead(tmp_path):
    cmd = [sys.executable, str(ROOT / "scripts" / "bench_train.py"), "--model", "nethvf", "--batch", "2",
           "--rounds", "2", "--steps", "1", "--warmup", "1", "--threads", "1", "--augment"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path, check=True).stdout
    assert "channels_last True" in out and "augment True" in out
    floor = re.search(r"\(a\) floor.* frames/s +\(([\d.]+) s/step, (\d+) steps\)", out)
    step = re.search(r"\(b\) training step.* frames/s +\(([\d.]+) s/step, (\d+) steps\)", out)
    ratio = re.search(r"\(c\) overhead b/a - 1 +: +([-+][\d.]+) %", out)
    assert floor and step and ratio, out
    assert floor[2] == step[2] == "2"  # paired: as many floor steps as timed training steps
    a, b = float(floor[1]), float(step[1])  # seconds per step
    assert float(ratio[1]) == pytest.approx((b / a - 1) * 100, abs=1.0)  # printed figures are rounded


@pytest.mark.slow
def test_bench_train_compare_times_each_variant_in_turn(tmp_path):
    cmd = [sys.executable, str(ROOT / "scripts" / "bench_train.py"), "--model", "nethvf", "--batch", "2",
           "--rounds", "2", "--threads", "1", "--compare", "fp32,fp32+cl"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path, check=True).stdout
    rows = re.findall(r"floor (\S+) +: .*median ([\d.]+); rounds ([\d. ]+)\)", out)
    assert [r[0] for r in rows] == ["fp32", "fp32+cl"], out
    assert float(rows[0][1]) == 1.0 and all(len(r[2].split()) == 2 for r in rows)
    bad = subprocess.run(cmd[:-1] + ["fp32,fp8"], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert bad.returncode != 0 and "unknown variant 'fp8'" in bad.stderr
