"""The one video writer: H.264 in .mp4 through PyAV by default, mp4v/MJPG through OpenCV as fallbacks.

Browsers, chat apps and issue trackers play H.264 (``yuv420p``, even sizes) in an .mp4 whose
index comes first (``+faststart``); OpenCV's pip wheel cannot encode H.264, so the default goes
through PyAV, which ships its own FFmpeg with libx264. Where PyAV has no H.264 encoder, and for
``.avi`` (MJPG), OpenCV writes instead. Every user of a video file output goes through here:
:class:`~vbp_live.io.sinks.VideoFileSink` (``run``, ``demo``), ``explain --video`` and the
training snapshots' video (:func:`write_video`).

Writers encode into the path they are given; atomic finishing (temporary name, rename) is done
by the callers (:class:`~vbp_live.io.sinks.VideoFileSink`, :func:`write_video`).
"""

from __future__ import annotations

import itertools
import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from vbp_live.core.errors import OutputError
from vbp_live.io.atomic import atomic_path

log = logging.getLogger(__name__)

CODECS = ("auto", "h264", "mp4v", "mjpg")
H264_ENCODERS = ("libx264", "h264")  # PyAV encoder names, first found wins
H264_OPTIONS = {"crf": "23", "preset": "superfast"}  # veryfast costs ~3x the time for ~30 % smaller files
FOURCC = {"mp4v": "mp4v", "mjpg": "MJPG"}  # OpenCV fallbacks


class VideoWriteError(OutputError):
    """A video cannot be opened or written (the message names the file)."""


def h264_encoder() -> str | None:
    """The name of PyAV's H.264 encoder, or None where PyAV is missing or has none."""
    try:
        import av
    except ImportError:
        return None
    for name in H264_ENCODERS:
        try:
            if av.codec.Codec(name, "w").name in ("libx264", "h264"):
                return name
        except Exception:  # noqa: BLE001  (PyAV raises its own error types for an unknown codec)
            continue
    return None


def resolve_codec(path: str | os.PathLike[str], codec: str = "auto") -> str:
    """The codec a file gets: ``auto`` is H.264 for .mp4/.mkv/.mov (mp4v where PyAV lacks it), MJPG for .avi."""
    codec = codec.lower()
    if codec not in CODECS:
        raise VideoWriteError(f"{path}: unknown codec {codec!r} (use one of {', '.join(CODECS)})")
    suffix = Path(path).suffix.lower()
    if codec == "auto":
        codec = "mjpg" if suffix == ".avi" else "h264"
    if codec == "h264" and suffix == ".avi":
        raise VideoWriteError(f"{path}: H.264 is written to .mp4 (or .mkv/.mov), not .avi")
    if codec == "h264" and h264_encoder() is None:
        log.warning("%s: PyAV has no H.264 encoder here; writing mp4v (plays in players, not in browsers)", path)
        codec = "mp4v"
    return codec


def even_size(width: int, height: int) -> tuple[int, int]:
    """(width, height) rounded up to even numbers (yuv420p needs them)."""
    return width + width % 2, height + height % 2


class EncoderBase(ABC):
    """An open encoder (abstract): ``write`` uint8 (H, W, 3) BGR frames of its size, then ``close`` (or ``abort``)."""

    codec: str = ""

    @abstractmethod
    def write(self, frame: np.ndarray) -> None:
        """Encode one frame of exactly the writer's size."""

    def close(self) -> None:  # noqa: B027  (an optional hook: nothing by default)
        """Flush and finish the file."""

    def abort(self) -> None:
        """Release without finishing (the caller deletes the file)."""
        self.close()


