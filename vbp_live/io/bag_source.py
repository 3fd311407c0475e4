"""Udacity ROS1 bags played back with ground truth, through data_prep's bag reader.

No second bag reader: :class:`data_prep.source_bag.BagSource` does the reading (truncation-safe
scan, topic choice, the 2016-10-25 left/center swap, zero header stamps), and
:mod:`vbp_live.core.sync` puts the steering reports onto the camera stamps, exactly as data
preparation does. Frames outside the steering reports' time range (or inside a gap) get no
ground truth rather than a made-up value.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from vbp_live.core.sync import clean_samples, sync_channel
from vbp_live.io.video import FrameRecord, FrameSource, SourceError, VideoInfo, _stamp

log = logging.getLogger(__name__)


class BagSource(FrameSource):
    """One drive in one or more ``.bag`` files: center-camera frames + synchronized steering truth.

    Args:
        paths: the bag file(s) of one drive (merged in time order).
        camera: which camera to play (``center`` by default).
        sync: ``linear`` interpolation (default) or ``zoh`` (zero-order hold).
    """

    def __init__(self, paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], camera: str = "center", sync: str = "linear"):
        from data_prep.config import load_config
        from data_prep.source import InputError
        from data_prep.source_bag import BagSource as PrepBagSource

        self.paths = [Path(p) for p in ([paths] if isinstance(paths, (str, os.PathLike)) else paths)]
        self.cfg = load_config(None, {"camera.name": camera, "sync.method": sync})
        self.bag = PrepBagSource(self.paths, self.cfg)
        try:
            scan = self.bag.scan()
        except InputError as e:
            raise SourceError(f"{', '.join(map(str, self.paths))}: {e}") from e
        for w in scan.warnings:
            log.warning("%s", w)
        self.frame_t = scan.frame_t  # (F,) ns, in playback (ordinal) order
        self.truth = self._sync(scan.steering)  # (F,) rad, NaN where unknown
        w, h = self._first_size()
        self.info = VideoInfo(name=", ".join(map(str, self.paths)), width=w, height=h, fps=_rate(self.frame_t), total=len(self.frame_t))

    def _first_size(self) -> tuple[int, int]:
        """(width, height) of the first decodable frame among the first few, else (0, 0)."""
        from data_prep.images import ImageError, decode_payload

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

    def _sync(self, steering: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        gap = self.cfg.sync.max_gap_s
        values, _ = sync_channel(self.frame_t, clean_samples(*steering), self.cfg.sync.method,
                                 None if gap is None else int(gap * 1e9))
        return values

    def frames(self, stop: threading.Event | None = None) -> Iterator[FrameRecord]:
        """Decode the camera frames in recording order; undecodable ones are skipped and counted."""
        from data_prep.images import ImageError, decode_payload

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
            yield _stamp(FrameRecord(k, (int(self.frame_t[k]) - t0) / 1e9, img, truth))


def _rate(t_ns: np.ndarray) -> float:
    """Frame rate from the median spacing of the stamps (20.0 when it cannot be told)."""
    d = np.diff(np.sort(t_ns))
    d = d[d > 0]
    return float(1e9 / np.median(d)) if d.size else 20.0
