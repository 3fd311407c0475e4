"""Mutated tubs and frame folders through prep's readers and pass 2, in-process.

Every mutant must end in a prepared dataset (bad records dropped and counted) or a
:class:`~vbp_live.core.errors.VbpLiveError` whose message is one line (or an ``OSError`` naming its
file); anything else is a bug. A per-case alarm turns a hang into a failure. The outcome counts
are printed (``-s``) and quoted in docs/data.md.
"""

from __future__ import annotations

import random
import signal
from collections import Counter
from pathlib import Path

import pytest
from fuzzing.folder_mutators import mutate_folder
from fuzzing.tub_mutators import mutate_tub
from recording_fixtures import write_data_txt_folder, write_label_csv_folder, write_tub_v1, write_tub_v2

from data_prep.config import PrepConfig
from data_prep.pipeline import prepare
from vbp_live.core.errors import VbpLiveError

N_MUTANTS = 100
CFG = PrepConfig.from_dict({"crop": {"preset": "donkey", "out_height": 20, "out_width": 40},
                            "decode": {"threads": 1}, "filter": {"min_speed_mps": 0.0}})
SEEDS = {
    "tub_v2": lambda d: write_tub_v2(d, n=8, start=3, deleted=[6, 4], size=(48, 36)),
    "tub_v1": lambda d: write_tub_v1(d, n=6),
    "data_txt": lambda d: write_data_txt_folder(d, n=8, size=(48, 36)),
    "label_csv": lambda d: write_label_csv_folder(d, n=8),
}


def _timeout(*_: object) -> None:
    raise TimeoutError("case took over 20 s: a hang")


def run_mutant(src: Path, case: Path, rng: random.Random, kind: str) -> str:
    """One mutant through prepare(); returns the outcome (``ok`` or ``error``); raises on a bug."""
    (mutate_tub if kind.startswith("tub") else mutate_folder)(src, case / "in", rng)
    old = signal.signal(signal.SIGALRM, _timeout)
    signal.alarm(20)
    try:
        prepare([case / "in"], case / "out", CFG, progress=False)
        return "ok"
    except VbpLiveError as e:
        assert "\n" not in str(e).strip(), f"multi-line error: {e}"
        return "error"
    except OSError as e:
        assert e.filename, f"OSError without a file name: {e!r}"
        return "error"
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(SEEDS))
def test_mutants_end_in_a_dataset_or_one_line(tmp_path, kind):
    src = SEEDS[kind](tmp_path / "seed")
    counts: Counter[str] = Counter()
    for seed in range(N_MUTANTS):
        rng = random.Random(f"{kind}-{seed}")
        try:
            counts[run_mutant(src, tmp_path / f"c{seed}", rng, kind)] += 1
        except Exception as e:  # a bug: say which seed reproduces it
            raise AssertionError(f"{kind} seed {seed}: {type(e).__name__}: {e}") from e
    print(f"\n{kind}: {N_MUTANTS} mutants: {counts['ok']} prepared, {counts['error']} one-line errors")
    assert counts["ok"] + counts["error"] == N_MUTANTS
