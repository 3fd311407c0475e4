"""``vbp-live run SOURCE [--checkpoint CKPT]``: the live overlay on files, folders, bags, datasets or cameras."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

from vbp_live.cli.options import (
    CHECKPOINT_HELP,
    POSITIVE,
    HelpFormatter,
    add_device_option,
    add_look_options,
    add_trust_pickle_option,
    checkpoint_or_shipped,
    float_in,
    look_options,
    overlay_line,
    resolve_device,
)

DESCRIPTION = """\
Run a steering network and VisualBackProp on every frame of SOURCE and overlay what the network
looks at (red), the predicted steering wheel angle and, where the source knows it, the actual
angle and the error (actual - predicted, degrees). Without --checkpoint the shipped model runs.

SOURCE is one of:
  video file          dashcam.mp4 (any format OpenCV/FFmpeg decodes)
  image folder        frames/ (natural file-name order; --fps sets the rate, default 20)
  Udacity bag         drive.bag, or a folder of the .bag parts of one drive
                      (ground truth from /vehicle/steering_report, synchronized to the frames)
  donkeycar tub       a tub v2 (manifest.json) or v1 (meta.json), or a folder of tubs (ground truth
                      from user/angle: +1 = full right = -25 deg road wheel, see docs/data.md)
  frame folder        frames/ with data.txt (`0.jpg 12.5`, degrees) or a labels CSV (image,angle,...)
  comma2k19 segment   a segment folder with video.hevc (ground truth from CAN steering_angle)
  simulator log       driving_log.csv or its folder; bag dump (camera.csv + steering.csv): ground truth
  prepared dataset    a folder made by `vbp-live prep` (frames are the crop: overlay on the crop)
  camera              0, 1, ...
  stream URL          http://host:8080/video.mjpg, rtsp://host/stream
  GStreamer pipeline  "videotestsrc ! videoconvert ! appsink" (if OpenCV was built with it)

