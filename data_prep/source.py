"""What every recording source provides: a cheap first pass (times and labels) and payloads.

Preparation reads its input twice. :meth:`Source.scan` reads only timestamps and vehicle
measurements (no image decoding), so the synchronization, filters and split are decided
before any pixel is touched. :meth:`Source.payloads` then streams the encoded images of the
frames that survived, identified by their *ordinal*: the frame's position in the scan.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from data_prep.images import Payload
from vbp_live.core.errors import InputError

Progress = Callable[[int], None]  # called with an increment (bytes or rows)


@dataclass
class Scan:
    """Result of a source's first pass; arrays are in ordinal order.

    Attributes:
        frame_t: (F,) int64 camera timestamps in ns.
        frame_source: (F,) int32 index into ``names``.
        names: source file names, as written to the index's ``source`` column.
        steering: (t_ns, rad) samples to synchronize, or None when ``presynced``.
        speed: (t_ns, m/s) samples, or None when ``presynced``.
        presynced: per-frame ``steering`` and ``speed`` for sources whose rows already pair
            each image with its measurements (simulator logs, interpolated.csv).
        info: counts worth reporting (zero stamps replaced, other cameras, ...).
        warnings: problems found and survived (truncated bags, ...), one line each.
    """

    frame_t: np.ndarray
    frame_source: np.ndarray
    names: list[str]
    steering: tuple[np.ndarray, np.ndarray] | None = None
    speed: tuple[np.ndarray, np.ndarray] | None = None
    presynced: dict[str, np.ndarray] | None = None
    info: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


class Source(ABC):
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
