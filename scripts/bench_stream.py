#!/usr/bin/env python
"""Benchmark the live overlay: model step alone, a 960x540 dashcam file end to end, a 30 fps live stream.

One run, same model, threads and machine:

1. **model step alone**: ``OverlayEngine.infer`` (crop/grayscale/resize + forward + VisualBackProp +
   mask to host) on decoded frames, at batch 1 and at ``--batch`` (and 8); forward alone for context.
2. **file**: a 960x540 dashcam video (synthetic world, encoded with fourcc ``avc1``/H.264 when this
   OpenCV can, else ``mp4v``, and the script says which) -> overlay mp4, through the three-thread
   pipeline. Prints fps, per-stage latency p50/p95 and the ratio to the model step alone, so the
   pipeline's own overhead is visible.
3. **live**: the same frames as MJPEG over loopback HTTP at 30 fps (a stand-in camera) -> overlay
   mp4. Prints latency p50/p95 from capture to output, and from the moment the server sent the
   frame ("glass to glass", read from an index code drawn into each frame), and the stale frames
   dropped.

    python scripts/bench_stream.py                       # netsvf; threads and batch as vbp-live run
    python scripts/bench_stream.py --threads 2 --batch 16 --frames 300 --live-seconds 10
    python scripts/bench_stream.py --checkpoint vbp_live/assets/netsvf_synth.pt --json out/bench.json

Targets (issue 6, 2 CPU cores): file >= 30 frames/s end to end; live p95 latency <= 100 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

W, H = 960, 540
CODE_BITS, CODE_X, CODE_W, CODE_ROWS = 12, 400, 40, (2, 22)


def render_dashcam(unique: int, seed: int) -> list[np.ndarray]:
    """``unique`` synthetic-world frames at 960x540 (same field of view as the 640x480 camera)."""
    from vbp_live.synth import Camera, DriveConfig, render_frames, simulate_drive

    drive = simulate_drive(DriveConfig(seed=seed, frames=unique, start_stopped=False))
    cam = Camera(width=W, height=H, focal_px=560.0 * W / 640)
    return [f for f, _ in render_frames(drive, camera=cam)]


def write_input(path: Path, frames: list[np.ndarray], n: int, fps: float) -> str:
    """Write n frames (cycling) with avc1 if this OpenCV can encode H.264, else mp4v; returns the codec."""
    for fourcc in ("avc1", "mp4v"):
        w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (W, H))
        if w.isOpened():
            for k in range(n):
                w.write(frames[k % len(frames)])
            w.release()
            return fourcc
        print(
            f"  fourcc {fourcc!r}: this OpenCV build cannot encode it"
            + (" (no H.264 encoder in the pip wheel)" if fourcc == "avc1" else "")
        )
    raise SystemExit("no usable video encoder")


def make_engine(args: argparse.Namespace):
    """The engine under test: a checkpoint, or an untrained NetSVF with the Udacity crop preset."""
    from vbp_live.core.preprocess import CROP_PRESETS
    from vbp_live.models import create_model
    from vbp_live.stream import OverlayEngine

    if args.checkpoint:
        return OverlayEngine.from_checkpoint(
            args.checkpoint, device=args.device, channels_last=not args.no_channels_last
        )
    torch.manual_seed(0)
    model = create_model(args.model).eval()
    return OverlayEngine(model, CROP_PRESETS[args.model], args.device, channels_last=not args.no_channels_last)


def time_it(fn, reps: int) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) per call, after one warm-up call."""
    fn()
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t0) / reps, (time.process_time() - c0) / reps


def bench_model(engine, frames: list[np.ndarray], batch: int, reps: int) -> dict[str, float]:
    """Frames/s (wall) and CPU ms per frame of the model step alone at batch 1 and ``batch``, and of the forward."""
    from vbp_live.models import frames_to_input

    out = {}
    for b in sorted({1, batch, 8}):
        imgs = [frames[k % len(frames)] for k in range(b)]
        wall, cpu = time_it(lambda imgs=imgs: engine.infer(imgs), reps)
        out[f"model_step_b{b}_fps"], out[f"model_step_b{b}_cpu_ms"] = b / wall, 1000 * cpu / b
    x = frames_to_input(np.stack([engine.network_input(f) for f in frames[:batch]]), engine.device)
    if engine.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        wall, cpu = time_it(lambda: engine.model(x), reps)
    out[f"forward_b{batch}_fps"], out[f"forward_b{batch}_cpu_ms"] = batch / wall, 1000 * cpu / batch
    return out


