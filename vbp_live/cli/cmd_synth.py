"""``vbp-live synth``: render a synthetic drive with ground truth into Udacity-layout recordings."""

from __future__ import annotations

import argparse

from vbp_live.cli.options import COUNT, POSITIVE, HelpFormatter, float_in, int_in

# 2016-10-25 18:26:23 UTC: stamps of the El Camino release when --swap-2016-10-25 is given
_EL_CAMINO_START_NS = 1_477_419_983_000_000_000


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``synth`` subcommand."""
    p = sub.add_parser(
        "synth",
        help="render a synthetic drive (known steering + masks) as bags, mp4, CSV dumps",
        description=(
            "Simulates a car driving a random road (curves both ways, stops, slow traffic, shadows, "
            "other cars, stop lines, crosswalks) with a pure-pursuit driver, renders the 640x480 "
            "center camera at 20 Hz and writes it as Udacity-layout recordings whose steering and "
            "pixel masks are known exactly. Deterministic for a seed. --randomize varies per drive what "
            "real cameras and roads vary (camera height, pitch/horizon, field of view, mounting offset, hood; "
            "1-4 lanes, lane width, paint styles and wear; asphalt, patches, tar snakes; curbs, guard rails, "
            "barriers, grass; sky, overcast, dusk, sun angle, clouds); see docs/data.md."
        ),
        epilog=(
            "formats: bag = ROS1 bag(s) with /center_camera/image_color/compressed and "
            "/vehicle/steering_report (dbw_mkz_msgs/SteeringReport, ~50 Hz); mp4 = dashcam video; "
            "dump = center/<ns>.jpg + camera.csv, steering.csv, interpolated.csv; simlog = simulator "
            "driving_log.csv + IMG/; gt = ground_truth.npz (per-frame steering, speed, masks)."
        ),
        formatter_class=HelpFormatter,
    )
    p.add_argument("--out", "-o", metavar="DIR", required=True, help="output folder")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    p.add_argument("--frames", type=POSITIVE, default=600, help="camera frames at 20 Hz (default: %(default)s = 30 s)")
    p.add_argument("--randomize", type=float_in(0.0, 1.0), default=0.0, metavar="R",
                   help="0..1: how far the world is randomized per drive (0 = the fixed world, bit for bit as "
                        "before; 1 = the full ranges in docs/data.md; in between scales them) (default: %(default)s)")
    p.add_argument("--sharp-curves", type=float_in(0.0, 1.0), default=0.30, metavar="P",
                   help="0..1: share of road sections that are sharp curves (radius 35-90 m); the rest are "
                        "straights and gentle curves. A 30 s drive at the default often has none: raise it "
                        "for training data that turns (default: %(default)s)")
    p.add_argument("--format", default="bag,gt",
                   help="comma-separated: bag,mp4,dump,simlog,gt or 'all' (default: %(default)s)")
    p.add_argument("--raw", action="store_true", help="bag: raw sensor_msgs/Image on /center_camera/image_color")
    p.add_argument("--split", type=POSITIVE, default=1, help="bag: split into K files named <prefix>_<k>.bag")
    p.add_argument("--swap-2016-10-25", action="store_true",
                   help="bag: 2016-10-25-HH-MM-SS naming, stamps on that day, center frames on /left_camera/...")
    p.add_argument("--side-cameras", action="store_true", help="also render left/right cameras (3x the render time)")
    p.add_argument("--workers", type=COUNT, default=0,
                   help="render processes (default 0 = 2 when the machine has 2+ cores and the drive is long enough; "
                        "the output is identical for any number)")
    p.add_argument("--jpeg-quality", type=int_in(1, 100), default=90, help="JPEG quality (default: %(default)s)")
    p.add_argument("--h264", action="store_true",
                   help="round-trip the center frames through H.264 (libx264) at the drive's CRF before writing "
                        "(18 at --randomize 0, 18-35 at 1): dashcam compression artifacts")
    p.add_argument("--force", action="store_true", help="overwrite outputs that already exist")
    p.set_defaults(func=run)


def _formats(text: str) -> list[str]:
    from vbp_live.io.synth_writers import FORMATS

    names = list(FORMATS) if text.strip() == "all" else [f.strip() for f in text.split(",") if f.strip()]
    bad = sorted(set(names) - set(FORMATS))
    if bad or not names:
        from vbp_live.core.errors import UsageError

        raise UsageError(f"unknown --format {bad or text!r}; choose from {','.join(FORMATS)} or 'all'")
    return names


def run(args: argparse.Namespace) -> int:
    """Simulate, render once, write every chosen format, print the measured rates."""
    import os
    import time
    from pathlib import Path

    from tqdm import tqdm

    from vbp_live.core.errors import OutputError
    from vbp_live.io.synth_writers import bag_names, write_outputs
    from vbp_live.synth import DEFAULT_START_NS, DriveConfig, simulate_drive

    formats = _formats(args.format)
    out = Path(args.out)
    start = _EL_CAMINO_START_NS if args.swap_2016_10_25 else DEFAULT_START_NS
    t0 = time.perf_counter()
    drive = simulate_drive(DriveConfig(seed=args.seed, frames=args.frames, start_time_ns=start,
                                       randomize=args.randomize, sharp_curves=args.sharp_curves))
    sim_s = time.perf_counter() - t0
    if "bag" in formats and not args.force:
        existing = [n for n in bag_names(drive, args.split, args.swap_2016_10_25) if (out / n).exists()]
        if existing:
            raise OutputError(f"{out}: {', '.join(existing)} exist already (use --force to overwrite)")
    workers = args.workers or (2 if (os.cpu_count() or 1) >= 2 and args.frames >= 200 else 1)
    stats = write_outputs(
        drive, out, formats, split=args.split, raw=args.raw, swap_2016_10_25=args.swap_2016_10_25,
        side_cameras=args.side_cameras, overwrite=args.force, jpeg_quality=args.jpeg_quality, workers=workers,
        h264=args.h264, progress=lambda it: tqdm(it, total=drive.n_frames, unit="frame", desc="synth"),
    )
    slow = float((drive.speed < 5.0).mean())
    print(f"drive: seed {args.seed}, randomize {args.randomize:g}, sharp curves {args.sharp_curves:g}, "
          f"{drive.n_frames} frames, "
          f"{len(drive.steer_times_ns)} steering reports, "
          f"{100 * slow:.0f}% of frames below 5 m/s, "
          f"steering {drive.steering.min():+.3f}..{drive.steering.max():+.3f} rad")
    cpu_ms = 1000 * stats.render_cpu_s / max(stats.frames, 1)
    print(f"simulate {sim_s:.2f} s; render {1000 / stats.render_fps:.2f} ms/frame wall, {cpu_ms:.2f} ms/frame CPU "
          f"= {stats.render_fps:.1f} frames/s per process ({1000 / cpu_ms:.0f} per core by CPU time); "
          f"{stats.workers} worker(s); "
          f"end to end (render + encode + write {','.join(formats)}) {stats.total_fps:.1f} frames/s "
          f"[{os.cpu_count()} CPUs; timings are wall clock and shared with other jobs]")
    for p in stats.paths:
        print(f"wrote {p}")
    return 0
