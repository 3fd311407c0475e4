"""CSV-based recordings: bag-dump folders (udacity-driving-reader) and simulator logs.

Bag-dump folder: ``camera.csv`` (``[seq,]timestamp,width,height,frame_id,filename``) with
``center/<stamp>.jpg``, and ``steering.csv`` (``timestamp,angle,torque,speed``) which is
synchronized here. Without ``steering.csv`` the rows of ``interpolated.csv`` are taken as
already synchronized (note: that dumper writes 0.0 for frames before the first steering
sample, which cannot be told apart from a real 0.0 afterwards).

Simulator ``driving_log.csv``: ``center,left,right,steering,throttle,brake,speed`` with or
without a header row, spaces after commas, relative or absolute paths (also Windows ones):
images are found by file name in the ``IMG/`` folder beside the log. Steering is normalized
to [-1, 1] and mapped to radians by :class:`~data_prep.config.SimulatorConfig`; speed is in
mph and converted to m/s.
"""

from __future__ import annotations

import csv
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import numpy as np

from data_prep.config import PrepConfig
from data_prep.images import Payload
from data_prep.source import InputError, Progress, Scan, Source

MPH_TO_MPS = 0.44704
_SIM_STAMP = re.compile(r"(\d{4})_(\d{2})_(\d{2})_(\d{2})_(\d{2})_(\d{2})_(\d{3})")


