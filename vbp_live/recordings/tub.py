"""donkeycar tubs, v2 (``manifest.json`` + catalogs) and v1 (``meta.json`` + ``record_N.json``).

Tub v2 layout (donkeycar ``parts/datastore_v2.py``)::

    manifest.json                 five JSON lines: inputs, types, metadata, manifest metadata,
                                  catalogs {"paths", "current_index", "max_len", "deleted_indexes"}
    catalog_N.catalog             one JSON record per line: _index, _session_id, _timestamp_ms,
                                  cam/image_array, user/angle, user/throttle, user/mode
    catalog_N.catalog_manifest    line lengths (not needed to read)
    images/<i>_cam_image_array_.jpg

Tub v1: ``meta.json``, ``record_<N>.json`` (one JSON object each) and ``<N>_cam-image_array_.jpg``
beside them. ``user/angle`` is -1..+1 with +1 = full right; it becomes rad, positive = left, by
:class:`~vbp_live.recordings.options.TubConfig`. Tubs measure no speed. Records listed in
``deleted_indexes`` (in any order), records whose image is missing or empty and records the
optional throttle / mode filters reject are kept in the scan with a drop reason, so they are
counted in ``dropped.csv``. A folder of several tubs is one drive of several sessions, in time order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vbp_live.core.errors import InputError
from vbp_live.recordings.base import ImageFileRecording, Progress, Scan, image_file_reason
from vbp_live.recordings.jsonlines import json_lines, number_field, parse_json, read_text, str_field
from vbp_live.recordings.options import TubConfig, angle_to_rad

MANIFEST, META = "manifest.json", "meta.json"
IMAGE_KEY, ANGLE_KEY, THROTTLE_KEY, MODE_KEY = "cam/image_array", "user/angle", "user/throttle", "user/mode"
MAX_TIME_MS = 9.2e12  # int64 ns ends in 2262
_RECORD_V1 = re.compile(r"record_(\d+)\.json$")


def is_tub(folder: Path) -> bool:
    """True if ``folder`` is a tub (v2 ``manifest.json`` or v1 ``meta.json``)."""
    return (folder / MANIFEST).is_file() or (folder / META).is_file()


def find_tubs(folder: Path) -> list[Path]:
    """The tub itself, or the tubs directly inside ``folder`` (sorted by name); [] if none."""
    if is_tub(folder):
        return [folder]
    return sorted(p for p in folder.iterdir() if p.is_dir() and is_tub(p)) if folder.is_dir() else []


@dataclass
class TubRecord:
    """One record of a tub: where it came from and what it says."""

    where: str  # "file:line" for messages
    index: int
    t_ms: float | None
    image: Path
    angle: float
    throttle: float
    mode: str
    session: str
    deleted: bool = False


class TubRecording(ImageFileRecording):
    """One tub or a folder of tubs (sessions of one drive, put in time order).

    Args:
        tubs: tub folders (see :func:`find_tubs`).
        config: steering scale and the optional throttle / mode filters.
    """

    kind = "tub"

    def __init__(self, tubs: list[Path], config: TubConfig | None = None):
        super().__init__([t / (MANIFEST if (t / MANIFEST).is_file() else META) for t in tubs])
        self.tubs, self.config = tubs, config or TubConfig()

    def scan(self, progress: Progress | None = None) -> Scan:
        """Read every tub's records (no image is opened; missing / empty ones are found by size)."""
        per_tub, files, warnings = [], [], []
        for tub in self.tubs:
            recs, used, warn = read_tub(tub)
            per_tub.append(recs)
            files += used
            warnings += warn
        self.paths = files
        recs = [r for tub in sorted(per_tub, key=_first_time) for r in tub]
        if not recs:
            raise InputError(f"{', '.join(map(str, self.tubs))}: the tub has no records")
        scan = self._to_scan(recs)
        scan.warnings += warnings
        if progress:
            progress(self.scan_size())
        return scan

    def _to_scan(self, recs: list[TubRecord]) -> Scan:
        cfg = self.config
        self.files = [r.image for r in recs]
        names = list(dict.fromkeys(r.session for r in recs))
        source = np.array([names.index(r.session) for r in recs], np.int32)
        angle = np.array([r.angle for r in recs], np.float64)
        throttle = np.array([r.throttle for r in recs], np.float64)
        reason = np.array([_reason(r, cfg) for r in recs], dtype=object)
        scan = Scan(frame_t=_times(recs, cfg), frame_source=source, names=names,
                    presynced={"steering": angle_to_rad(angle, "normalized", cfg.positive_right, cfg.full_scale_deg)},
                    reason=reason, columns={"throttle": throttle},
                    info={"tubs": len(self.tubs), "sessions": len(names), "steering_unit_in": "normalized",
                          "full_scale_deg": cfg.full_scale_deg, "speed": "none (tubs carry no speed)"})
        return scan


def _first_time(recs: list[TubRecord]) -> float:
    return next((r.t_ms for r in recs if r.t_ms is not None), 0.0)


def _times(recs: list[TubRecord], cfg: TubConfig) -> np.ndarray:
    """(F,) ns: the records' ``_timestamp_ms``, or index x frame period when a tub has none."""
    if all(r.t_ms is not None for r in recs):
        return np.array([round(r.t_ms * 1000) * 1000 for r in recs], np.int64)  # ms -> us (exact) -> ns
    return np.array([round(i * cfg.frame_period_s * 1e9) for i in range(len(recs))], np.int64)


