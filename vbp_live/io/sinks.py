"""Frame sinks: a video file, a folder of frames, an OpenCV window, or nothing.

Sinks are context managers (supervision's ``VideoSink`` pattern): ``write(frame, index)`` per
frame, ``close()`` at the end. :class:`VideoFileSink` writes to a hidden temporary name beside
the target and renames it into place on close, so a killed process never leaves a half file
that looks finished, while an interrupted or failed run still finalizes a playable file of
what was processed.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from abc import ABC, abstractmethod
from pathlib import Path

import cv2
import numpy as np

from vbp_live.core.errors import OutputError
from vbp_live.io.atomic import temp_beside, write_bytes_atomic
from vbp_live.io.video_writer import EncoderBase, VideoWriteError, even_size, fit_frame, open_encoder, resolve_codec

log = logging.getLogger(__name__)


class SinkError(OutputError):
    """A sink cannot be opened or written (the message names it)."""


class FrameSink(ABC):
    """Abstract base: subclasses ``write`` each BGR frame; ``close`` once. ``quit_requested`` ends the run.

    ``needs_main_thread`` sinks (windows) are driven from the thread that runs the pipeline,
    which calls :meth:`idle` between frames; the others run on the writer thread.
    """

    quit_requested: bool = False
    needs_main_thread: bool = False

    def attach(self, stop: threading.Event) -> None:  # noqa: B027  (an optional hook: nothing by default)
        """Give the sink the pipeline's stop event (interactive sinks watch it while paused)."""

    @abstractmethod
    def write(self, frame: np.ndarray, index: int, time_s: float | None = None) -> None:
        """Consume one uint8 (H, W, 3) BGR frame (source index, media time in seconds)."""

    def idle(self, wait_s: float) -> None:
        """No frame is due: keep an interactive sink responsive for up to ``wait_s`` seconds."""
        time.sleep(wait_s)

    def close(self) -> None:  # noqa: B027  (an optional hook: nothing by default)
        """Finish: finalize files, close windows."""

    def abort(self) -> None:
        """The sink itself failed: release and discard what cannot be finished (default: close)."""
        self.close()

    def __enter__(self) -> FrameSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class NullSink(FrameSink):
    """Discards frames (benchmarks)."""

    def write(self, frame: np.ndarray, index: int, time_s: float | None = None) -> None:
        """Do nothing."""


