"""A folder of frames with a label file: SullyChen's ``data.txt`` or a CSV with a header.

``data.txt``: one line per frame, ``<image> <angle>[,<date time>]`` (``0.jpg 12.5``), image
names relative to the file. CSV: a header naming the image and angle columns (and optionally
time and speed); see :class:`~vbp_live.recordings.options.FolderConfig` for the names looked for.
The angle's unit and sign, and the frame rate used when there is no time column (frames then
come in natural file-name order: ``2.jpg`` before ``10.jpg``), come from that config. Rows whose
image is missing or empty are kept with a drop reason; a malformed row, a non-finite angle or an
image named twice is an :class:`~vbp_live.core.errors.InputError` naming the file and line.
"""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path

import numpy as np

from vbp_live.core.errors import InputError
from vbp_live.recordings.base import ImageFileRecording, Progress, Scan, image_file_reason
from vbp_live.recordings.csvrows import number
from vbp_live.recordings.options import FolderConfig, angle_to_rad

DATA_TXT = "data.txt"
IMAGE_COLUMNS = ("image", "filename", "frame", "path", "file", "image_path")
ANGLE_COLUMNS = ("angle", "steering", "steering_angle", "steer", "angle_deg")
TIME_COLUMNS = ("time", "timestamp", "t")
SPEED_COLUMNS = ("speed", "speed_mps")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
OTHER_CSV = ("driving_log.csv", "camera.csv", "steering.csv", "interpolated.csv")  # other readers' files
TIME_UNITS = {"s": 1e9, "ms": 1e6, "us": 1e3, "ns": 1.0}


def natural_key(name: str) -> list[int | str]:
    """Sort key: digit runs compare as numbers (``2.jpg`` < ``10.jpg``)."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def find_label_file(folder: Path) -> Path | None:
    """``data.txt``, the one CSV in ``folder`` whose header names an image and an angle column, or
    the only CSV there beside images (whose reading then says what its header lacks)."""
    if (folder / DATA_TXT).is_file():
        return folder / DATA_TXT
    csvs = [p for p in sorted(folder.glob("*.csv")) if p.name not in OTHER_CSV]
    found = [p for p in csvs if is_label_csv(p)]
    if len(found) == 1:
        return found[0]
    has_images = any(p.suffix.lower() in IMAGE_SUFFIXES for p in folder.iterdir())
    return csvs[0] if not found and len(csvs) == 1 and has_images else None


def is_label_csv(path: Path, config: FolderConfig | None = None) -> bool:
    """True if the CSV's header names an image column and an angle column."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            header = [c.strip() for c in next(csv.reader(f), [])]
    except (OSError, UnicodeDecodeError, csv.Error):
        return False
    cfg = config or FolderConfig()
    return _column(header, cfg.image_column, IMAGE_COLUMNS) is not None and \
        _column(header, cfg.angle_column, ANGLE_COLUMNS) is not None


def _column(header: list[str], chosen: str | None, usual: tuple[str, ...]) -> str | None:
    names = [chosen] if chosen else list(usual)
    lower = {c.lower(): c for c in header}
    return next((lower[n.lower()] for n in names if n.lower() in lower), None)