class H264Writer(EncoderBase):
    """H.264 ``yuv420p`` through PyAV, in an mp4 with ``+faststart``.

    Args:
        path: the file to write (its container is chosen by ``container``, not by its name).
        fps: frame rate (non-integer rates are kept as a fraction, e.g. 16.678).
        size: (width, height), even.
        container: FFmpeg muxer name (``mp4``, ``matroska``, ``mov``).
    """

    codec = "h264"

    def __init__(self, path: Path, fps: float, size: tuple[int, int], container: str = "mp4"):
        import av

        self.av = av
        options = {"movflags": "+faststart"} if container in ("mp4", "mov") else {}
        try:
            self.out = av.open(str(path), mode="w", format=container, options=options)
        except Exception as e:  # noqa: BLE001  (PyAV's own error types; the message says what)
            raise VideoWriteError(f"{path}: cannot open for writing ({e})") from e
        self.rate = Fraction(fps).limit_denominator(100_000)
        self.stream = self.out.add_stream(h264_encoder(), rate=self.rate)
        self.stream.width, self.stream.height = size
        self.stream.pix_fmt = "yuv420p"
        self.stream.options = dict(H264_OPTIONS)
        self.frames = 0

    def write(self, frame: np.ndarray) -> None:
        """Encode one BGR frame (converted to yuv420p by OpenCV: ~4x faster than FFmpeg's swscale here)."""
        i420 = cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420)  # (H * 3/2, W): BT.601 limited range, as FFmpeg's
        vf = self.av.VideoFrame.from_ndarray(i420, format="yuv420p")
        vf.pts, vf.time_base = self.frames, 1 / self.rate
        self.frames += 1
        self.out.mux(self.stream.encode(vf))

    def close(self) -> None:
        """Flush the encoder and write the index (moved to the front: ``+faststart``)."""
        if self.out is None:
            return
        try:
            self.out.mux(self.stream.encode(None))
        finally:
            self.out.close()
            self.out = None

    def abort(self) -> None:
        """Close without flushing what is buffered."""
        if self.out is not None:
            self.out.close()
            self.out = None


class OpenCVWriter(EncoderBase):
    """mp4v or MJPG through OpenCV (``cv2.VideoWriter``; the container follows the path's suffix).

    Args:
        path: the file to write (its suffix must be one OpenCV knows: .mp4, .avi, ...).
        fps: frame rate.
        size: (width, height).
        codec: ``mp4v`` or ``mjpg``.
    """

    def __init__(self, path: Path, fps: float, size: tuple[int, int], codec: str):
        self.codec = codec
        self.writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*FOURCC[codec]), fps, size)
        if not self.writer.isOpened():
            raise VideoWriteError(f"{path}: OpenCV cannot write a {codec!r} video with this suffix")

    def write(self, frame: np.ndarray) -> None:
        """Encode one BGR frame."""
        self.writer.write(frame)

    def close(self) -> None:
        """Finish the file."""
        self.writer.release()


CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}


def open_encoder(path: str | os.PathLike[str], fps: float, size: tuple[int, int], codec: str = "h264",
                 container_of: str | os.PathLike[str] | None = None) -> EncoderBase:
    """An encoder writing ``path`` (a resolved codec: see :func:`resolve_codec`).

    Args:
        path: the file to write (may be a temporary name).
        fps: frame rate.
        size: (width, height); must be even for H.264.
        codec: ``h264``, ``mp4v`` or ``mjpg``.
        container_of: the final file name, whose suffix picks the container (default: ``path``).
    """
    path = Path(path)
    suffix = Path(container_of or path).suffix.lower()
    if codec == "h264":
        return H264Writer(path, fps, size, CONTAINERS.get(suffix, "mp4"))
    return OpenCVWriter(path, fps, size, codec)


def fit_frame(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A BGR frame at ``size`` (w, h): one missing row/column replicated (odd sizes), other sizes resized."""
    if frame.ndim == 2:
        frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    dw, dh = size[0] - frame.shape[1], size[1] - frame.shape[0]
    if dw == dh == 0:
        return frame
    if dw in (0, 1) and dh in (0, 1):
        return cv2.copyMakeBorder(frame, 0, dh, 0, dw, cv2.BORDER_REPLICATE)
    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA)


def write_video(path: str | os.PathLike[str], frames: Iterable[np.ndarray], fps: float,
                codec: str = "auto") -> tuple[Path, int, str]:
    """Write frames to a video file atomically (the first frame sets the size; others are fitted to it).

    Args:
        path: the video (``.mp4`` gives H.264 by default, ``.avi`` MJPG).
        frames: uint8 (H, W, 3) BGR or (H, W) gray images.
        fps: frame rate.
        codec: ``auto``, ``h264``, ``mp4v`` or ``mjpg``.

    Returns:
        (path, frames written, codec used). Nothing is written (and the count is 0) without frames.
    """
    path, codec = Path(path), resolve_codec(path, codec)
    if not fps > 0:
        raise VideoWriteError(f"{path}: the frame rate must be > 0, got {fps}")
    it = iter(frames)
    first = next(it, None)
    if first is None:
        return path, 0, codec
    size = even_size(first.shape[1], first.shape[0])
    n = 0
    with atomic_path(path) as tmp:
        enc = open_encoder(tmp, fps, size, codec, container_of=path)
        try:
            for frame in itertools.chain([first], it):
                enc.write(fit_frame(frame, size))
                n += 1
        except BaseException:
            enc.abort()
            raise
        enc.close()
    return path, n, codec