Files keep every frame in order; cameras and streams always show the newest frame and count
the stale ones they drop; a stream that disconnects is reopened with backoff.
Window keys (--show): q or Esc quits, space pauses, s saves a PNG snapshot.
"""


def horizon_arg(text: str) -> float | str:
    """``--horizon``: ``auto`` or a fraction of the frame height in (0, 1)."""
    return "auto" if text == "auto" else float_in(0.0, 1.0, low_open=True)(text)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``run`` subcommand."""
    p = sub.add_parser(
        "run", help="overlay VisualBackProp and steering on video, folders, bags, datasets or cameras",
        description=DESCRIPTION, formatter_class=HelpFormatter,
    )
    p.add_argument("source", metavar="SOURCE", nargs="+",
                   help="video file, image folder, .bag, dataset folder, camera index, URL or pipeline; "
                        "several, or a folder of videos, run one after another (see --out-dir)")
    p.add_argument("--checkpoint", "-c", help=CHECKPOINT_HELP)
    add_trust_pickle_option(p)
    out = p.add_argument_group("outputs (default: --out <source name>_overlay.mp4)")
    out.add_argument("--out", "-o", metavar="FILE",
                     help="write an overlay video at the source's fps (.mp4: H.264 that browsers play; .avi: MJPG)")
    out.add_argument("--codec", choices=["auto", "h264", "mp4v", "mjpg"], default="auto",
                     help="video codec (default: %(default)s = H.264 for .mp4/.mkv/.mov through PyAV, MJPG for "
                          ".avi; mp4v and mjpg are written by OpenCV)")
    out.add_argument("--show", action="store_true", help="show a window (q quits, space pauses, s saves a snapshot)")
    out.add_argument("--frames-dir", help="write every overlay frame as a PNG into this folder")
    out.add_argument("--no-output", action="store_true", help="write nothing (benchmarks)")
    out.add_argument("--stats-json", help="also write the run statistics (counts, fps, latency p50/p95, the "
                                          "overlay's flicker, the source's warnings and skipped parts) as JSON")
    out.add_argument("--csv", help="write per-frame index,time_s,pred_deg,true_deg,error_deg to this CSV")
    out.add_argument("--snapshot-dir", default=".", help="where the s key saves snapshots (default: %(default)s)")
    add_serve_options(p)
    add_many_options(p)
    src = p.add_argument_group("source")
    src.add_argument("--fps", type=float_in(0.0, low_open=True),
                     help="frame rate for image folders, or to override a file's")
    src.add_argument("--camera-topic", action="append", default=[], metavar="TOPIC",
                     help="bags: the camera topic to play (repeatable: the first one with messages), for bags "
                          "recorded by another car or robot (default: Udacity's /center_camera/image_color"
                          "[/compressed])")
    src.add_argument("--live", dest="live", action="store_true", default=None,
                     help="treat a file like a camera: drop stale frames")
    src.add_argument("--realtime", action="store_true",
                     help="pace a file at its frame rate (as a camera would deliver it)")
    src.add_argument("--split", choices=["train", "test"], help="prepared dataset: only this split")
    src.add_argument("--horizon", type=horizon_arg, metavar="FRAC|auto",
                     help="where the horizon is in the video, as a fraction of the frame height (0 = top), or "
                          "'auto' to estimate it from the lane lines of a recorded source: the model's crop band "
                          "moves with it, keeping its distance from the horizon, for cameras mounted higher or "
                          "pitched otherwise than the one the model was trained for (the shipped models' bands "
                          "were chosen for a horizon at 0.47)")
    src.add_argument("--max-frames", type=POSITIVE, help="stop after this many frames")
    src.add_argument("--reconnect-timeout", type=float_in(0.0), default=30.0,
                     help="give up on a lost stream after this many seconds (default: %(default)s)")
    run = p.add_argument_group("model step")
    add_device_option(run)
    run.add_argument("--method", default="auto", choices=["auto", "vbp", "vbp_fused"],
                     help="attribution (default: %(default)s = vbp_fused on CUDA, else vbp)")
    run.add_argument("--signed-maps", action="store_true",
                     help="average ELU/LeakyReLU/... maps as they are; by default their positive part is "
                          "averaged, since their negative values cancel the positive ones into a nearly uniform "
                          "mask (ReLU nets, like the paper's and the shipped ones, are the same either way)")
    run.add_argument("--batch", type=POSITIVE,
                     help="most frames per model step for files (default: 2 on CPU, 16 on CUDA)")
    run.add_argument("--queue", type=POSITIVE, default=32,
                     help="queue capacity between stages for files (default: %(default)s)")
    run.add_argument("--threads", type=POSITIVE,
                     help="torch CPU threads for the model step (default: all cores but one, "
                          "which decoding and encoding need)")
    look = p.add_argument_group("look")
    look.add_argument("--no-glyph", action="store_true", help="no steering-wheel glyph")
    look.add_argument("--no-hud", action="store_true", help="no text and no glyph: the overlay alone")
    look.add_argument("--alpha", type=float_in(0.0, 1.0), default=0.7,
                      help="overlay strength at mask 1 (default: %(default)s)")
    add_look_options(look)
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(func=run_cmd)


def add_serve_options(p: argparse.ArgumentParser) -> None:
    """``--serve``: the live view in a browser (docs/overlay.md, "Live view in a browser")."""
    g = p.add_argument_group("live view in a browser")
    g.add_argument("--serve", metavar="[HOST:]PORT",
                   help="serve a page with the live overlay, steering numbers, timeline and statistics "
                        "(host 127.0.0.1 unless given; port 0 picks a free one)")
    g.add_argument("--serve-token", metavar="TOKEN",
                   help="require this token on every request (?token=...); binding beyond 127.0.0.1 without "
                        "one prints a random token")
    g.add_argument("--serve-linger", type=float_in(0.0), default=0.0, metavar="SECONDS",
                   help="keep the page up this long after the run ends (Ctrl-C stops; default: %(default)s)")


def add_many_options(p: argparse.ArgumentParser) -> None:
    """Many inputs (docs/overlay.md, "Many files")."""
    g = p.add_argument_group("many inputs (several SOURCEs, a folder of videos, or --out-dir)")
    g.add_argument("--out-dir", metavar="DIR",
                   help="write <name>_overlay.mp4 and <name>_overlay.csv per input here (default: .); under "
                        "torchrun each process takes its share of the inputs")
    g.add_argument("--summary-json", metavar="FILE",
                   help="also write the summary table (every input's frames, fps, error statistics) as JSON")