def read_csv_rows(path: Path, required: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    """``(line_number, row)`` of a CSV with a header row; checks the required columns."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f, skipinitialspace=True)
        cols = [c.strip() for c in (reader.fieldnames or [])]
        missing = [c for c in required if c not in cols]
        if missing:
            raise InputError(f"{path}: missing column(s) {missing}; columns: {cols}")
        return [(i + 2, {k.strip(): (v or "").strip() for k, v in r.items() if k}) for i, r in enumerate(reader)]


def _num(path: Path, line: int, row: dict[str, str], col: str, kind: type = float):
    try:
        return kind(row[col])
    except (ValueError, KeyError):
        raise InputError(f"{path}:{line}: column {col!r} is not a number: {row.get(col)!r}") from None


class ImageFileSource(Source):
    """A source whose frames are image files listed by :meth:`scan` in ``self.files``."""

    def __init__(self, paths: list[Path]):
        super().__init__(paths)
        self.files: list[Path] = []

    def payloads(self, wanted: np.ndarray, start: int = 0) -> Iterator[tuple[int, Payload]]:
        """Image file paths of wanted frames (read and decoded by the worker threads)."""
        for o in np.flatnonzero(wanted[start:]) + start:
            yield int(o), self.files[o]


class DumpSource(ImageFileSource):
    """A folder written by udacity-driving-reader's bagdump."""

    kind = "dump"

    def __init__(self, folder: Path, cfg: PrepConfig):
        self.folder, self.cfg = folder, cfg
        self.camera_csv = folder / "camera.csv"
        self.steering_csv = folder / "steering.csv"
        self.interp_csv = folder / "interpolated.csv"
        super().__init__([p for p in (self.camera_csv, self.steering_csv, self.interp_csv) if p.is_file()])

    def _is_camera(self, row: dict[str, str]) -> bool:
        name = self.cfg.camera.name
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
            raise InputError(f"{src}: no {self.cfg.camera.name} camera frames")
        self.files = [self.folder / r["filename"].replace("\\", "/") for _, r in rows]
        scan = Scan(
            frame_t=np.array([_num(src, ln, r, "timestamp", int) for ln, r in rows], np.int64),
            frame_source=np.zeros(len(rows), np.int32),
            names=[self.folder.name],
            info={"other_camera_rows": others, "labels_from": src.name},
        )
        if presynced:
            scan.presynced = {c: np.array([_num(src, ln, r, a) for ln, r in rows]) for c, a in (("steering", "angle"), ("speed", "speed"))}
            scan.warnings.append(f"{src.name}: steering taken as already synchronized (no steering.csv)")
        else:
            st = read_csv_rows(self.steering_csv, ("timestamp", "angle", "speed"))
            if not st:
                raise InputError(f"{self.steering_csv}: no steering samples")
            t = np.array([_num(self.steering_csv, ln, r, "timestamp", int) for ln, r in st], np.int64)
            scan.steering = (t, np.array([_num(self.steering_csv, ln, r, "angle") for ln, r in st]))
            scan.speed = (t, np.array([_num(self.steering_csv, ln, r, "speed") for ln, r in st]))
        if progress:
            progress(self.scan_size())
        return scan


def sim_timestamp(name: str) -> int | None:
    """ns since the epoch from a simulator image name (``center_2016_12_01_13_30_48_287.jpg``)."""
    m = _SIM_STAMP.search(name)
    if not m:
        return None
    y, mo, d, h, mi, s, ms = (int(g) for g in m.groups())
    try:
        dt = datetime(y, mo, d, h, mi, s, tzinfo=timezone.utc)
    except ValueError:
        return None
    return (int(dt.timestamp()) * 1000 + ms) * 1_000_000


def image_in_img_folder(log_dir: Path, cell: str) -> Path:
    """Resolve a logged image path (relative, absolute, Windows) by file name in ``IMG/``."""
    name = re.split(r"[\\/]", cell.strip())[-1]
    return log_dir / "IMG" / name


class SimSource(ImageFileSource):
    """A Udacity simulator ``driving_log.csv`` with its ``IMG/`` folder."""

    kind = "sim"

    def __init__(self, log: Path, cfg: PrepConfig):
        super().__init__([log])
        self.log, self.cfg = log, cfg

    def _rows(self) -> list[tuple[int, list[str]]]:
        with open(self.log, newline="", encoding="utf-8") as f:
            rows = [(i + 1, [c.strip() for c in r]) for i, r in enumerate(csv.reader(f)) if any(c.strip() for c in r)]
        if rows and rows[0][1] and rows[0][1][0].lower() == "center":
            rows = rows[1:]
        if not rows:
            raise InputError(f"{self.log}: no rows (empty driving log)")
        for ln, r in rows:
            if len(r) < 7:
                raise InputError(f"{self.log}:{ln}: expected 7 columns center,left,right,steering,throttle,brake,speed; got {len(r)}")
        return rows

    def scan(self, progress: Progress | None = None) -> Scan:
        """Read the log: every row is one frame already paired with steering and speed."""
        rows = self._rows()
        d = self.log.parent
        self.files = [image_in_img_folder(d, r[0]) for _, r in rows]
        stamps = [sim_timestamp(p.name) for p in self.files]
        period = int(round(self.cfg.simulator.frame_period_s * 1e9))
        named = all(s is not None for s in stamps)
        t = np.array(stamps if named else [i * period for i in range(len(rows))], np.int64)
        steer = np.array([self.cfg.simulator.to_rad(_cell(self.log, ln, r, 3)) for ln, r in rows])
        speed = np.array([_cell(self.log, ln, r, 6) * MPH_TO_MPS for ln, r in rows])
        scan = Scan(frame_t=t, frame_source=np.zeros(len(rows), np.int32), names=[self.log.parent.name or self.log.name],
                    presynced={"steering": steer, "speed": speed}, info={"timestamps_from": "file names" if named else "row order"})
        if not named:
            scan.warnings.append(f"{self.log}: image names carry no timestamp; using row order x {self.cfg.simulator.frame_period_s} s")
        if progress:
            progress(self.scan_size())
        return scan


def _cell(path: Path, line: int, row: list[str], col: int) -> float:
    try:
        return float(row[col])
    except ValueError:
        raise InputError(f"{path}:{line}: column {col + 1} is not a number: {row[col]!r}") from None
