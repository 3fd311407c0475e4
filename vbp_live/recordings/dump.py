"""Bag-dump folders, as udacity-driving-reader's bagdump writes them.

``camera.csv`` (``[seq,]timestamp,width,height,frame_id,filename``) with ``center/<stamp>.jpg``,
and ``steering.csv`` (``timestamp,angle,torque,speed``), synchronized by the caller. Without
``steering.csv`` the rows of ``interpolated.csv`` are taken as already synchronized (note: that
dumper writes 0.0 for frames before the first steering sample, which cannot be told apart from
a real 0.0 afterwards).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vbp_live.core.errors import InputError
from vbp_live.recordings.base import ImageFileRecording, Progress, Scan
from vbp_live.recordings.csvrows import member_file, number, read_csv_rows, timestamp_ns
from vbp_live.recordings.options import CameraConfig

DUMP_FILES = ("camera.csv", "steering.csv", "interpolated.csv")


def _num(path: Path, line: int, row: dict[str, str], col: str) -> float:
    return float(number(path, line, row.get(col), repr(col)))


def _stamp(path: Path, line: int, row: dict[str, str]) -> int:
    return timestamp_ns(path, line, row.get("timestamp"), "'timestamp'")


class DumpRecording(ImageFileRecording):
    """A folder written by udacity-driving-reader's bagdump.

    Args:
        folder: the dump folder.
        camera: which camera's rows become the frames.
    """

    kind = "dump"

    def __init__(self, folder: Path, camera: CameraConfig | None = None):
        self.folder, self.camera = folder, camera or CameraConfig()
        self.camera_csv = folder / "camera.csv"
        self.steering_csv = folder / "steering.csv"
        self.interp_csv = folder / "interpolated.csv"
        super().__init__([p for p in (self.camera_csv, self.steering_csv, self.interp_csv) if p.is_file()])

    def _is_camera(self, row: dict[str, str]) -> bool:
        name = self.camera.name
        if row.get("frame_id"):
            return row["frame_id"] == f"{name}_camera"
        return row["filename"].replace("\\", "/").startswith(f"{name}/")

    def _frames(self, path: Path, cols: tuple[str, ...]) -> tuple[list[tuple[int, dict[str, str]]], int]:
        rows = read_csv_rows(path, ("timestamp", "filename", *cols))
        kept = [(ln, r) for ln, r in rows if self._is_camera(r)]
        return kept, len(rows) - len(kept)

    def scan(self, progress: Progress | None = None) -> Scan:
        """Read camera rows and steering samples (or the presynced interpolated rows)."""
        if not self.camera_csv.is_file() and not self.interp_csv.is_file():
            raise InputError(f"{self.folder}: neither camera.csv nor interpolated.csv found")
        presynced = not self.steering_csv.is_file()
        if presynced and not self.interp_csv.is_file():
            raise InputError(f"{self.folder}: no steering.csv (and no interpolated.csv) to take steering from")
        src = self.interp_csv if presynced else self.camera_csv
        rows, others = self._frames(src, ("angle", "speed") if presynced else ())
        if not rows:
            raise InputError(f"{src}: no {self.camera.name} camera frames")
        self.files = [member_file(self.folder, r["filename"], f"{src}:{ln}") for ln, r in rows]
        scan = Scan(
            frame_t=np.array([_stamp(src, ln, r) for ln, r in rows], np.int64),
            frame_source=np.zeros(len(rows), np.int32),
            names=[self.folder.name],
            info={"other_camera_rows": others, "labels_from": src.name},
        )
        if presynced:
            scan.presynced = {c: np.array([_num(src, ln, r, a) for ln, r in rows])
                              for c, a in (("steering", "angle"), ("speed", "speed"))}
            scan.warnings.append(f"{src.name}: steering taken as already synchronized (no steering.csv)")
        else:
            st = read_csv_rows(self.steering_csv, ("timestamp", "angle", "speed"))
            if not st:
                raise InputError(f"{self.steering_csv}: no steering samples")
            t = np.array([_stamp(self.steering_csv, ln, r) for ln, r in st], np.int64)
            scan.steering = (t, np.array([_num(self.steering_csv, ln, r, "angle") for ln, r in st]))
            scan.speed = (t, np.array([_num(self.steering_csv, ln, r, "speed") for ln, r in st]))
        if progress:
            progress(self.scan_size())
        return scan
