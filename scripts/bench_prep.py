#!/usr/bin/env python
"""Benchmark ``vbp-live prep`` end to end on 640x480 JPEG bags (target: >= 400 frames/s on 2 cores).

Writes a Udacity-layout bag of N frames at 20 Hz with 50 Hz steering reports (speed 10 m/s, so
every frame is kept and decoded), then runs the full preparation in a fresh subprocess per
size and prints frames/s, where the time goes (read, decode, preprocess, write) and the
process's peak memory. Frames are rendered by the synthetic world (``--unique`` distinct
ones, reused), JPEG quality 90 (about 40 KB, like Udacity's camera topics).

    python scripts/bench_prep.py                        # 2000 and 8000 frames, 2 threads
    python scripts/bench_prep.py --frames 4000 --threads 2 --model nethvf
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def make_bag(path: Path, n: int, unique: int, quality: int) -> None:
    """Write an n-frame bag cycling through ``unique`` rendered frames."""
    from vbp_live.io.udacity_bag import SteeringSamples, encode_jpeg, write_udacity_bag
    from vbp_live.synth import DriveConfig, render_frames, simulate_drive

    drive = simulate_drive(DriveConfig(seed=7, frames=unique, start_stopped=False))
    jpegs = [encode_jpeg(f, quality) for f, _ in render_frames(drive)]
    t0 = 1_479_425_441_000_000_000
    frame_t = t0 + 100_000_000 + np.arange(n, dtype=np.int64) * 50_000_000
    steer_t = t0 + np.arange(int(n * 2.5) + 10, dtype=np.int64) * 20_000_000
    angle = 0.3 * np.sin(np.arange(len(steer_t)) / 50.0)
    steering = SteeringSamples(steer_t, angle, np.full(len(steer_t), 10.0))
    write_udacity_bag(path, ((int(t), jpegs[k % unique]) for k, t in enumerate(frame_t)), steering)


def child(bag: str, out: str, threads: int, model: str) -> None:
    """Run one preparation and print its result as JSON (called in a fresh process)."""
    from data_prep.config import load_config
    from data_prep.pipeline import prepare
    from data_prep.report import timing_table

    cfg = load_config(None, {"decode.threads": threads, "crop.preset": model})
    res = prepare([bag], out, cfg, progress=False)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {"table": timing_table(res), "decoded": res.decoded, "total": res.timings["total"], "rss_mb": rss_mb}
        )
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", default="2000,8000", help="comma-separated bag sizes (frames)")
    ap.add_argument("--unique", type=int, default=60, help="distinct rendered frames")
    ap.add_argument("--quality", type=int, default=90, help="JPEG quality")
    ap.add_argument("--threads", type=int, default=2, help="decode threads")
    ap.add_argument("--model", default="netsvf", choices=["netsvf", "nethvf"])
    ap.add_argument("--child", nargs=2, metavar=("BAG", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(*args.child, args.threads, args.model)
        return 0
    with tempfile.TemporaryDirectory(prefix="bench_prep_") as tmp:
        for n in (int(x) for x in args.frames.split(",")):
            bag = Path(tmp) / f"bench_{n}.bag"
            t = time.perf_counter()
            make_bag(bag, n, args.unique, args.quality)
            print(
                f"\n== {n} frames, 640x480 JPEG q{args.quality}, bag {bag.stat().st_size / 1e6:.1f} MB "
                f"({bag.stat().st_size / n / 1e3:.1f} KB/frame), written in {time.perf_counter() - t:.1f} s; "
                f"{args.threads} threads, {args.model}"
            )
            cmd = [
                sys.executable,
                __file__,
                "--child",
                str(bag),
                str(Path(tmp) / f"out_{n}"),
                "--threads",
                str(args.threads),
                "--model",
                args.model,
            ]
            r = json.loads(
                subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
            )
            print(r["table"])
            print(f"peak RSS of the prep process: {r['rss_mb']:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
