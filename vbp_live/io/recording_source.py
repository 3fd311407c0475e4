"""Any recording of :mod:`vbp_live.recordings` played back with its ground truth.

One frame source for every reader (donkeycar tubs, frame folders, comma2k19 segments with video,
simulator logs, bag dumps): the reader's scan gives the frame times, and
:func:`~vbp_live.recordings.labels.frame_steering` puts the steering onto them exactly as data
preparation does. Frames the reader already rejects (deleted tub records, missing or empty
images, frame times without video) are not played; those with a missing or broken image are
counted in ``corrupt``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import numpy as np

from vbp_live.core.errors import InputError
from vbp_live.io.frames import FrameRecord, FrameSource, SourceError, VideoInfo, stamped
from vbp_live.recordings.base import Recording
from vbp_live.recordings.images import ImageError, decode_payload
from vbp_live.recordings.labels import frame_steering
from vbp_live.recordings.options import SyncConfig

log = logging.getLogger(__name__)
_BROKEN = ("missing_image", "empty_image", "no_video_frame")  # reader reasons that count as corrupt frames


class RecordingFrameSource(FrameSource):
    """The frames of one recording with their synchronized steering truth.

    Args:
        recording: an opened reader (:func:`vbp_live.recordings.formats.open_recording`).
        name: what to call the source in messages.
        sync: how steering samples are put onto frame times (readers with per-frame labels ignore it).
        fps: frame rate override (default: from the frame times).

    Raises:
        SourceError: the recording cannot be read, has no images or no playable frame.
    """

    def __init__(self, recording: Recording, name: str, sync: SyncConfig | None = None, fps: float | None = None):
        if not recording.has_images:
            raise SourceError(f"{name}: this {recording.kind} recording has no images to play")
        self.recording = recording
        try:
            scan = recording.scan()
        except InputError as e:
            raise SourceError(str(e) if str(e).startswith(name) else f"{name}: {e}") from e
        for w in scan.warnings:
            log.warning("%s", w)
        reason = np.asarray(scan.reason if scan.reason is not None else [""] * len(scan.frame_t), dtype=object)
        self.playable = reason == ""  # (F,) bool, ordinal order
        if not self.playable.any():
            raise SourceError(f"{name}: no playable frame ({len(reason)} read, all rejected)")
        self.corrupt = int(np.isin(reason, _BROKEN).sum())
        self.frame_t = scan.frame_t  # (F,) ns
        self.truth = frame_steering(scan, sync or SyncConfig())  # (F,) rad, NaN where unknown
        t = self.frame_t[self.playable]
        w, h = self._first_size()
        self.info = VideoInfo(name=name, width=w, height=h, fps=float(fps or _rate(t)), total=int(self.playable.sum()))

    def _first_size(self) -> tuple[int, int]:
        """(width, height) of the first decodable frame among the first few playable ones, else (0, 0)."""
        first = np.zeros(len(self.frame_t), bool)
        first[np.flatnonzero(self.playable)[:5]] = True
        payloads = self.recording.payloads(first)
        try:
            for _, payload in payloads:
                try:
                    img = decode_payload(payload, gray=False)
                    return img.shape[1], img.shape[0]
                except ImageError:
                    continue
        finally:
            payloads.close()  # type: ignore[attr-defined]
        return 0, 0

    def frames(self, stop: threading.Event | None = None) -> Iterator[FrameRecord]:
        """Decode the playable frames in order; undecodable ones are skipped and counted."""
        t0 = int(self.frame_t[self.playable].min())
        payloads = self.recording.payloads(self.playable)
        try:
            for k, payload in payloads:
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
        finally:
            payloads.close()  # type: ignore[attr-defined]


def _rate(t_ns: np.ndarray) -> float:
    """Frame rate from the median spacing of the stamps (20.0 when it cannot be told)."""
    d = np.diff(np.sort(t_ns))
    d = d[d > 0]
    return float(1e9 / np.median(d)) if d.size else 20.0
