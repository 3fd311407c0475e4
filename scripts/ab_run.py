"""Paired end-to-end A/B of ``vbp-live run`` variants, alternating in one process tree.

Each variant is a name plus environment settings (or extra CLI flags after ``--``); every round
runs every variant once, in a fresh shuffled order, on the same video, and records end-to-end
fps, model-step fps and the CPU time of the whole ``vbp-live run`` process per frame. Prints
the medians per variant and, per variant, the median over rounds of its fps ratio to the
first variant (paired: both runs of a ratio come from the same round).

Example (glibc keeping freed memory against the default; docs/benchmarks.md)::

    python scripts/ab_run.py ../shared/data/video/hough-lane-detection_highway.mp4 --rounds 6 \\
        --variant "default:" \\
        --variant "tuned:GLIBC_TUNABLES=glibc.malloc.trim_threshold=1073741824:glibc.malloc.mmap_threshold=67108864"
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def parse_variant(text: str) -> tuple[str, dict[str, str], list[str]]:
    """``name:K=V,K=V -- --flag x`` -> (name, env, extra CLI args)."""
    spec, _, flags = text.partition(" -- ")
    name, _, envs = spec.partition(":")
    env = dict(kv.split("=", 1) for kv in envs.split(",") if kv)
    return name, env, flags.split()


def run_once(video: str, env: dict[str, str], flags: list[str], workdir: Path) -> dict[str, float]:
    """One ``vbp-live run`` writing an overlay mp4; returns fps, model fps and CPU ms per frame."""
    stats = workdir / "stats.json"
    cmd = [sys.executable, "-m", "vbp_live.cli.main", "run", video, "-o", str(workdir / "out.mp4"),
           "--stats-json", str(stats), "-q", *flags]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, env={**os.environ, **env}, check=True, capture_output=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    s = json.loads(stats.read_text())
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    n = s["frames_out"]
    return {"fps": s["fps"], "model_fps": s["model_fps"], "cpu_ms_per_frame": 1000 * cpu / n,
            "process_s": wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("video")
    ap.add_argument("--variant", action="append", required=True, help='"name:ENV=VAL,... [-- cli flags]"')
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="also write every measurement here")
    args = ap.parse_args()
    variants = [parse_variant(v) for v in args.variant]
    rng = random.Random(args.seed)
    rows: dict[str, list[dict[str, float]]] = {name: [] for name, _, _ in variants}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            order = variants[:]
            rng.shuffle(order)
            for name, env, flags in order:
                rows[name].append(run_once(args.video, env, flags, Path(tmp)))
                m = rows[name][-1]
                print(f"round {r + 1}/{args.rounds} {name:>14}: {m['fps']:.1f} fps, model {m['model_fps']:.1f} fps, "
                      f"{m['cpu_ms_per_frame']:.1f} CPU ms/frame", flush=True)
    base = variants[0][0]
    print(f"\n| variant | fps (median) | model-step fps | CPU ms/frame | fps ÷ {base} (paired median) |")
    print("|---|---|---|---|---|")
    for name, _, _ in variants:
        med = {k: statistics.median(m[k] for m in rows[name]) for k in ("fps", "model_fps", "cpu_ms_per_frame")}
        ratio = statistics.median(a["fps"] / b["fps"] for a, b in zip(rows[name], rows[base], strict=True))
        print(f"| {name} | {med['fps']:.1f} | {med['model_fps']:.1f} | {med['cpu_ms_per_frame']:.1f} | {ratio:.3f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
