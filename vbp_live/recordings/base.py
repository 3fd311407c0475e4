"""What every recording reader provides: a cheap first pass (times and labels) and payloads.

A recording is read twice. :meth:`Recording.scan` reads only timestamps and vehicle
measurements (no image decoding), so synchronization, filters and splits can be decided
before any pixel is touched. :meth:`Recording.payloads` then streams the encoded images of the
wanted frames, identified by their *ordinal*: the frame's position in the scan.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vbp_live.recordings.images import Payload

Progress = Callable[[int], None]  # called with an increment (bytes or rows)


@dataclass
class SkipLog:
    """Damaged parts of a recording that a reader skipped, counted by reason.

    Attributes:
        counts: reason -> how many were skipped (messages, records or chunks, as the reason says).
        first: the first ``limit`` skips in detail: ``reason`` plus where (file, topic, byte
            offset, ...) and ``error`` (why), as plain values for a manifest.
        limit: how many skips are kept in ``first``.
    """

    counts: dict[str, int] = field(default_factory=dict)
    first: list[dict[str, Any]] = field(default_factory=list)
    limit: int = 20

    def add(self, reason: str, n: int = 1, **where: Any) -> None:
        """Count ``n`` skips for ``reason``; ``where`` (file, topic, offset, error, ...) is kept for the first few."""
        self.counts[reason] = self.counts.get(reason, 0) + n
        if len(self.first) < self.limit:
            self.first.append({"reason": reason, **({"count": n} if n != 1 else {}), **where})

    def merge(self, other: SkipLog, **where: Any) -> None:
        """Add another log's counts and details (each detail tagged with ``where``, e.g. the file)."""
        for reason, n in other.counts.items():
            self.counts[reason] = self.counts.get(reason, 0) + n
        room = max(0, self.limit - len(self.first))
        self.first.extend({**d, **where} for d in other.first[:room])

    @property
    def total(self) -> int:
        """Skips over all reasons."""
        return sum(self.counts.values())

    def to_dict(self) -> dict[str, Any]:
        """``{"counts": {reason: n}, "first": [...]}`` for a manifest or a stats file."""
        return {"counts": dict(sorted(self.counts.items())), "first": [dict(d) for d in self.first]}

    def describe(self) -> str:
        """One line for people: the counts by reason and the first skip ('' when nothing was skipped)."""
        if not self.counts:
            return ""
        first = ", ".join(f"{k} {v}" for k, v in self.first[0].items() if k != "reason")
        return f"skipped {dict(sorted(self.counts.items()))}; first: {self.first[0]['reason']} ({first})"


@dataclass
class Scan:
    """Result of a recording's first pass; arrays are in ordinal order.

    Attributes:
        frame_t: (F,) int64 camera timestamps in ns.
        frame_source: (F,) int32 index into ``names``.
        names: source file names, as written to the index's ``source`` column.
        steering: (t_ns, rad) samples to synchronize, or None when ``presynced``.
        speed: (t_ns, m/s) samples, or None when ``presynced``.
        sample_source: (S,) index into ``names`` of each ``steering``/``speed`` sample (they share
            their times), or None when every sample belongs to every frame's drive. When sources
            overlap in time (separate drives), each frame is synchronized with its own source's samples.
        presynced: per-frame ``steering`` and ``speed`` for sources whose rows already pair
            each image with its measurements (simulator logs, interpolated.csv, tubs, frame
            folders); without a ``speed`` entry the recording has no speed and the speed
            filter is skipped.
        reason: (F,) object array, per frame "" or why the reader already rejects it
            (``deleted``, ``missing_image``, ``empty_image``, ``throttle``, ``mode``, ...); None: all usable.
        columns: extra per-frame values kept beside the labels (a tub's ``throttle``), ordinal order.
        info: counts worth reporting (zero stamps replaced, other cameras, ...).
        warnings: problems found and survived (truncated bags, ...), one line each.
        skipped: damaged parts of the recording that were skipped (undecodable messages, ...),
            counted by reason, the first few with where they are.
    """

    frame_t: np.ndarray
    frame_source: np.ndarray
    names: list[str]
    steering: tuple[np.ndarray, np.ndarray] | None = None
    speed: tuple[np.ndarray, np.ndarray] | None = None
    sample_source: np.ndarray | None = None
    presynced: dict[str, np.ndarray] | None = None
    info: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    skipped: SkipLog = field(default_factory=SkipLog)
    reason: np.ndarray | None = None
    columns: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def has_speed(self) -> bool:
        """Whether the recording measured speed at all (tubs and data.txt folders do not)."""
        return self.speed is not None if self.presynced is None else "speed" in self.presynced


class Recording(ABC):
    """A recording: bags, a bag-dump folder, a simulator log or a comma2k19 segment."""

    kind: str = "?"
    has_images: bool = True

    def __init__(self, paths: list[Path]):
        self.paths = paths

    @abstractmethod
    def scan(self, progress: Progress | None = None) -> Scan:
        """First pass: timestamps and measurements, no image decoding."""

    @abstractmethod
    def payloads(self, wanted: np.ndarray, start: int = 0) -> Iterator[tuple[int, Payload]]:
        """Yield ``(ordinal, payload)`` for every ordinal >= start with ``wanted[ordinal]``.

        Must be called after :meth:`scan`; ordinals come in increasing order.
        """

    def scan_size(self) -> int:
        """Units of work of :meth:`scan` for a progress bar (bytes by default)."""
        return sum(p.stat().st_size for p in self.paths if p.is_file())

    def fingerprint(self) -> list[dict[str, Any]]:
        """Path, size and modification time of every input file (for resume keys)."""
        out = []
        for p in self.paths:
            st = os.stat(p)
            out.append({"path": str(p.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns})
        return out


def image_file_reason(path: Path) -> str:
    """Why an image file cannot be a frame, found without reading it: ``missing_image``,
    ``empty_image`` (0 bytes), or "" when it may be one."""
    try:
        size = path.stat().st_size
    except OSError:
        return "missing_image"
    return "empty_image" if size == 0 else ""


class ImageFileRecording(Recording):
    """A recording whose frames are image files, listed by :meth:`scan` in ``self.files``."""

    def __init__(self, paths: list[Path]):
        super().__init__(paths)
        self.files: list[Path] = []

    def payloads(self, wanted: np.ndarray, start: int = 0) -> Iterator[tuple[int, Payload]]:
        """Image file paths of wanted frames (read and decoded by the caller)."""
        for o in np.flatnonzero(wanted[start:]) + start:
            yield int(o), self.files[o]
