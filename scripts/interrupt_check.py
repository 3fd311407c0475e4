"""Send SIGINT and SIGTERM to real ``vbp-live run`` processes at seeded random moments; print a table.

    python scripts/interrupt_check.py --n 24              # 24 runs: video, folder, bag, stream in turn
    python scripts/interrupt_check.py --n 8 --kinds stream --seed 3 --keep /tmp/ic

Each run must exit 130 (SIGINT) or 143 (SIGTERM), leave a playable video holding the frames it
processed, a CSV complete to the last frame written, and nothing else (see tests/interrupts.py).
Exit status: 0 when every run met every requirement, 1 otherwise.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests"), str(REPO)]

from interrupts import KINDS, Trial, make_inputs, plan, run_trial, table  # noqa: E402


def check(n: int, seed: int, kinds: tuple[str, ...], workdir: Path, jobs: int) -> list[Trial]:
    """Run ``n`` interrupted runs (``jobs`` at a time) in ``workdir``; returns every trial."""
    inputs = make_inputs(workdir / "inputs")
    with ThreadPoolExecutor(jobs) as pool:
        futures = [pool.submit(run_trial, i + 1, kind, sig, delay, inputs, workdir / f"run{i + 1:03d}")
                   for i, (kind, sig, delay) in enumerate(plan(n, seed, kinds))]
        return [f.result() for f in futures]


def main() -> int:
    """Parse options, run the trials, print the table."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=24, help="interrupted runs (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the signal times (default: %(default)s)")
    p.add_argument("--kinds", default=",".join(KINDS), help="sources, in turn (default: %(default)s)")
    p.add_argument("--jobs", type=int, default=2, help="runs at a time (default: %(default)s)")
    p.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temporary one)")
    p.add_argument("--show", action="store_true", help="print the output of the runs that failed")
    args = p.parse_args()
    kinds = tuple(k for k in args.kinds.split(",") if k)
    unknown = set(kinds) - set(KINDS)
    if unknown:
        p.error(f"unknown kinds {sorted(unknown)}; choose from {', '.join(KINDS)}")
    with tempfile.TemporaryDirectory(prefix="vbp-interrupt-") as tmp:
        workdir = args.keep or Path(tmp)
        trials = check(args.n, args.seed, kinds, workdir, args.jobs)
    print(table(trials))
    if args.show:
        for t in trials:
            if not t.ok:
                print(f"\n--- run {t.number} ({t.kind}, {t.sig}):\n{t.output}")
    return 0 if all(t.ok for t in trials) else 1


if __name__ == "__main__":
    sys.exit(main())
