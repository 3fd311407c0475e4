"""Live sources through ``cv2.VideoCapture``: cameras, stream URLs (MJPEG/HTTP, RTSP), GStreamer.

A live source yields frames as they arrive, stamped with wall-clock time. A single failed read
(a corrupt JPEG part, a broken packet) is skipped and counted; several in a row mean the source
went away, and it is reopened with exponential backoff. If it stays away longer than
:attr:`ReconnectPolicy.give_up_s`, :class:`SourceLostError` ends the run with a clear message.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import cv2

from vbp_live.io.frames import FrameRecord, FrameSource, SourceError, VideoInfo
from vbp_live.io.opencv_log import opencv_quiet

log = logging.getLogger(__name__)

_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


class SourceLostError(SourceError):
    """A live source disconnected and did not come back in time."""


@dataclass(frozen=True)
class ReconnectPolicy:
    """How a lost live source is reopened.

    Attributes:
        first_delay_s: wait before the first reopen attempt.
        factor: each later wait is this many times longer ...
        max_delay_s: ... up to this.
        give_up_s: end the run when no frame arrived for this long.
        fails_before_reconnect: consecutive failed reads that count as a disconnect.
        timeout_ms: open and read timeout handed to the FFmpeg backend.
    """

    first_delay_s: float = 0.25
    factor: float = 2.0
    max_delay_s: float = 4.0
    give_up_s: float = 30.0
    fails_before_reconnect: int = 3
    timeout_ms: int = 5000

    def delays(self) -> Iterator[float]:
        """Backoff delays: first, first*factor, ... capped at max_delay_s (endless)."""
        d = self.first_delay_s
        while True:
            yield d
            d = min(self.max_delay_s, d * self.factor)


def is_live_spec(spec: str) -> bool:
    """True for a camera index, a ``scheme://`` URL or a GStreamer pipeline (contains ``!``)."""
    s = spec.strip()
    return s.isdigit() or bool(_URL.match(s)) or " ! " in s or s.startswith("gst:")


def _has_gstreamer() -> bool:
    return bool(re.search(r"GStreamer:\s+YES", cv2.getBuildInformation()))


def open_capture(spec: str, policy: ReconnectPolicy) -> cv2.VideoCapture:
    """Open a camera index, URL or GStreamer pipeline; raises :class:`SourceError` when it fails.

    OpenCV's and FFmpeg's own log lines are kept quiet meanwhile: the error says what failed.
    """
    s = spec.strip()
    gst = " ! " in s or s.startswith("gst:")
    if gst and not _has_gstreamer():
        raise SourceError(f"{spec}: this OpenCV build has no GStreamer support (see cv2.getBuildInformation())")
    with opencv_quiet():
        if s.isdigit():
            cap = cv2.VideoCapture(int(s))
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # cameras: keep the newest frame, not a backlog
        elif gst:
            cap = cv2.VideoCapture(s.removeprefix("gst:"), cv2.CAP_GSTREAMER)
        else:
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, policy.timeout_ms,
                      cv2.CAP_PROP_READ_TIMEOUT_MSEC, policy.timeout_ms]
            cap = cv2.VideoCapture(s, cv2.CAP_FFMPEG, params)
    if not cap.isOpened():
        cap.release()
        raise SourceError(f"{spec}: cannot open this camera/stream")
    return cap


class LiveSource(FrameSource):
    """A camera, stream URL or GStreamer pipeline, reopened with backoff when it drops.

    Args:
        spec: camera index ("0"), URL ("http://host:8080/video.mjpg", "rtsp://...") or pipeline.
        fps: frame rate to record at (default: what the source reports, else 30).
        policy: reconnect behaviour.

    Raises:
        SourceError: the source cannot be opened at all.
    """

    def __init__(self, spec: str, fps: float | None = None, policy: ReconnectPolicy | None = None):
        self.spec, self.policy = spec, policy or ReconnectPolicy()
        self.cap: cv2.VideoCapture | None = open_capture(spec, self.policy)
        src_fps = self.cap.get(cv2.CAP_PROP_FPS)
        self.info = VideoInfo(
            name=spec,
            width=int(self.cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
            height=int(self.cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
            fps=float(fps or (src_fps if 0 < src_fps <= 240 else 30.0)),
            live=True,
        )

    def frames(self, stop: threading.Event | None = None) -> Iterator[FrameRecord]:
        """Yield frames as they arrive; reconnect on loss; raise SourceLostError when it never returns."""
        stop = stop or threading.Event()
        t0, index, fails = time.perf_counter(), 0, 0
        while not stop.is_set():
            t_read = time.perf_counter()
            ok, img = self.cap.read() if self.cap is not None else (False, None)
            if ok:
                if fails:
                    self.corrupt += fails  # failed reads between good ones: skipped frames
                    log.warning("%s: %d unreadable frame(s) skipped", self.spec, fails)
                fails = 0
                now = time.perf_counter()
                yield FrameRecord(index, now - t0, img, t_capture=now)
                index += 1
                continue
            fails += 1
            stalled = time.perf_counter() - t_read > 1.0  # a read that timed out: the stream is gone
            if stalled or fails >= self.policy.fails_before_reconnect:
                fails = 0
                self._reconnect(stop)

    def _reconnect(self, stop: threading.Event) -> None:
        """Reopen with backoff until it works, ``stop`` is set, or ``give_up_s`` passes."""
        if self.cap is not None:
            self.cap.release()
            self.cap = None
        lost_at, attempts = time.perf_counter(), 0
        log.warning("%s: stream lost, reconnecting", self.spec)
        for delay in self.policy.delays():
            waited = time.perf_counter() - lost_at
            if waited + delay > self.policy.give_up_s:
                raise SourceLostError(
                    f"{self.spec}: live source lost and not back after {waited:.1f} s "
                    f"({attempts} reconnect attempts); giving up"
                )
            if stop.wait(delay):
                return
            attempts += 1
            try:
                self.cap = open_capture(self.spec, self.policy)
            except SourceError:
                continue
            self.reconnects += 1
            waited = time.perf_counter() - lost_at
            log.warning("%s: reconnected after %.1f s (%d attempts)", self.spec, waited, attempts)
            return

    def close(self) -> None:
        """Release the capture."""
        if self.cap is not None:
            self.cap.release()
            self.cap = None
