"""comma2k19 segments: 20 Hz frame times and CAN steering (degrees) / speed (m/s).

Layout (files are NumPy ``.npy`` without extension)::

    <segment>/global_pose/frame_times                 (F,) s
    <segment>/processed_log/CAN/steering_angle/{t,v}  (N,) s, steering wheel angle in DEGREES
    <segment>/processed_log/CAN/speed/{t,value}       (M,) s, (M, 1) m/s

    <segment>/video.hevc                              the road camera, HEVC, one frame per frame time

Frame ``i`` of ``video.hevc`` (decoded with PyAV, in stream order) is paired with
``frame_times[i]``; frames the video lacks are dropped as ``no_video_frame``, extra video frames
are left out with a warning. Without ``video.hevc`` (the public example segment ships without
it) the reader provides labels only (``vbp-live prep --labels-only``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np

from vbp_live.core.errors import InputError
from vbp_live.recordings.base import Progress, Recording, Scan
from vbp_live.recordings.images import Payload, RawImage

log = logging.getLogger(__name__)

FRAME_TIMES = Path("global_pose/frame_times")
STEERING = Path("processed_log/CAN/steering_angle")
SPEED = Path("processed_log/CAN/speed")
VIDEO = Path("video.hevc")


def is_comma_segment(folder: Path) -> bool:
    """True if ``folder`` looks like a comma2k19 segment."""
    return (folder / FRAME_TIMES).is_file() and (folder / STEERING / "t").is_file()


def seconds_to_ns(t: np.ndarray) -> np.ndarray:
    """Float seconds -> int64 ns (rounded)."""
    return np.round(np.asarray(t, np.float64) * 1e9).astype(np.int64)


class CommaRecording(Recording):
    """One comma2k19 segment folder."""

    kind = "comma2k19"

    def __init__(self, folder: Path):
        self.folder = folder
        files = [FRAME_TIMES, STEERING / "t", STEERING / "value", SPEED / "t", SPEED / "value"]
        self.video = folder / VIDEO
        self.has_images = self.video.is_file()
        super().__init__([folder / f for f in files] + ([self.video] if self.has_images else []))

    def _load(self, rel: Path) -> np.ndarray:
        path = self.folder / rel
        if not path.is_file():
            raise InputError(f"{self.folder}: comma2k19 segment lacks {rel}")
        try:
            return np.load(path, allow_pickle=False)
        except ValueError as e:
            raise InputError(f"{path}: not a NumPy array file ({e})") from None

    def scan(self, progress: Progress | None = None) -> Scan:
        """Frame times, steering (deg -> rad) and speed samples."""
        ft = self._load(FRAME_TIMES).ravel()
        if ft.size == 0:
            raise InputError(f"{self.folder / FRAME_TIMES}: no frame times")
        st, sv = self._load(STEERING / "t").ravel(), self._load(STEERING / "value").ravel()
        vt, vv = self._load(SPEED / "t").ravel(), self._load(SPEED / "value").reshape(-1)
        for name, (t, v) in (("steering_angle", (st, sv)), ("speed", (vt, vv))):
            if t.shape != v.shape:
                raise InputError(f"{self.folder}: CAN {name} has {t.size} times but {v.size} values")
        scan = Scan(
            frame_t=seconds_to_ns(ft),
            frame_source=np.zeros(ft.size, np.int32),
            names=[self.folder.name],
            steering=(seconds_to_ns(st), np.deg2rad(sv.astype(np.float64))),
            speed=(seconds_to_ns(vt), vv.astype(np.float64)),
            info={"steering_unit_in": "deg"},
        )
        if self.has_images:
            self._pair_video(scan)
        if progress:
            progress(self.scan_size())
        return scan

    def _pair_video(self, scan: Scan) -> None:
        """Count the video's frames (packets, no decoding) and drop frame times it lacks."""
        n = count_video_frames(self.video)
        if n == 0:
            raise InputError(f"{self.video}: no video frames")
        f = len(scan.frame_t)
        scan.info["video_frames"] = n
        scan.reason = np.where(np.arange(f) < n, "", "no_video_frame").astype(object)
        if n != f:
            scan.warnings.append(f"{self.video}: {n} video frames for {f} frame times "
                                 f"({'extra frames left out' if n > f else 'frames without video dropped'})")

    def payloads(self, wanted: np.ndarray, start: int = 0) -> Iterator[tuple[int, Payload]]:
        """Decoded video frames (as BGR :class:`RawImage`) of wanted frame times, in order.

        After a decoding error the remaining wanted frames yield empty payloads, so they are
        counted as undecodable rather than lost.
        """
        if not self.has_images:
            raise InputError(f"{self.folder}: comma2k19 segment has no {VIDEO} here; use --labels-only")
        want = np.flatnonzero(wanted[start:]) + start
        done = 0
        try:
            for i, img in enumerate(decode_video(self.video)):
                if done == len(want):
                    return
                if i == want[done]:
                    yield i, img
                    done += 1
        except (av.FFmpegError, OSError) as e:
            log.warning("%s: video decoding failed (%s); %d frame(s) left", self.video, e, len(want) - done)
        for i in want[done:]:
            yield int(i), b""


def count_video_frames(path: Path) -> int:
    """Frames in a video file, counted from its packets (no decoding)."""
    try:
        with av.open(str(path)) as c:
            if not c.streams.video:
                raise InputError(f"{path}: no video stream")
            return sum(1 for p in c.demux(c.streams.video[0]) if p.size)
    except (av.FFmpegError, OSError) as e:
        raise InputError(f"{path}: not a readable video ({e})") from None


def decode_video(path: Path) -> Iterator[RawImage]:
    """Every frame of the file's first video stream as a BGR :class:`RawImage`."""
    with av.open(str(path)) as c:
        for frame in c.decode(video=0):
            bgr = frame.to_ndarray(format="bgr24")  # (H, W, 3) uint8
            h, w = bgr.shape[:2]
            yield RawImage(h, w, "bgr8", w * 3, bgr.reshape(-1))
