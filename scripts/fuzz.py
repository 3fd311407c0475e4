"""Fuzz vbp_live with seeded mutants of every kind of input; print a table of outcomes.

    python scripts/fuzz.py --n 1000                  # every kind, 1000 mutants each
    python scripts/fuzz.py --kinds bag,checkpoint --n 50 --seed 7 --jobs 2
    python scripts/fuzz.py --n 20 --show traceback   # list the cases that went wrong

Each case writes one mutant (deterministic per kind and seed) and runs the real ``vbp-live``
command on it in a forked child with a memory cap (address space and peak RSS) and a timeout.
Outcomes: success / clear error (the CLI's one-line error) / traceback / crash / hang / memory.
The target is 0 tracebacks, crashes, hangs and memory over the cap. Reproduce one case with
``--kinds KIND --seed S --n 1 --keep DIR`` (the mutant and its log stay in DIR).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests"), str(REPO)]

from fuzzing.harness import BAD, OUTCOMES, CaseResult, run_case, run_setup  # noqa: E402
from fuzzing.kinds import KINDS  # noqa: E402


def preload() -> None:
    """Import the heavy modules once in the parent so each fork starts warm (no work is done here)."""
    import importlib

    for mod in ("torch", "cv2", "vbp_live.cli.main", "vbp_live.stream.session", "vbp_live.train.run",
                "data_prep.pipeline", "vbp_live.recordings.formats"):
        with contextlib.suppress(ImportError):
            importlib.import_module(mod)


def fuzz(kinds: list[str], n: int, seed: int, workdir: Path, timeout_s: float, mem_cap_mb: int, jobs: int,
         progress: bool = True, results: list[CaseResult] | None = None) -> list[CaseResult]:
    """Run ``n`` cases of each kind; returns every case's result (also appended to ``results`` as they end)."""
    import random

    base = workdir / "seed"
    base.mkdir(parents=True, exist_ok=True)
    done_setups: set[str] = set()
    results = [] if results is None else results
    for name in kinds:
        kind = KINDS[name]
        key = f"{kind.setup.__module__}.{kind.setup.__qualname__}"
        if key not in done_setups:
            run_setup(lambda k=kind: k.setup(base), workdir / f"setup-{name}.log")
            done_setups.add(key)

        def one(s: int, kind=kind) -> CaseResult:
            d = workdir / kind.name / str(s)
            d.mkdir(parents=True, exist_ok=True)
            rng = random.Random(f"{kind.name}:{s}")
            return run_case(kind.name, s, lambda: kind.case(base, d, rng), d, timeout_s, mem_cap_mb)

        seeds = range(seed, seed + n)
        pool = ThreadPoolExecutor(max(1, jobs))
        try:
            for k, r in enumerate(pool.map(one, seeds), 1):
                results.append(r)
                if progress:
                    print(f"\r{name}: {k}/{n}", end="", file=sys.stderr, flush=True)
        finally:  # on Ctrl-C: the cases not started are cancelled, the running ones end by their timeout
            pool.shutdown(wait=True, cancel_futures=True)
        if progress:
            print(file=sys.stderr)
    return results


def table(results: list[CaseResult]) -> str:
    """A Markdown table: one row per kind, one column per outcome, plus the slowest case and peak memory."""
    kinds = list(dict.fromkeys(r.kind for r in results))
    head = "| kind | cases | " + " | ".join(OUTCOMES) + " | slowest case s | peak MB |"
    rows = [head, "|" + "---|" * (len(OUTCOMES) + 4)]
    for k in kinds:
        rs = [r for r in results if r.kind == k]
        c = Counter(r.outcome for r in rs)
        rows.append(f"| {k} | {len(rs)} | " + " | ".join(str(c.get(o, 0)) for o in OUTCOMES)
                    + f" | {max(r.seconds for r in rs):.1f} | {max(r.peak_mb for r in rs):.0f} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, fuzz, print the table; exit 1 if any case was a traceback/crash/hang/memory."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kinds", default=",".join(KINDS), help=f"comma-separated, from: {', '.join(KINDS)}")
    ap.add_argument("--n", type=int, default=100, help="mutants per kind (default: %(default)s)")
    ap.add_argument("--seed", type=int, default=0, help="first seed (default: %(default)s)")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds per case before it counts as a hang")
    ap.add_argument("--mem-mb", type=int, default=1024, help="memory cap per case, MB (default: %(default)s)")
    ap.add_argument("--jobs", type=int, default=1, help="cases run at once (default: %(default)s)")
    ap.add_argument("--keep", help="keep the mutants and logs in this folder (default: a temp folder, removed)")
    ap.add_argument("--json", help="write every case's result to this JSON file")
    ap.add_argument("--show", default="traceback,crash,hang,memory",
                    help="list the cases with these outcomes (default: %(default)s)")
    args = ap.parse_args(argv)
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        ap.error(f"unknown kind(s) {', '.join(unknown)}; known: {', '.join(KINDS)}")
    preload()
    results: list[CaseResult] = []
    with tempfile.TemporaryDirectory(prefix="vbp-fuzz-") as tmp:
        workdir = Path(args.keep) if args.keep else Path(tmp)
        try:
            fuzz(kinds, args.n, args.seed, workdir, args.timeout, args.mem_mb, args.jobs, results=results)
        except KeyboardInterrupt:
            print(f"\ninterrupted: the table covers the {len(results)} cases that ended", file=sys.stderr)
    if not results:
        return 130
    print(table(results))
    show = set(args.show.split(","))
    for r in results:
        if r.outcome in show:
            print(f"{r.kind} seed {r.seed}: {r.outcome}: {r.detail}")
    if args.json:
        Path(args.json).write_text(json.dumps([r.__dict__ for r in results], indent=1))
    return 1 if any(r.outcome in BAD for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
