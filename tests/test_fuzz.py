"""The fuzz suite, a bounded number of seeded mutants per kind (seconds in CI).

``python scripts/fuzz.py --n 1000`` runs the long version; docs/reliability.md has its table.
Every case must end as success or as the CLI's one-line error: no traceback, crash, hang or
memory over the cap. The script runs in a fresh process: it forks per case, which is only safe
from a parent that has not started torch's or OpenCV's thread pools (this test process has).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from fuzzing.harness import BAD  # noqa: E402
from fuzzing.kinds import KINDS  # noqa: E402

N = int(os.environ.get("VBP_FUZZ_N", "3"))


@pytest.fixture(scope="module")
def fuzz_results(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    out = tmp_path_factory.mktemp("fuzz") / "results.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts/fuzz.py"), "--n", str(N), "--timeout", "120", "--json", str(out)],
        capture_output=True, text=True, timeout=1800,
    )
    assert out.exists(), proc.stdout + proc.stderr
    return json.loads(out.read_text())


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(KINDS))
def test_no_traceback_hang_or_memory(fuzz_results: list[dict], kind: str) -> None:
    mine = [r for r in fuzz_results if r["kind"] == kind]
    assert len(mine) == N
    bad = [f"seed {r['seed']}: {r['outcome']}: {r['detail']}" for r in mine if r["outcome"] in BAD]
    assert not bad, "\n".join(bad)
