"""Udacity simulator logs: ``driving_log.csv`` with its ``IMG/`` folder.

``center,left,right,steering,throttle,brake,speed`` with or without a header row, spaces after
commas, relative or absolute paths (also Windows ones): images are found by file name in the
``IMG/`` folder beside the log. Steering is normalized to [-1, 1] and mapped to radians by
:class:`~vbp_live.recordings.options.SimulatorConfig`; speed is in mph and converted to m/s.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from vbp_live.core.errors import InputError
from vbp_live.recordings.base import ImageFileRecording, Progress, Scan
from vbp_live.recordings.csvrows import member_file, number, read_csv_lines
from vbp_live.recordings.options import SimulatorConfig

MPH_TO_MPS = 0.44704
_SIM_STAMP = re.compile(r"(\d{4})_(\d{2})_(\d{2})_(\d{2})_(\d{2})_(\d{2})_(\d{3})")


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


def image_in_img_folder(log_dir: Path, cell: str, where: str = "") -> Path:
    """Resolve a logged image path (relative, absolute, Windows) by file name in ``IMG/``.

    Only the file name counts, so the path cannot point elsewhere; the file must be a regular
    file (no link, FIFO or device) in ``IMG/`` (:func:`~vbp_live.recordings.csvrows.member_file`).

    Raises:
        InputError: an empty name, ``..``, or a file that is not a regular one.
    """
    name = re.split(r"[\\/]", cell.strip())[-1]
    if name in ("", ".", ".."):
        raise InputError(f"{where or log_dir}: image path {cell!r} names no file; not read")
    return member_file(log_dir, f"IMG/{name}", where or str(log_dir))


class SimLogRecording(ImageFileRecording):
    """A Udacity simulator ``driving_log.csv`` with its ``IMG/`` folder.

    Args:
        log: the ``driving_log.csv``.
        simulator: how the log's normalized steering maps to radians.
    """

    kind = "sim"

    def __init__(self, log: Path, simulator: SimulatorConfig | None = None):
        super().__init__([log])
        self.log, self.simulator = log, simulator or SimulatorConfig()

    def _rows(self) -> list[tuple[int, list[str]]]:
        rows = read_csv_lines(self.log)
        if rows and rows[0][1] and rows[0][1][0].lower() == "center":
            rows = rows[1:]
        if not rows:
            raise InputError(f"{self.log}: no rows (empty driving log)")
        for ln, r in rows:
            if len(r) < 7:
                raise InputError(f"{self.log}:{ln}: expected 7 columns center,left,right,steering,throttle,brake,"
                                 f"speed; got {len(r)}")
        return rows

    def scan(self, progress: Progress | None = None) -> Scan:
        """Read the log: every row is one frame already paired with steering and speed."""
        rows = self._rows()
        d = self.log.parent
        self.files = [image_in_img_folder(d, r[0], f"{self.log}:{ln}") for ln, r in rows]
        stamps = [sim_timestamp(p.name) for p in self.files]
        period = int(round(self.simulator.frame_period_s * 1e9))
        named = all(s is not None for s in stamps)
        t = np.array(stamps if named else [i * period for i in range(len(rows))], np.int64)
        steer = np.array([self.simulator.to_rad(_steering(self.log, ln, r)) for ln, r in rows])
        speed = np.array([_cell(self.log, ln, r, 6) * MPH_TO_MPS for ln, r in rows])
        scan = Scan(frame_t=t, frame_source=np.zeros(len(rows), np.int32),
                    names=[self.log.parent.name or self.log.name], presynced={"steering": steer, "speed": speed},
                    info={"timestamps_from": "file names" if named else "row order"})
        if not named:
            period_s = self.simulator.frame_period_s
            scan.warnings.append(f"{self.log}: image names carry no timestamp; using row order x {period_s} s")
        if progress:
            progress(self.scan_size())
        return scan


def _cell(path: Path, line: int, row: list[str], col: int) -> float:
    return float(number(path, line, row[col], str(col + 1)))


def _steering(path: Path, line: int, row: list[str]) -> float:
    """The normalized steering cell; outside [-1, 1] is an error (NaN stays: the frame is dropped and counted)."""
    v = _cell(path, line, row, 3)
    if abs(v) > 1.0 + 1e-6:
        raise InputError(f"{path}:{line}: steering {row[3]} is outside the simulator's normalized range [-1, 1]")
    return v
