"""Udacity ROS1 bags played back with ground truth, through :mod:`vbp_live.recordings`' bag reader.

No second bag reader: :class:`~vbp_live.recordings.bag.BagRecording` does the reading
(truncation-safe scan, topic choice, the 2016-10-25 left/center swap, zero header stamps), and
:func:`~vbp_live.recordings.labels.frame_steering` puts the steering reports onto the camera
stamps, exactly as data preparation does. Frames outside the steering reports' time range (or
inside a gap) get no ground truth rather than a made-up value. A damaged bag plays what can be
read: the reader's warnings (messages skipped by reason, a cut, ...) are logged when the
source opens and kept in :attr:`BagFrameSource.warnings` for the run summary.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from vbp_live.core.errors import InputError
from vbp_live.io.frames import FrameRecord, FrameSource, SourceError, VideoInfo, stamped
from vbp_live.recordings.bag import BagRecording
from vbp_live.recordings.images import ImageError, decode_payload
from vbp_live.recordings.labels import frame_steering
from vbp_live.recordings.options import CameraConfig, SyncConfig

log = logging.getLogger(__name__)


class BagFrameSource(FrameSource):
    """One drive in one or more ``.bag`` files: camera frames + synchronized steering truth.

    Args:
        paths: the bag file(s) of one drive (merged in time order).
        camera: which camera to play (``center`` by default).
        sync: ``linear`` interpolation (default) or ``zoh`` (zero-order hold).

    Attributes:
        warnings: problems the reader found and survived, one line each (for the run summary).
        skipped: what the reader skipped, by reason (:class:`~vbp_live.recordings.base.SkipLog`).

    Raises:
        SourceError: the bags cannot be read or hold no camera frames or steering.
    """

    def __init__(self, paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], camera: str = "center",
                 sync: str = "linear"):
        self.paths = [Path(p) for p in ([paths] if isinstance(paths, (str, os.PathLike)) else paths)]
        self.bag = BagRecording(self.paths, CameraConfig(name=camera))
        try:
            scan = self.bag.scan()
        except InputError as e:
            raise SourceError(f"{', '.join(map(str, self.paths))}: {e}") from e
        self.warnings, self.skipped = list(scan.warnings), scan.skipped
        for w in self.warnings:
            log.warning("%s", w)
        self.frame_t = scan.frame_t  # (F,) ns, in playback (ordinal) order
        self.truth = frame_steering(scan, SyncConfig(method=sync))  # (F,) rad, NaN where unknown
        w, h = self._first_size()
        self.info = VideoInfo(name=", ".join(map(str, self.paths)), width=w, height=h, fps=_rate(self.frame_t),
                              total=len(self.frame_t))

    def _first_size(self) -> tuple[int, int]:
        """(width, height) of the first decodable frame among the first few, else (0, 0)."""
        first = np.zeros(len(self.frame_t), bool)
        first[:5] = True
        payloads = self.bag.payloads(first)
        try:
            for _, payload in payloads:
                try:
                    img = decode_payload(payload, gray=False)
                    return img.shape[1], img.shape[0]
                except ImageError:
                    continue
        finally:
            payloads.close()
        return 0, 0

    def frames(self, stop: threading.Event | None = None) -> Iterator[FrameRecord]:
        """Decode the camera frames in recording order; undecodable ones are skipped and counted."""
        t0 = int(self.frame_t.min())
        for k, payload in self.bag.payloads(np.ones(len(self.frame_t), bool)):
            if stop and stop.is_set():
                return
            try:
                img = decode_payload(payload, gray=False)
            except ImageError as e:
                self.corrupt += 1
                log.warning("%s: frame %d skipped: %s", self.info.name, k, e)
                continue
            truth = None if np.isnan(self.truth[k]) else float(self.truth[k])
            yield stamped(FrameRecord(k, (int(self.frame_t[k]) - t0) / 1e9, img, truth))


def _rate(t_ns: np.ndarray) -> float:
    """Frame rate from the median spacing of the stamps (20.0 when it cannot be told)."""
    d = np.diff(np.sort(t_ns))
    d = d[d > 0]
    return float(1e9 / np.median(d)) if d.size else 20.0