class FolderRecording(ImageFileRecording):
    """Frames in a folder, labelled by ``data.txt`` or a CSV with a header.

    Args:
        labels: the label file.
        config: unit, sign, frame rate and column names.
    """

    kind = "folder"

    def __init__(self, labels: Path, config: FolderConfig | None = None):
        super().__init__([labels])
        self.labels, self.config = labels, config or FolderConfig()

    def scan(self, progress: Progress | None = None) -> Scan:
        """Read the label file; images are only looked at for their size."""
        rows = self._read_txt() if self.labels.suffix.lower() == ".txt" else self._read_csv()
        if not rows:
            raise InputError(f"{self.labels}: no labelled frames")
        _check_unique(self.labels, rows)
        timed = rows[0].t_ns is not None
        if not timed:
            rows.sort(key=lambda r: natural_key(r.name))
        self.files = [self.labels.parent / r.name for r in rows]
        cfg = self.config
        period = 1e9 / cfg.fps
        t = np.array([r.t_ns if timed else round(i * period) for i, r in enumerate(rows)], np.int64)
        presynced = {"steering": angle_to_rad(np.array([r.angle for r in rows]), cfg.angle_unit,
                                              cfg.positive_right, cfg.full_scale_deg)}
        if rows[0].speed is not None:
            presynced["speed"] = np.array([r.speed for r in rows], np.float64)
        scan = Scan(frame_t=t, frame_source=np.zeros(len(rows), np.int32), names=[self.labels.parent.name],
                    presynced=presynced, reason=np.array([image_file_reason(f) for f in self.files], dtype=object),
                    info={"labels": self.labels.name, "steering_unit_in": cfg.angle_unit,
                          "timestamps_from": "time column" if timed else f"file-name order at {cfg.fps} fps"})
        if progress:
            progress(self.scan_size())
        return scan

    def _read_txt(self) -> list[_Row]:
        rows = []
        for ln, text in _text_lines(self.labels):
            parts = text.split()
            if len(parts) < 2:
                raise InputError(f"{self.labels}:{ln}: expected '<image> <angle>', got {text[:60]!r}")
            angle = _finite(self.labels, ln, number(self.labels, ln, parts[1].split(",")[0], "angle"))
            rows.append(_Row(ln, _image_name(self.labels, ln, parts[0]), angle))
        return rows

    def _read_csv(self) -> list[_Row]:
        header, lines = _csv(self.labels)
        cfg = self.config
        cols = [_column(header, cfg.image_column, IMAGE_COLUMNS), _column(header, cfg.angle_column, ANGLE_COLUMNS),
                _column(header, cfg.time_column, TIME_COLUMNS), _column(header, cfg.speed_column, SPEED_COLUMNS)]
        if cols[0] is None or cols[1] is None:
            raise InputError(f"{self.labels}: the header {header} names no image column "
                             f"({cfg.image_column or '/'.join(IMAGE_COLUMNS)}) or angle column "
                             f"({cfg.angle_column or '/'.join(ANGLE_COLUMNS)})")
        if cfg.time_unit not in TIME_UNITS:
            raise InputError(f"folder.time_unit must be one of {list(TIME_UNITS)}, got {cfg.time_unit!r}")
        idx = [None if c is None else header.index(c) for c in cols]
        return [self._csv_row(ln, cells, idx, header) for ln, cells in lines]

    def _csv_row(self, ln: int, cells: list[str], idx: list[int | None], header: list[str]) -> _Row:
        p = self.labels
        need = max(i for i in idx if i is not None) + 1
        if len(cells) < need:
            raise InputError(f"{p}:{ln}: expected at least {need} columns ({', '.join(header[:need])}), "
                             f"got {len(cells)}")
        values = [None if i is None else _finite(p, ln, number(p, ln, cells[i], header[i])) for i in idx[1:]]
        angle, t, speed = values
        t_ns = None if t is None else t * TIME_UNITS[self.config.time_unit]
        if t_ns is not None and not abs(t_ns) < 9.2e18:
            raise InputError(f"{p}:{ln}: time {t} {self.config.time_unit} is out of range (int64 ns ends in 2262)")
        return _Row(ln, _image_name(p, ln, cells[idx[0]]), angle, None if t_ns is None else round(t_ns), speed)


class _Row:
    """One labelled frame: line, image (relative name), angle, time (ns) and speed where given."""

    def __init__(self, line: int, name: str, angle: float, t_ns: int | None = None, speed: float | None = None):
        self.line, self.name, self.angle, self.t_ns, self.speed = line, name, angle, t_ns, speed


def _text_lines(path: Path) -> list[tuple[int, str]]:
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 text (byte {e.start})") from None
    return [(i + 1, t.strip()) for i, t in enumerate(text.splitlines()) if t.strip() and not t.startswith("#")]


def _csv(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Header and ``(line, cells)`` rows of a CSV, blank rows left out."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = [c.strip() for c in next(reader, [])]
            rows = [(reader.line_num, [c.strip() for c in r]) for r in reader if any(c.strip() for c in r)]
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 text (byte {e.start})") from None
    except csv.Error as e:
        raise InputError(f"{path}: not a readable CSV ({e})") from None
    return header, rows


def _image_name(path: Path, line: int, cell: str) -> str:
    """A relative image path inside the label file's folder (no ``..``, not absolute)."""
    name = cell.strip().replace("\\", "/")
    if any(ord(c) < 32 for c in name):
        raise InputError(f"{path}:{line}: image name {cell[:60]!r} contains control characters")
    if not name or name.startswith("/") or ".." in Path(name).parts or re.match(r"^[A-Za-z]:", name):
        raise InputError(f"{path}:{line}: image {cell[:60]!r} must be a path relative to {path.parent}")
    return name


def _finite(path: Path, line: int, v: float) -> float:
    if not math.isfinite(v):
        raise InputError(f"{path}:{line}: {v} is not a finite number")
    return float(v)


def _check_unique(path: Path, rows: list[_Row]) -> None:
    seen: dict[str, int] = {}
    for r in rows:
        if r.name in seen:
            raise InputError(f"{path}:{r.line}: image {r.name!r} is listed twice (first on line {seen[r.name]})")
        seen[r.name] = r.line