def run_file(engine, src: Path, out: Path, batch: int):
    """The dashcam file through the pipeline into an overlay mp4."""
    from vbp_live.io.sinks import VideoFileSink
    from vbp_live.io.video import VideoFileSource
    from vbp_live.stream import OverlayRenderer, Pipeline, PipelineConfig

    source = VideoFileSource(src)
    sink = VideoFileSink(out, source.info.fps)
    return Pipeline(source, engine, OverlayRenderer(engine.crop), [sink], PipelineConfig(batch_size=batch)).run()


def code(frame: np.ndarray, i: int) -> np.ndarray:
    """Draw index ``i`` as black/white blocks in the top strip (between the HUD panel and glyph)."""
    f = frame.copy()
    for b in range(CODE_BITS):
        x = CODE_X + b * CODE_W
        f[CODE_ROWS[0] : CODE_ROWS[1], x : x + CODE_W] = 255 if (i >> b) & 1 else 0
    return f


def decode(frame: np.ndarray) -> int:
    """Read back the index drawn by :func:`code`."""
    band = frame[CODE_ROWS[0] + 4 : CODE_ROWS[1] - 4]
    return sum(
        int(band[:, CODE_X + b * CODE_W + 8 : CODE_X + (b + 1) * CODE_W - 8].mean() > 128) << b
        for b in range(CODE_BITS)
    )


def run_live(engine, frames: list[np.ndarray], seconds: float, fps: float, out: Path):
    """A loopback MJPEG camera at ``fps`` through the live pipeline; returns stats and glass-to-glass ms."""
    from vbp_live.io.live import LiveSource, ReconnectPolicy
    from vbp_live.io.mjpeg import MjpegServer
    from vbp_live.io.sinks import FrameSink, VideoFileSink
    from vbp_live.stream import OverlayRenderer, Pipeline, PipelineConfig

    n = int(seconds * fps)
    parts = [
        cv2.imencode(".jpg", code(frames[k % len(frames)], k), [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes()
        for k in range(n)
    ]
    glass: list[float] = []

    class Probe(FrameSink):
        def write(self, frame: np.ndarray, index: int, time_s: float | None = None) -> None:
            k = decode(frame)
            if k < len(server.sent_at):
                glass.append(time.perf_counter() - server.sent_at[k])

    with MjpegServer([lambda: parts], fps=fps) as server:
        source = LiveSource(server.url, policy=ReconnectPolicy(first_delay_s=0.1, give_up_s=0.5))
        sinks = [VideoFileSink(out, fps, hold_time=True), Probe()]
        stats = Pipeline(source, engine, OverlayRenderer(engine.crop), sinks, PipelineConfig()).run()
    return stats, np.array(glass) * 1000.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="netsvf", help="registered model when no --checkpoint (default: %(default)s)")
    ap.add_argument("--checkpoint", help="benchmark this checkpoint instead of an untrained net")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, help="torch threads (default: as vbp-live run: all cores but one)")
    ap.add_argument("--cv-threads", type=int, default=1, help="OpenCV threads (default: %(default)s)")
    ap.add_argument("--batch", type=int, help="most frames per model step (default: as vbp-live run, 2 on CPU)")
    ap.add_argument("--frames", type=int, default=240, help="frames in the dashcam file (default: %(default)s)")
    ap.add_argument("--unique", type=int, default=40, help="distinct rendered frames, cycled (default: %(default)s)")
    ap.add_argument(
        "--fps", type=float, default=30.0, help="frame rate of the file and the live stream (default: %(default)s)"
    )
    ap.add_argument("--live-seconds", type=float, default=8.0, help="length of the live stream (default: %(default)s)")
    ap.add_argument("--reps", type=int, default=3, help="timed repetitions for the model step (default: %(default)s)")
    ap.add_argument("--no-channels-last", action="store_true", help="use the default memory format")
    ap.add_argument("--json", help="also write the figures as JSON")
    args = ap.parse_args()
    from vbp_live.stream.engine import configure_threads, default_batch

    args.threads = configure_threads(torch.device(args.device), args.threads)
    args.batch = args.batch or default_batch(torch.device(args.device))
    cv2.setNumThreads(args.cv_threads)
    report(args, measure(args))


