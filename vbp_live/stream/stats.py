"""Counters, per-stage latency percentiles and a rolling fps meter for the streaming pipeline.

Thread-safe: each stage records into its own deque, counters are updated under one lock.
Latency samples are kept in bounded deques, so memory stays flat however long a run lasts.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

STAGES = ("read", "queue", "model", "render", "write", "end_to_end")
STAGE_HELP = {
    "read": "decode/receive one frame",
    "queue": "wait between capture and the model step",
    "model": "preprocess + forward + VisualBackProp of the frame's batch",
    "render": "mask onto the frame + HUD",
    "write": "encode / save (windows are shown from the calling thread)",
    "end_to_end": "capture to output",
}


class FPSMonitor:
    """Rolling frames-per-second over the last ``window`` ticks (supervision's FPSMonitor)."""

    def __init__(self, window: int = 30):
        self.times: deque[float] = deque(maxlen=window)

    def tick(self, t: float | None = None) -> None:
        """Record one frame at time ``t`` (default: now)."""
        self.times.append(time.perf_counter() if t is None else t)

    @property
    def fps(self) -> float:
        """Frames per second over the window (0 until two ticks)."""
        if len(self.times) < 2 or self.times[-1] <= self.times[0]:
            return 0.0
        return (len(self.times) - 1) / (self.times[-1] - self.times[0])


@dataclass
class StreamStats:
    """What a run did: counts, rates and per-stage latency.

    Attributes:
        frames_in: frames obtained from the source.
        frames_out: frames written to the sinks.
        dropped: stale live frames dropped so the output stays current.
        corrupt: unreadable frames the source skipped.
        reconnects: times a live source was reopened.
        batches: model steps run.
        model_s, frames_in_model: busy time of the model step and the frames it processed.
        end_reason: "end of stream", "quit", "interrupted", "error", "source lost", "max frames".
        error: the error message when a stage failed.
        signal: the signal that interrupted the run ("SIGINT", "SIGTERM"), None otherwise.
        stuck: threads that did not stop in time after a stop (normally empty).
        declared: the frame count the source declared (a file's header), None when unknown.
        missing: declared frames the source never delivered although it ended by itself (a truncated file).
    """

    frames_in: int = 0
    frames_out: int = 0
    dropped: int = 0
    corrupt: int = 0
    reconnects: int = 0
    batches: int = 0
    model_s: float = 0.0
    frames_in_model: int = 0
    t_start: float = field(default_factory=time.perf_counter)
    t_end: float | None = None
    end_reason: str = ""
    error: str | None = None
    signal: str | None = None
    stuck: list[str] = field(default_factory=list)
    declared: int | None = None
    missing: int = 0
    max_samples: int = 100_000
    _lat: dict[str, deque] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: int) -> None:
        """Add to counters, e.g. ``add(frames_in=1)``."""
        with self._lock:
            for k, v in counts.items():
                setattr(self, k, getattr(self, k) + v)

    def record(self, stage: str, seconds: float) -> None:
        """One latency sample for ``stage``."""
        q = self._lat.get(stage)
        if q is None:
            q = self._lat.setdefault(stage, deque(maxlen=self.max_samples))
        q.append(seconds)

    def percentiles(self, stage: str) -> tuple[float, float] | None:
        """(p50, p95) of a stage in milliseconds, None without samples."""
        q = self._lat.get(stage)
        if not q:
            return None
        a = np.fromiter(q, np.float64, len(q)) * 1000.0
        return float(np.percentile(a, 50)), float(np.percentile(a, 95))

    @property
    def wall_s(self) -> float:
        """Seconds from start to end (or now)."""
        return (self.t_end or time.perf_counter()) - self.t_start

    @property
    def fps(self) -> float:
        """Output frames per second over the whole run."""
        return self.frames_out / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def model_fps(self) -> float:
        """Frames per second of the model step alone (its busy time only)."""
        return self.frames_in_model / self.model_s if self.model_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        lat = {s: dict(zip(("p50_ms", "p95_ms"), p, strict=True)) for s in STAGES if (p := self.percentiles(s))}
        return {
            "frames_in": self.frames_in, "frames_out": self.frames_out, "dropped": self.dropped,
            "corrupt": self.corrupt, "reconnects": self.reconnects, "batches": self.batches,
            "wall_s": round(self.wall_s, 4), "fps": round(self.fps, 3), "model_fps": round(self.model_fps, 3),
            "end_reason": self.end_reason, "error": self.error, "signal": self.signal,
            "declared": self.declared, "missing": self.missing, "latency": lat,
        }

    def summary(self) -> str:
        """A human-readable multi-line summary."""
        lines = [
            f"frames in {self.frames_in}, out {self.frames_out}, dropped (stale) {self.dropped}, "
            f"skipped (unreadable) {self.corrupt}, reconnects {self.reconnects}",
            f"{self.fps:.1f} fps end to end over {self.wall_s:.2f} s; model step alone {self.model_fps:.1f} fps "
            f"({self.batches} batches)",
        ]
        if self.missing:
            lines.append(f"frames missing: the source declared {self.declared} frames but ended after "
                         f"{self.declared - self.missing} (read {self.frames_in}, skipped {self.corrupt}): "
                         f"{self.missing} missing (a truncated file?)")
        lines.append("latency per frame (ms)   p50      p95")
        for s in STAGES:
            p = self.percentiles(s)
            if p:
                lines.append(f"  {s:<12} {p[0]:9.1f} {p[1]:8.1f}   {STAGE_HELP[s]}")
        return "\n".join(lines)
