"""comma2k19 segments: 20 Hz frame times and CAN steering (degrees) / speed (m/s).

Layout (files are NumPy ``.npy`` without extension)::

    <segment>/global_pose/frame_times                 (F,) s
    <segment>/processed_log/CAN/steering_angle/{t,v}  (N,) s, steering wheel angle in DEGREES
    <segment>/processed_log/CAN/speed/{t,value}       (M,) s, (M, 1) m/s

The public example segment ships without its video, so this reader provides labels only
(``vbp-live prep --labels-only``): it exercises the synchronization on real CAN timing.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from vbp_live.core.errors import InputError
from vbp_live.recordings.base import Progress, Recording, Scan
from vbp_live.recordings.images import Payload

FRAME_TIMES = Path("global_pose/frame_times")
STEERING = Path("processed_log/CAN/steering_angle")
SPEED = Path("processed_log/CAN/speed")


def is_comma_segment(folder: Path) -> bool:
    """True if ``folder`` looks like a comma2k19 segment."""
    return (folder / FRAME_TIMES).is_file() and (folder / STEERING / "t").is_file()


def seconds_to_ns(t: np.ndarray) -> np.ndarray:
    """Float seconds -> int64 ns (rounded)."""
    return np.round(np.asarray(t, np.float64) * 1e9).astype(np.int64)


class CommaRecording(Recording):
    """One comma2k19 segment folder."""

    kind = "comma2k19"
    has_images = False

    def __init__(self, folder: Path):
        self.folder = folder
        files = [FRAME_TIMES, STEERING / "t", STEERING / "value", SPEED / "t", SPEED / "value"]
        super().__init__([folder / f for f in files])

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
        if progress:
            progress(self.scan_size())
        return Scan(
            frame_t=seconds_to_ns(ft),
            frame_source=np.zeros(ft.size, np.int32),
            names=[self.folder.name],
            steering=(seconds_to_ns(st), np.deg2rad(sv.astype(np.float64))),
            speed=(seconds_to_ns(vt), vv.astype(np.float64)),
            info={"steering_unit_in": "deg"},
        )

    def payloads(self, wanted: np.ndarray, start: int = 0) -> Iterator[tuple[int, Payload]]:
        """No video in this layout."""
        raise InputError(f"{self.folder}: comma2k19 segment has no video here; use --labels-only")
