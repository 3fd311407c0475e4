"""Ctrl-C and SIGTERM at random moments: a real ``vbp-live run`` always exits 130/143 with finished outputs.

Twenty runs (video file, image folder, Udacity bag, MJPEG stream in turn; SIGINT and SIGTERM
alternating; seeded delays) must each exit with 128 + the signal, leave a video that decodes and
holds exactly the frames listed in the CSV, and nothing else. ``scripts/interrupt_check.py``
runs more of them and prints the table (docs/reliability.md).
"""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
from interrupts import make_inputs, plan, run_trial, table

from vbp_live.io.atomic import temp_beside

N_RUNS = 20


@pytest.mark.slow
def test_random_sigint_and_sigterm_always_finish_the_outputs(tmp_path):
    inputs = make_inputs(tmp_path / "inputs")
    with ThreadPoolExecutor(3) as pool:
        trials = list(pool.map(lambda a: run_trial(a[0] + 1, *a[1], inputs, tmp_path / f"run{a[0] + 1}"),
                               enumerate(plan(N_RUNS, seed=15))))
    assert {t.sig for t in trials} == {"SIGINT", "SIGTERM"} and len(trials) >= 20
    assert all(t.ok for t in trials), table(trials) + "\n" + "\n".join(t.output for t in trials if not t.ok)
    assert sum(bool(t.frames) for t in trials) >= N_RUNS // 2  # most signals landed after frames were written


def test_a_killed_runs_temporary_file_is_removed_by_the_next_run(tmp_path):
    target = tmp_path / "out.mp4"
    code = f"from vbp_live.io.atomic import temp_beside; print(temp_beside({str(target)!r}, 'partial'))"
    dead = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert dead and (tmp_path / dead.rsplit("/", 1)[1]).exists()  # as if the process had been killed
    mine = temp_beside(target, "partial")
    assert [p.name for p in tmp_path.iterdir()] == [mine.name]  # the dead process's file is gone, not mine
