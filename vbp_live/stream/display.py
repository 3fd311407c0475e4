"""Sinks that must run on the thread that called :meth:`Pipeline.run` (OpenCV windows).

GUI toolkits want one thread (macOS's Cocoa insists on the main one), so windows are not driven
from the writer thread: the writer hands each rendered frame over through a small queue and the
caller's thread shows it while it waits for the stages, keeping the window responsive between
frames. For files the queue blocks (pausing the window pauses the whole pipeline, and every
frame is shown); for live sources it keeps only the newest frame, so a slow or paused window
never holds up the recording.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import numpy as np

from vbp_live.io.sinks import FrameSink
from vbp_live.stream.channel import Channel


class Display:
    """The main-thread sinks of a pipeline and the queue that feeds them.

    Args:
        sinks: sinks with ``needs_main_thread`` (windows).
        stop: the pipeline's stop event.
        live: keep only the newest frame instead of blocking the writer.
    """

    def __init__(self, sinks: Sequence[FrameSink], stop: threading.Event, live: bool):
        self.sinks = list(sinks)
        self.queue = Channel(1 if live else 2, live, stop)

    def offer(self, frame: np.ndarray, index: int, time_s: float) -> None:
        """Writer thread: hand over a rendered frame (blocks for files while the window is behind)."""
        self.queue.put((frame, index, time_s))

    def step(self, wait_s: float) -> None:
        """Caller's thread: show the next frame, or keep the windows responsive for ``wait_s``."""
        item = self.queue.get_nowait()
        if item is None:
            for sink in self.sinks:
                sink.idle(wait_s)
            if not self.sinks:
                time.sleep(wait_s)
            return
        for sink in self.sinks:
            sink.write(*item)

    def drain(self) -> None:
        """Show what is still queued (at the end of a stream)."""
        while (item := self.queue.get_nowait()) is not None:
            for sink in self.sinks:
                sink.write(*item)

    @property
    def quit_requested(self) -> bool:
        """A window asked to quit (q or Esc)."""
        return any(s.quit_requested for s in self.sinks)

    def close(self) -> None:
        """Close the windows (on the caller's thread)."""
        for sink in self.sinks:
            sink.close()