def measure(args: argparse.Namespace) -> dict:
    """Run the three measurements; returns every figure."""
    res: dict = {
        "machine": f"{os.cpu_count()} CPUs, load avg {os.getloadavg()[0]:.1f} at start",
        "torch_threads": args.threads,
        "cv_threads": args.cv_threads,
        "batch": args.batch,
        "channels_last": not args.no_channels_last,
    }
    print(f"rendering {args.unique} synthetic 960x540 frames ...")
    frames = render_dashcam(args.unique, seed=7)
    engine = make_engine(args)
    res["model"] = f"{engine.model.model_name} ({engine.method_name} on {engine.device})"
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "dashcam.mp4"
        res["input_codec"] = write_input(src, frames, args.frames, args.fps)
        print(f"input: {args.frames} frames 960x540 at {args.fps:g} fps, codec {res['input_codec']}")
        print("model step alone ...")
        res.update(bench_model(engine, frames, args.batch, args.reps))
        print("file -> overlay mp4 ...")
        c0 = time.process_time()
        st = run_file(engine, src, Path(tmp) / "overlay.mp4", args.batch)
        res["file"] = st.to_dict()
        res["file"]["cpu_ms_per_frame"] = 1000 * (time.process_time() - c0) / max(1, st.frames_out)
        print(f"live MJPEG stream at {args.fps:g} fps for {args.live_seconds:g} s ...")
        st_live, glass = run_live(engine, frames, args.live_seconds, args.fps, Path(tmp) / "live.mp4")
        res["live"] = st_live.to_dict()
        if glass.size:
            res["live"]["glass_to_glass_ms"] = {
                "p50": float(np.percentile(glass, 50)),
                "p95": float(np.percentile(glass, 95)),
            }
    return res


def report(args: argparse.Namespace, r: dict) -> None:
    """Print the figures and ratios; write --json."""
    b = args.batch
    model_fps = r[f"model_step_b{b}_fps"]
    f, lv = r["file"], r["live"]
    lat = lambda d, s: d["latency"].get(s, {"p50_ms": float("nan"), "p95_ms": float("nan")})  # noqa: E731
    print(
        f"\n== bench_stream: {r['model']}, {r['machine']}, torch threads {r['torch_threads']}, "
        f"cv threads {r['cv_threads']}, channels_last {r['channels_last']}"
    )
    cores = os.cpu_count() or 1
    steps = sorted(
        int(k[len("model_step_b") : -len("_fps")]) for k in r if k.startswith("model_step_b") and k.endswith("_fps")
    )
    print(
        "model step alone    "
        + "   ".join(
            f"batch {n}: {r[f'model_step_b{n}_fps']:5.1f} frames/s ({r[f'model_step_b{n}_cpu_ms']:.1f} ms CPU/frame)"
            for n in steps
        )
    )
    print(
        f"    forward alone, batch {b}: {r[f'forward_b{b}_fps']:.1f} frames/s "
        f"({r[f'forward_b{b}_cpu_ms']:.1f} ms CPU/frame); model step at batch {b} -> at most "
        f"{1000 * min(cores, r['torch_threads']) / r[f'model_step_b{b}_cpu_ms']:.1f} "
        f"frames/s on {min(cores, r['torch_threads'])} otherwise idle core(s)"
    )
    print(
        f"file ({r['input_codec']}) -> mp4: {f['fps']:6.1f} frames/s end to end = "
        f"{f['fps'] / model_fps:.2f} x the model step alone"
        f"  [{f['frames_out']} frames, {f['batches']} batches; target >= 30]"
    )
    print(
        f"    CPU time per frame, all stages: {f['cpu_ms_per_frame']:.1f} ms -> at most "
        f"{1000 * cores / f['cpu_ms_per_frame']:.1f} frames/s on {cores} otherwise idle cores"
    )
    for s in ("read", "queue", "model", "render", "write", "end_to_end"):
        print(f"    {s:<11} p50 {lat(f, s)['p50_ms']:8.1f} ms   p95 {lat(f, s)['p95_ms']:8.1f} ms")
    e2e = lat(lv, "end_to_end")
    print(
        f"live MJPEG {args.fps:g} fps: {lv['frames_out']} shown, {lv['dropped']} stale dropped of {lv['frames_in']}; "
        f"capture->output p50 {e2e['p50_ms']:.1f} ms p95 {e2e['p95_ms']:.1f} ms [target p95 <= 100]"
    )
    if "glass_to_glass_ms" in lv:
        g = lv["glass_to_glass_ms"]
        print(f"    server send -> output (glass to glass): p50 {g['p50']:.1f} ms  p95 {g['p95']:.1f} ms")
    print(f"load average now: {os.getloadavg()[0]:.1f} (other work on these cores slows every wall-clock figure)")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(r, indent=2))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
