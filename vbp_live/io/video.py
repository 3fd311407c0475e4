"""Frame sources from files and memory: video files, image folders, prepared datasets, arrays.

Every source is an iterator of :class:`~vbp_live.io.frames.FrameRecord` (supervision-style frame
generators) with a :class:`~vbp_live.io.frames.VideoInfo`. They yield every frame in order;
unreadable frames are skipped, counted in ``source.corrupt`` and logged.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

import cv2
import numpy as np

from vbp_live.io.dataset import PreparedDataset
from vbp_live.io.frames import FrameRecord, FrameSource, SourceError, VideoInfo, stamped
from vbp_live.io.opencv_log import opencv_quiet
from vbp_live.recordings.images import ImageError, decode_payload

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}


class VideoFileSource(FrameSource):
    """A video file decoded with OpenCV (FFmpeg). Undecodable frames are skipped and counted.

    Args:
        path: the file.
        fps: override the frame rate stored in the file.
    """

    def __init__(self, path: str | os.PathLike[str], fps: float | None = None):
        self.path = Path(path)
        if not self.path.is_file():
            raise SourceError(f"{self.path}: no such video file")
        with opencv_quiet():
            self.cap = cv2.VideoCapture(str(self.path))
        if not self.cap.isOpened():
            raise SourceError(f"{self.path}: OpenCV cannot open it as a video (unknown format or codec?)")
        total = int(self.cap.get(cv2.CAP_PROP_FRAME_COUNT))
        file_fps = self.cap.get(cv2.CAP_PROP_FPS)
        self.info = VideoInfo(
            name=str(self.path),
            width=int(self.cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
            height=int(self.cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
            fps=float(fps or (file_fps if 0 < file_fps < 1000 else 30.0)),
            total=total if total > 0 else None,
        )

    def frames(self, stop: threading.Event | None = None) -> Iterator[FrameRecord]:
        """Decode every frame; a failed read before the known frame count is a skipped frame.

        Failed reads count as skipped (``corrupt``) only when a good frame follows them; the
        failures at the end of a file that ends early are missing frames, not skipped ones.
        """
        index = 0
        max_skips = 25  # consecutive failures that mean "the file ends here"
        fails = 0
        while not (stop and stop.is_set()):
            ok, img = self.cap.read()
            if ok:
                if fails:
                    self.corrupt += fails
                    log.warning("%s: %d unreadable frame(s) before frame %d, skipped", self.path, fails, index)
                fails = 0
                yield stamped(FrameRecord(index, index / self.info.fps, img))
            elif self.info.total is not None and index < self.info.total - 1 and fails < max_skips:
                fails += 1
            else:
                return
            index += 1

    def close(self) -> None:
        """Release the decoder."""
        self.cap.release()


def _natural_key(p: Path) -> list[object]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.name)]


class ImageFolderSource(FrameSource):
    """The images of one folder in natural file-name order; unreadable images are skipped and counted.

    Args:
        path: the folder.
        fps: frame rate to assume (images carry none).
    """

    def __init__(self, path: str | os.PathLike[str], fps: float = 20.0):
        self.path = Path(path)
        self.files = sorted((p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=_natural_key)
        if not self.files:
            raise SourceError(f"{self.path}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in this folder")
        first = next((im for im in map(_imread, self.files[:10]) if im is not None), None)
        h, w = first.shape[:2] if first is not None else (0, 0)
        self.info = VideoInfo(name=str(self.path), width=w, height=h, fps=float(fps), total=len(self.files))

    def frames(self, stop: threading.Event | None = None) -> Iterator[FrameRecord]:
        """Read the images in order, skipping (and counting) the ones that do not decode."""
        for i, f in enumerate(self.files):
            if stop and stop.is_set():
                return
            try:
                img = decode_payload(f, gray=False, follow_symlinks=True)
            except ImageError as e:
                self.corrupt += 1
                log.warning("%s: not a readable image, skipped (%s)", f, e)
                continue
            yield stamped(FrameRecord(i, i / self.info.fps, img))


def _imread(path: Path) -> np.ndarray | None:
    """The image decoded strictly (:func:`~vbp_live.recordings.images.decode_payload`); None when it does not."""
    try:
        return decode_payload(path, gray=False, follow_symlinks=True)
    except ImageError as e:
        log.debug("%s", e)
        return None


class DatasetSource(FrameSource):
    """A prepared dataset (:class:`~vbp_live.io.dataset.PreparedDataset`): cropped frames with truth.

    Args:
        path: the dataset directory.
        split: "train", "test" or None for every frame.
        fps: the playback rate; None: measured from the frames' stamps.
    """

    def __init__(self, path: str | os.PathLike[str], split: str | None = None, fps: float | None = None):
        self.ds = PreparedDataset(path)
        self.crop = self.ds.crop  # the crop the frames were made with
        self.rows = self.ds.indices(split) if split else np.arange(len(self.ds))
        if len(self.rows) == 0:
            raise SourceError(f"{path}: no frames" + (f" in split {split!r}" if split else ""))
        ts = self.ds.timestamps_ns[self.rows]
        span = (ts[-1] - ts[0]) / 1e9 if len(ts) > 1 else 0.0
        fps = fps or ((len(ts) - 1) / span if span > 0 else 20.0)
        h, w = self.ds.frame_shape[:2]
        self.info = VideoInfo(name=str(path), width=w, height=h, fps=float(fps), total=len(self.rows))

    def frames(self, stop: threading.Event | None = None) -> Iterator[FrameRecord]:
        """Yield the frames (copies out of the memmap) with their steering truth."""
        t0 = int(self.ds.timestamps_ns[self.rows[0]])
        for r in self.rows:
            if stop and stop.is_set():
                return
            t = (int(self.ds.timestamps_ns[r]) - t0) / 1e9
            img = np.array(self.ds.frames[r])
            yield stamped(FrameRecord(int(r), t, img, float(self.ds.steering[r]), cropped=True))


class ArraySource(FrameSource):
    """Frames from memory or a generator: ``(image, truth_rad or None)`` pairs.

    Args:
        frames: an iterable of (image, truth) pairs.
        fps: their frame rate.
        total: how many there are, if known.
        name: what to call the source.
    """

    def __init__(
        self,
        frames: Iterable[tuple[np.ndarray, float | None]],
        fps: float,
        total: int | None = None,
        name: str = "<frames>",
        size: tuple[int, int] = (0, 0),
    ):
        self._frames = frames
        self.info = VideoInfo(name=name, width=size[0], height=size[1], fps=float(fps), total=total)

    def frames(self, stop: threading.Event | None = None) -> Iterator[FrameRecord]:
        """Yield the given frames in order."""
        for i, (img, truth) in enumerate(self._frames):
            if stop and stop.is_set():
                return
            yield stamped(FrameRecord(i, i / self.info.fps, img, truth))
