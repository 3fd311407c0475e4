"""Interrupt trials: SIGINT/SIGTERM sent to a real ``vbp-live run`` at a random moment, and what it left.

Shared by ``tests/test_interrupt.py`` and ``scripts/interrupt_check.py``. One trial starts
``python -m vbp_live.cli.main run SOURCE --out out.mp4 --csv out.csv`` on a tiny input (a video
file, an image folder, a Udacity bag or an MJPEG stream), waits until the run has made its output
(the hidden temporary video appears), sleeps a seeded random delay, sends the signal and checks:

- the exit code is 128 + the signal (130 for SIGINT, 143 for SIGTERM);
- the video opens and decodes (OpenCV), and holds the frames processed: frame k shows the source
  frame of CSV row k (files), or the rows' times at the stream's rate (live: repeats keep time);
- the CSV is complete to the last frame written (one row per frame; for live streams, the frame
  count the rows' times imply);
- nothing else is left in the output folder (no hidden temporary files).
"""

from __future__ import annotations

import csv
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from stream_util import MjpegServer, coded_frame, decode_index, jpeg, tiny_checkpoint, write_video

from vbp_live.io.udacity_bag import SteeringSamples, write_udacity_bag

KINDS = ("video", "folder", "bag", "stream")
FPS = 15.0
FRAMES = 90  # 6 s of input at 15 fps: a signal always lands before the end
STARTUP_S = 60.0  # a hang guard for the start on a busy machine, not a speed check
SHUTDOWN_S = 30.0


@dataclass
class Trial:
    """One signal sent to one run, and what the run left (``problems`` empty: it passed)."""

    number: int
    kind: str
    sig: str
    delay_s: float
    exit_code: int | None = None
    frames: int | None = None  # in the video; None: no video file
    rows: int | None = None  # in the CSV; None: no CSV
    leftovers: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()
    output: str = ""

    @property
    def ok(self) -> bool:
        """The trial met every requirement."""
        return not self.problems


