"""What every frame source is: :class:`FrameSource` yielding :class:`FrameRecord` with a :class:`VideoInfo`.

The shared types of the overlay's sources; the sources themselves live in :mod:`vbp_live.io.video`
(files, folders, datasets, memory), :mod:`vbp_live.io.bag_source` (recordings with ground truth)
and :mod:`vbp_live.io.live` (cameras and streams), and :func:`vbp_live.io.sources.open_source`
picks one from a command-line SOURCE string.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from vbp_live.core.errors import InputError


class SourceError(InputError):
    """A source cannot be opened or read (the message names it and says what is wrong)."""


@dataclass
class FrameRecord:
    """One frame on its way through the pipeline.

    Attributes:
        index: frame index in the source (skipped frames keep their numbers).
        time_s: media time in seconds from the start of the source.
        image: uint8 (H, W, 3) BGR or (H, W) gray.
        truth_rad: actual steering wheel angle (rad) where the source knows it.
        cropped: the image already is the network input (prepared datasets).
        t_capture: ``time.perf_counter()`` when the frame was obtained (latency origin).
    """

    index: int
    time_s: float
    image: np.ndarray
    truth_rad: float | None = None
    cropped: bool = False
    t_capture: float = 0.0


@dataclass(frozen=True)
class VideoInfo:
    """What is known about a source before reading it.

    Attributes:
        name: what to call it in messages.
        width, height: frame size (0 when unknown until the first frame).
        fps: frame rate (frames/s) of the media, used for output videos.
        total: number of frames, or None (live, unknown).
        live: frames arrive in real time; stale ones are dropped instead of queued.
    """

    name: str
    width: int
    height: int
    fps: float
    total: int | None = None
    live: bool = False


class FrameSource:
    """Base class: ``info``, :meth:`frames`, ``corrupt`` count; a context manager that closes."""

    info: VideoInfo
    corrupt: int = 0
    reconnects: int = 0

    def frames(self, stop: threading.Event | None = None) -> Iterator[FrameRecord]:
        """Yield frames in order until the end or until ``stop`` is set."""
        raise NotImplementedError

    def close(self) -> None:
        """Release whatever the source holds."""

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def stamped(rec: FrameRecord) -> FrameRecord:
    """Set ``rec.t_capture`` to now (the latency origin) and return it."""
    rec.t_capture = time.perf_counter()
    return rec
