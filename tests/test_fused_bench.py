"""``vbp-live bench`` on a tiny configuration: every method is a row or a skip with a reason.

No timing asserts (the machine is shared and noisy); the figures must only be present and finite.
"""

from __future__ import annotations

import math
import re

import pytest

from vbp_live.bench.core import paired_ratio
from vbp_live.bench.peers import PEERS
from vbp_live.cli.main import main

ALWAYS = ["forward", "vbp", "vbp_reference", "vbp pass alone"]
OPTIONAL = ["vbp_fused", "lrp (ours, ε=100)", *PEERS]


def _table(text: str) -> dict[tuple[int, str], tuple[float, float, float]]:
    rows = {}
    for line in text.splitlines():
        m = re.fullmatch(r"\| (\S+) \| (\d+) \| ([^|]+?) \| ([^|]+) \| ([^|]+) \| ([^|]+) \|", line)
        if m and m.group(2).isdigit():
            rows[(int(m.group(2)), m.group(3))] = (float(m.group(4)), float(m.group(5)), float(m.group(6)))
    return rows


def test_bench_tiny_configuration_has_every_row(tmp_path, capsys):
    out = tmp_path / "bench.md"
    args = ["bench", "--models", "netsvf", "--size", "125x125", "--batches", "1,2", "--repeats", "1",
            "--markdown", str(out)]
    assert main(args) == 0
    text = out.read_text()
    assert text in capsys.readouterr().out
    rows = _table(text)
    skipped = re.findall(r"^- (.+?): ", text.split("Not measured in this run:")[-1], flags=re.M)
    for b in (1, 2):
        for method in ALWAYS:
            assert (b, method) in rows, f"missing row {method} at batch {b}"
        for method in OPTIONAL:
            assert (b, method) in rows or method in skipped, f"{method} neither measured nor skipped with a reason"
        assert rows[(b, "forward")][1] == rows[(b, "forward")][2] == 1.0
    assert all(math.isfinite(v) and v > 0 for pair in rows.values() for v in pair)
    assert text.count("(CPU target ≤ 1.20)") == 1 and text.count("(CPU target ≤ 1.10)") == 1
    assert text.count("× the bound") == 2 and text.count("≥ 50×") == 2
    assert "torch " in text.splitlines()[0]


def test_bench_rejects_unknown_model_clearly(capsys):
    assert main(["bench", "--models", "nosuchnet"]) == 1
    assert "unknown model(s) nosuchnet" in capsys.readouterr().err


def test_paired_ratio_cancels_machine_phases():
    # forward 10 ms and a method 5 % dearer, timed while the machine drifts between phases
    phases = [1.0, 2.0, 2.0, 1.3, 3.0]  # only round 0 ran in the fastest phase
    fwd = [0.010 * p for p in phases]
    method = [0.0105 * p for p in phases]
    method[0] *= 1.5  # one round disturbed: its fastest-repeat ratio is now 1.05 * 1.3 / 1.0
    assert min(method) / min(fwd) == pytest.approx(1.05 * 1.3)
    assert paired_ratio(method, fwd) == pytest.approx(1.05)