def make_inputs(folder: Path) -> dict[str, Path]:
    """The checkpoint and the file inputs (video, image folder, bag), index-coded frames at 15 fps."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"checkpoint": tiny_checkpoint(folder / "tiny.pt")}
    paths["video"] = write_video(folder / "in.mp4", FRAMES, fps=FPS)
    images = folder / "frames"
    images.mkdir(exist_ok=True)
    for i in range(FRAMES):
        cv2.imwrite(str(images / f"{i:04d}.jpg"), coded_frame(i))
    paths["folder"] = images
    stamps = [int(1e9 + i * 1e9 / FPS) for i in range(FRAMES)]
    t = np.arange(int(1e9) - 50_000_000, stamps[-1] + 100_000_000, 20_000_000, dtype=np.int64)  # 50 Hz reports
    steering = SteeringSamples(t, np.sin(t / 1e9).astype(np.float64), np.full(len(t), 10.0))
    write_udacity_bag(folder / "drive.bag", ((s, jpeg(coded_frame(i))) for i, s in enumerate(stamps)), steering)
    paths["bag"] = folder / "drive.bag"
    return paths


def plan(n: int, seed: int, kinds: tuple[str, ...] = KINDS) -> list[tuple[str, str, float]]:
    """``n`` seeded (kind, signal, delay) triples: kinds in turn, SIGINT and SIGTERM alternating."""
    rng = random.Random(seed)
    return [(kinds[i % len(kinds)], ("SIGINT", "SIGTERM")[(i // len(kinds)) % 2], round(rng.uniform(0.0, 1.0), 3))
            for i in range(n)]


def run_trial(number: int, kind: str, sig: str, delay_s: float, inputs: dict[str, Path], out_dir: Path) -> Trial:
    """Start ``vbp-live run`` on ``kind``, signal it ``delay_s`` after its output appears, check the result."""
    out_dir.mkdir(parents=True, exist_ok=True)
    trial = Trial(number, kind, sig, delay_s)
    if kind == "stream":
        parts = [jpeg(coded_frame(i)) for i in range(FRAMES)]
        with MjpegServer([lambda: parts], fps=FPS) as server:
            _signal_run(trial, server.url, inputs, out_dir)
    else:
        _signal_run(trial, str(inputs[kind]), inputs, out_dir)
    _check(trial, out_dir, live=kind == "stream")
    return trial


def _command(source: str, inputs: dict[str, Path], out_dir: Path) -> list[str]:
    cmd = [sys.executable, "-m", "vbp_live.cli.main", "run", source, "-c", str(inputs["checkpoint"]),
           "--out", str(out_dir / "out.mp4"), "--csv", str(out_dir / "out.csv"), "--quiet", "--threads", "1",
           "--device", "cpu", "--batch", "2", "--queue", "4", "--no-hud"]  # the HUD would cover the frame codes
    if not source.startswith("http"):
        cmd += ["--realtime", "--fps", str(FPS)]  # paced like a camera, so the signal lands mid-run
    return cmd


def _signal_run(trial: Trial, source: str, inputs: dict[str, Path], out_dir: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.Popen(_command(source, inputs, out_dir), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env)
    try:
        deadline = time.monotonic() + STARTUP_S
        while not list(out_dir.glob(".out.partial-*")) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)  # the run has opened its output: the pipeline is (about to be) running
        time.sleep(trial.delay_s)
        if proc.poll() is None:
            proc.send_signal(getattr(signal, trial.sig))
        trial.output, _ = proc.communicate(timeout=SHUTDOWN_S)
        trial.exit_code = proc.returncode
    except subprocess.TimeoutExpired:
        proc.kill()
        trial.output = proc.communicate()[0]
        trial.problems += ("hang: no exit within the deadline",)


def _check(trial: Trial, out_dir: Path, live: bool) -> None:
    problems = list(trial.problems)
    want = 128 + getattr(signal, trial.sig)
    if trial.exit_code != want:
        problems.append(f"exit code {trial.exit_code}, expected {want}")
    video, table = out_dir / "out.mp4", out_dir / "out.csv"
    rows = _read_rows(table) if table.is_file() else None
    trial.rows = None if rows is None else len(rows)
    frames, fps = _read_video(video) if video.exists() else (None, 0.0)
    trial.frames = None if frames is None else len(frames)
    trial.leftovers = tuple(sorted(p.name for p in out_dir.iterdir() if p.name not in ("out.mp4", "out.csv")))
    if trial.leftovers:
        problems.append(f"left in the folder: {', '.join(trial.leftovers)}")
    if frames is None:
        if rows:
            problems.append(f"no video, but the CSV has {len(rows)} rows")
    elif not frames:
        problems.append("the video holds no frame that decodes")
    elif rows is None:
        problems.append(f"a video of {len(frames)} frames but no CSV")
    else:
        problems += _match(frames, fps, rows, live)
    trial.problems = tuple(problems)


def _match(frames: list[np.ndarray], fps: float, rows: list[tuple[int, float]], live: bool) -> list[str]:
    """The video holds exactly the frames the CSV lists (live: repeated to keep time, as the sink does)."""
    if live:
        implied = 0
        for _, t in rows:
            implied = max(implied + 1, round((t - rows[0][1]) * fps) + 1)
        return [] if implied == len(frames) else [f"{len(frames)} video frames, the CSV's {len(rows)} rows imply "
                                                 f"{implied}"]
    if len(frames) != len(rows):
        return [f"{len(frames)} video frames but {len(rows)} CSV rows"]
    wrong = [k for k, (f, (i, _)) in enumerate(zip(frames, rows, strict=True)) if decode_index(f) != i % 256]
    return [f"video frames {wrong[:5]} do not show the CSV's frames"] if wrong else []


def _read_rows(path: Path) -> list[tuple[int, float]]:
    with open(path, newline="", encoding="utf-8") as f:
        return [(int(r["index"]), float(r["time_s"])) for r in csv.DictReader(f)]


def _read_video(path: Path) -> tuple[list[np.ndarray], float]:
    cap = cv2.VideoCapture(str(path))
    frames: list[np.ndarray] = []
    fps = cap.get(cv2.CAP_PROP_FPS) if cap.isOpened() else 0.0
    while cap.isOpened():
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames, fps


def table(trials: list[Trial]) -> str:
    """A Markdown table of the trials and a totals line."""
    lines = ["| # | source | signal | delay s | exit | video frames | CSV rows | leftovers | result |",
             "|---|---|---|---|---|---|---|---|---|"]
    for t in trials:
        cells = [t.number, t.kind, t.sig, f"{t.delay_s:.2f}", t.exit_code, "-" if t.frames is None else t.frames,
                 "-" if t.rows is None else t.rows, len(t.leftovers), "ok" if t.ok else "; ".join(t.problems)]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    passed = sum(t.ok for t in trials)
    lines.append(f"\n{passed} of {len(trials)} interrupted runs met every requirement")
    return "\n".join(lines)