class VideoFileSink(FrameSink):
    """A video file at the source's frame rate, finalized by renaming on :meth:`close`.

    Encoded by :mod:`vbp_live.io.video_writer`: H.264 (yuv420p, ``+faststart``) in ``.mp4`` by
    default, so browsers play it; ``.avi`` gives MJPG; ``codec="mp4v"`` the old OpenCV codec.

    Args:
        path: the output file (``.mp4``, ``.mkv``, ``.mov`` or ``.avi``).
        fps: frames per second to store.
        codec: ``auto`` (H.264, or MJPG for .avi), ``h264``, ``mp4v`` or ``mjpg``.
        hold_time: keep real time (live sources): a frame is repeated until the next one's time,
            so dropped frames and stalls do not make the recording play faster than it happened.
    """

    def __init__(self, path: str | os.PathLike[str], fps: float, codec: str = "auto", hold_time: bool = False):
        self.path, self.hold_time = Path(path), hold_time
        self.fps = float(fps) if fps and fps > 0 else 30.0
        try:
            self.codec = resolve_codec(self.path, codec)
        except VideoWriteError as e:
            raise SinkError(str(e)) from e
        self.tmp = temp_beside(self.path, "partial")  # permissions from the umask, like any new file
        self.writer: EncoderBase | None = None
        self.size: tuple[int, int] | None = None
        self.frames = 0
        self.finalized: Path | None = None

    def _open(self, frame: np.ndarray) -> None:
        # codecs want even sizes (FFmpeg would silently cut a row): pad odd frames by one pixel
        self.size = even_size(frame.shape[1], frame.shape[0])
        try:
            self.writer = open_encoder(self.tmp, self.fps, self.size, self.codec, container_of=self.path)
        except VideoWriteError as e:
            raise SinkError(str(e)) from e

    def write(self, frame: np.ndarray, index: int, time_s: float | None = None) -> None:
        """Encode one frame (resized if the stream changed size; repeated to keep time with ``hold_time``)."""
        if self.writer is None:
            self._open(frame)
            self.t0 = time_s or 0.0
        frame = fit_frame(frame, self.size)
        repeat = 1
        if self.hold_time and time_s is not None:
            repeat = max(1, round((time_s - self.t0) * self.fps) + 1 - self.frames)
        for _ in range(repeat):
            self.writer.write(frame)
        self.frames += repeat

    def close(self) -> None:
        """Finish the file and rename it into place (nothing is left when no frame was written)."""
        if self.finalized is not None or not self.tmp.exists():
            return
        if self.writer is not None:
            self.writer.close()
        if self.frames == 0:
            self.tmp.unlink(missing_ok=True)
            log.warning("%s: no frames were written, no file made", self.path)
            return
        with open(self.tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(self.tmp, self.path)
        self.finalized = self.path
        log.info("wrote %s (%d frames at %.2f fps, %s)", self.path, self.frames, self.fps, self.codec)

    def abort(self) -> None:
        """Release and delete the temporary file (the sink itself failed)."""
        if self.writer is not None:
            self.writer.abort()
        self.tmp.unlink(missing_ok=True)


class FramesDirSink(FrameSink):
    """One image per frame, ``<index:06d>.<ext>``, each written atomically.

    Args:
        path: the folder (created).
        ext: image format: png (default) or jpg.
    """

    def __init__(self, path: str | os.PathLike[str], ext: str = "png"):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.ext = "." + ext.lstrip(".")
        self.frames = 0

    def write(self, frame: np.ndarray, index: int, time_s: float | None = None) -> None:
        """Encode and write one frame."""
        ok, buf = cv2.imencode(self.ext, frame)
        if not ok:
            raise SinkError(f"{self.path}: OpenCV cannot encode {self.ext} images")
        write_bytes_atomic(self.path / f"{index:06d}{self.ext}", buf.tobytes())
        self.frames += 1


def check_display() -> None:
    """Raise a clear error where no window can open (Linux without DISPLAY / WAYLAND_DISPLAY)."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise SinkError("--show needs a display, but DISPLAY is not set: use --out, or run under Xvfb (xvfb-run)")


class WindowSink(FrameSink):
    """An OpenCV window: ``q``/Esc quits, space pauses/resumes, ``s`` saves a PNG snapshot.

    Every call must come from one thread (the pipeline uses the one that runs it).

    Args:
        title: window title.
        snapshot_dir: where ``s`` writes ``vbp_snapshot_<index>.png``.
    """

    KEYS_HELP = "q/Esc: quit, space: pause, s: snapshot"
    needs_main_thread = True

    def __init__(self, title: str = "vbp-live", snapshot_dir: str | os.PathLike[str] = "."):
        check_display()
        self.title, self.snapshot_dir = title, Path(snapshot_dir)
        self.stop = threading.Event()
        self.opened = False
        self.last: tuple[np.ndarray, int] | None = None
        self.snapshots: list[Path] = []
        self.shown = 0  # frames put on screen
        self.paused = False

    def attach(self, stop: threading.Event) -> None:  # noqa: B027  (an optional hook: nothing by default)
        """Watch the pipeline's stop event while paused."""
        self.stop = stop

    def write(self, frame: np.ndarray, index: int, time_s: float | None = None) -> None:
        """Show the frame and handle keys (blocks while paused)."""
        if not self.opened:
            cv2.namedWindow(self.title, cv2.WINDOW_AUTOSIZE)
            self.opened = True
        cv2.imshow(self.title, frame)
        self.last = (frame, index)
        self.shown += 1
        if self._key(cv2.waitKey(1)) == "pause":
            self._paused()

    def idle(self, wait_s: float) -> None:
        """Handle keys while no new frame is due."""
        if not self.opened:
            time.sleep(wait_s)
        elif self._key(cv2.waitKey(max(1, int(wait_s * 1000)))) == "pause":
            self._paused()

    def _key(self, key: int) -> str:
        key &= 0xFF
        if key in (ord("q"), 27):
            self.quit_requested = True
            return "quit"
        if key == ord("s") and self.last is not None:
            self.snapshot()
            return "snapshot"
        return "pause" if key == ord(" ") else ""

    def _paused(self) -> None:
        log.info("paused (space resumes)")
        self.paused = True
        try:
            while not self.stop.is_set() and not self.quit_requested:
                if self._key(cv2.waitKey(30)) == "pause":
                    return
        finally:
            self.paused = False

    def snapshot(self) -> Path:
        """Save the frame on screen as a PNG; returns its path."""
        frame, index = self.last
        ok, buf = cv2.imencode(".png", frame)
        path = self.snapshot_dir / f"vbp_snapshot_{index:06d}.png"
        write_bytes_atomic(path, buf.tobytes())
        self.snapshots.append(path)
        log.warning("snapshot saved: %s", path)
        return path

    def close(self) -> None:
        """Close the window."""
        if self.opened:
            cv2.destroyWindow(self.title)
            cv2.waitKey(1)
            self.opened = False