def _reason(r: TubRecord, cfg: TubConfig) -> str:
    """Why a record cannot be used ("" = it can): deleted, its image, then the optional filters."""
    if r.deleted:
        return "deleted"
    if why := image_file_reason(r.image):
        return why
    if cfg.min_throttle is not None and not r.throttle > cfg.min_throttle:
        return "throttle"
    if cfg.modes and r.mode not in cfg.modes:
        return "mode"
    return ""


def read_tub(tub: Path) -> tuple[list[TubRecord], list[Path], list[str]]:
    """Records of one tub in index order (deleted ones flagged), the files read, warnings."""
    if (tub / MANIFEST).is_file():
        return _read_v2(tub)
    return _read_v1(tub)


def _read_v2(tub: Path) -> tuple[list[TubRecord], list[Path], list[str]]:
    man = tub / MANIFEST
    catalogs, deleted = _manifest(man)
    recs: list[TubRecord] = []
    warnings: list[str] = []
    seen: dict[int, str] = {}
    for name in catalogs:
        path = tub / name
        lines, cut = json_lines(path)
        if cut:
            warnings.append(f"{path}: last line cut short (left out)")
        for ln, rec in lines:
            r = _v2_record(tub, path, ln, rec, len(seen))
            if r.index in seen:
                raise InputError(f"{r.where}: duplicated _index {r.index} (first at {seen[r.index]})")
            seen[r.index] = r.where
            r.deleted = r.index in deleted
            recs.append(r)
    recs.sort(key=lambda r: r.index)
    return recs, [man] + [tub / c for c in catalogs], warnings


def _manifest(man: Path) -> tuple[list[str], set[int]]:
    """Catalog file names and deleted indexes from the manifest's fifth line."""
    lines = [ln for ln in read_text(man).splitlines() if ln.strip()]
    if len(lines) < 5:
        raise InputError(f"{man}: expected 5 JSON lines (inputs, types, metadata, manifest metadata, catalogs), "
                         f"got {len(lines)}")
    meta = parse_json(man, 5, lines[4])
    paths = meta.get("paths") if isinstance(meta, dict) else None
    deleted = meta.get("deleted_indexes", []) if isinstance(meta, dict) else None
    if not isinstance(paths, list) or not all(isinstance(p, str) and p for p in paths):
        raise InputError(f"{man}:5: 'paths' must be a list of catalog file names")
    if not isinstance(deleted, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in deleted):
        raise InputError(f"{man}:5: 'deleted_indexes' must be a list of integers")
    for p in paths:
        if Path(p).name != p or not (man.parent / p).is_file():
            raise InputError(f"{man}:5: lists catalog {p!r}, which is not a file in {man.parent}")
    return paths, set(deleted)


def _v2_record(tub: Path, path: Path, line: int, rec: Any, position: int) -> TubRecord:
    where = f"{path}:{line}"
    index = number_field(path, line, rec, "_index", required=False)
    t_ms = _time_ms(path, line, number_field(path, line, rec, "_timestamp_ms", required=False))
    session = str_field(path, line, rec, "_session_id", required=False) or tub.name
    return TubRecord(where, position if index is None else _int(path, line, index), t_ms,
                     _image(tub / "images", path, line, rec), *_labels(path, line, rec),
                     session=session if session == tub.name else f"{tub.name}/{session}")


def _labels(path: Path, line: int, rec: dict[str, Any]) -> tuple[float, float, str]:
    angle = number_field(path, line, rec, ANGLE_KEY)
    throttle = number_field(path, line, rec, THROTTLE_KEY, required=False)
    mode = str_field(path, line, rec, MODE_KEY, required=False)
    return float(angle), float("nan") if throttle is None else float(throttle), mode or ""


def _image(folder: Path, path: Path, line: int, rec: dict[str, Any]) -> Path:
    name = str_field(path, line, rec, IMAGE_KEY)
    if not name or Path(name).name != name or any(ord(c) < 32 for c in name):
        raise InputError(f"{path}:{line}: {IMAGE_KEY!r} must be an image file name, got {name!r}")
    return folder / name


def _time_ms(path: Path, line: int, t_ms: float | None) -> float | None:
    """A record time in ms that fits int64 ns (until the year 2262), else an InputError."""
    if t_ms is not None and not abs(t_ms) < MAX_TIME_MS:
        raise InputError(f"{path}:{line}: time {t_ms} ms is out of range (|t| < {MAX_TIME_MS:.0f} ms)")
    return t_ms


def _int(path: Path, line: int, v: float) -> int:
    if v != int(v) or v < 0:
        raise InputError(f"{path}:{line}: '_index' must be a whole number >= 0, got {v}")
    return int(v)


def _read_v1(tub: Path) -> tuple[list[TubRecord], list[Path], list[str]]:
    meta = tub / META
    if not isinstance(parse_json(meta, 1, read_text(meta)), dict):
        raise InputError(f"{meta}:1: must be a JSON object (inputs, types)")
    found = sorted((int(m.group(1)), p) for p in tub.iterdir() if (m := _RECORD_V1.match(p.name)))
    recs = []
    for index, path in found:
        rec = parse_json(path, 1, read_text(path))
        t_ms = _time_ms(path, 1, number_field(path, 1, rec, "milliseconds", required=False))
        recs.append(TubRecord(f"{path}:1", index, t_ms, _image(tub, path, 1, rec), *_labels(path, 1, rec),
                              session=tub.name))
    return recs, [meta] + [p for _, p in found], []