def open_server(args: argparse.Namespace):
    """Start the ``--serve`` server (None without ``--serve``) and print where to look."""
    from vbp_live.stream.serve import LiveServer, parse_bind, serve_token

    if not args.serve:
        return None
    bind = parse_bind(args.serve)
    token = serve_token(bind, args.serve_token)
    server = LiveServer(bind, token, name=args.source).start()
    if token and not args.serve_token:
        print(f"--serve {bind.host}: not loopback, so a token is required; generated one: {token}")
    print(f"live view: {server.url}", flush=True)
    return server


def linger(server, seconds: float, stats) -> None:
    """Show the end and the run's statistics on the page; keep it up ``seconds`` (Ctrl-C cuts it short)."""
    if server is None:
        return
    server.state.end(f"ended: {stats.end_reason}", stats.to_dict())
    if seconds > 0:
        print(f"live view stays up for {seconds:g} s (Ctrl-C stops)", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            time.sleep(seconds)


def default_out(source: str) -> str:
    """``<source name>_overlay.mp4`` in the current folder (``camera0_overlay.mp4`` for cameras)."""
    s = source.strip()
    stem = f"camera{s}" if s.isdigit() else (Path(s.rstrip("/")).stem or "stream") if "://" not in s else "stream"
    return f"{stem}_overlay.mp4"


def build_sinks(args: argparse.Namespace, info, server=None) -> list:
    """The sinks the options ask for (a video file by default; live recordings keep real time)."""
    from vbp_live.io.sinks import FramesDirSink, VideoFileSink, WindowSink

    sinks: list = []
    if args.show:
        sinks.append(WindowSink(f"vbp-live: {args.source}", args.snapshot_dir))
    if args.frames_dir:
        sinks.append(FramesDirSink(args.frames_dir))
    if server is not None:
        sinks.append(server.sink())
    if args.out or not (args.no_output or args.show or args.serve or args.frames_dir):
        sinks.append(VideoFileSink(args.out or default_out(args.source), info.fps, args.codec, hold_time=info.live))
    return sinks


def run_cmd(args: argparse.Namespace) -> int:
    """Open the source, model and sinks, run the pipeline, report (several inputs: :func:`run_many_cmd`)."""
    import torch

    from vbp_live.core.errors import DeviceError, InputError, UsageError
    from vbp_live.stream.batch import Place, expand_inputs, rank_device
    from vbp_live.stream.serve import ServedLog
    from vbp_live.stream.session import RunOptions, run_overlay

    inputs = expand_inputs(args.source)
    many = bool(args.out_dir or args.summary_json or inputs != args.source[:1])
    place = Place.from_env() if many else Place()
    opts = RunOptions(
        checkpoint=checkpoint_or_shipped(args.checkpoint), trust_pickle=args.trust_pickle,
        device=resolve_device(rank_device(args.device, place)), method=args.method, batch_size=args.batch,
        queue_size=args.queue, threads=args.threads, fps=args.fps, live=args.live, realtime=args.realtime,
        split=args.split, max_frames=args.max_frames, reconnect_s=args.reconnect_timeout,
        camera_topics=tuple(args.camera_topic), positive_maps=not args.signed_maps,
        glyph=not args.no_glyph, hud=not args.no_hud, alpha=args.alpha, csv=args.csv,
        horizon=None if args.horizon == "auto" else args.horizon, auto_horizon=args.horizon == "auto",
        **look_options(args),
    )
    if many:
        if opts.auto_horizon:
            raise UsageError("--horizon auto reads one SOURCE's lane lines; for several, give the horizon as a number")
        return run_many_cmd(args, inputs, place, opts)
    args.source = args.source[0]
    server = open_server(args)
    predictions = ServedLog(args.csv, server) if server is not None else None
    try:
        try:
            result = run_overlay(args.source, opts, lambda info: build_sinks(args, info, server),
                                 progress=not args.quiet, predictions=predictions)
        except torch.OutOfMemoryError as e:
            raise DeviceError(f"--device {opts.device}: out of memory (try a smaller --batch)") from e
        except OSError as e:
            if e.filename is not None:
                raise  # the CLI names the file
            raise InputError(f"{args.source}: {e}") from e
        rc = report(result, args)
        linger(server, args.serve_linger, result.stats)
        return rc
    finally:
        if server is not None:
            server.close()


SINGLE_ONLY = {"out": "--out", "csv": "--csv", "stats_json": "--stats-json", "frames_dir": "--frames-dir",
               "show": "--show", "serve": "--serve"}


def run_many_cmd(args: argparse.Namespace, inputs: list[str], place, opts) -> int:
    """Run every input of this process's share, print the summary table, write --summary-json."""
    from vbp_live.core.errors import UsageError
    from vbp_live.stream import batch

    given = [flag for key, flag in SINGLE_ONLY.items() if getattr(args, key)]
    if given:
        raise UsageError(f"{', '.join(given)}: one input only; with several inputs use --out-dir "
                         "(a video and a CSV per input) and --summary-json")
    joined = batch.join_group(place)
    try:
        results = run_share(args, inputs, place, opts)
        grouped = batch.is_grouped()
        everything = batch.gather_results(results, place)
    finally:
        if joined:
            batch.leave_group()
    if everything is None:  # another process of the group: rank 0 prints the whole table
        return 1 if any(not r.ok for r in results) else 0
    return report_many(everything, place.world == 1 or grouped, place, args)


def run_share(args: argparse.Namespace, inputs: list[str], place, opts) -> list:
    """This process's inputs, one after another (a Ctrl-C stops after the current one)."""
    from vbp_live.io.sinks import VideoFileSink
    from vbp_live.stream import batch
    from vbp_live.stream.session import load_engine

    out_dir = None if args.no_output else Path(args.out_dir or ".")
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    engine, desc = load_engine(opts)
    mine = place.share(list(enumerate(zip(inputs, batch.output_names(inputs), strict=True))))
    who = f"process {place.rank} of {place.world}: " if place.world > 1 else ""
    print(f"{who}{desc}; {len(mine)} of {len(inputs)} inputs", flush=True)
    results = []
    for k, (pos, (spec, name)) in enumerate(mine, 1):
        print(f"{who}[{k}/{len(mine)}] {spec}", flush=True)
        res = batch.run_input(spec, name, engine, opts, out_dir,
                              lambda info, path: [VideoFileSink(path, info.fps, args.codec, hold_time=info.live)],
                              progress=not args.quiet)
        res.position, res.rank = pos, place.rank
        results.append(res)
        print(f"{who}  " + (f"ok: {res.frames} frames" if res.ok else f"FAILED: {res.error}"), flush=True)
        if res.end_reason == "interrupted":
            res.ok, res.error = False, "interrupted"
            break
    return results


def report_many(results: list, complete: bool, place, args: argparse.Namespace) -> int:
    """Print the summary table (``complete``: every input, else this process's share), write it, exit code."""
    from vbp_live.io.atomic import write_text_atomic
    from vbp_live.stream.batch import summary_table

    print(summary_table(results))
    if args.summary_json:
        path = Path(args.summary_json)
        if not complete:
            path = path.with_name(f"{path.stem}.rank{place.rank}{path.suffix}")
        data = {"world": place.world, "complete": complete, "inputs": [vars(r) for r in results],
                "failed": sum(not r.ok for r in results)}
        write_text_atomic(path, json.dumps(data, indent=2))
        print(f"summary: {path}")
    if any(r.error == "interrupted" for r in results):
        return 130
    return 1 if any(not r.ok for r in results) else 0


def report(result, args: argparse.Namespace) -> int:
    """Print the summary and where the outputs are; write --stats-json; choose the exit code."""
    from vbp_live.io.atomic import write_text_atomic

    st = result.stats
    for line in result.notes:
        print(line)
    print(st.summary())
    if result.overlay:
        print(overlay_line(result.overlay))
    for path in result.outputs:
        print(f"wrote {path}")
    if args.stats_json:
        stats = {**st.to_dict(), "overlay": result.overlay, "source": result.source,
                 "outputs": [str(p) for p in result.outputs]}
        write_text_atomic(args.stats_json, json.dumps(stats, indent=2))
        print(f"stats: {args.stats_json}")
    print(f"ended: {st.end_reason}" + (f" ({st.signal})" if st.signal else "") + (f": {st.error}" if st.error else ""),
          file=sys.stderr if st.error else sys.stdout)
    if st.end_reason == "interrupted":
        from vbp_live.core.signals import exit_code

        return exit_code(st.signal)  # 130 for Ctrl-C, 143 for SIGTERM
    return 1 if st.error else 0
