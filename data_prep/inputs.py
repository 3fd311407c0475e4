"""Tell what kind of recording the inputs are and open the matching source."""

from __future__ import annotations

import os
from pathlib import Path

from data_prep.config import PrepConfig
from data_prep.source import InputError, Source
from data_prep.source_bag import BagSource
from data_prep.source_comma import CommaSource, is_comma_segment
from data_prep.source_csv import DumpSource, SimSource

KINDS = ("auto", "bag", "dump", "sim", "comma2k19")
_HELP = (
    "expected .bag files (or a folder of them), a bag-dump folder (camera.csv + steering.csv), "
    "a simulator driving_log.csv (or its folder) or a comma2k19 segment folder"
)


def open_source(inputs: list[str | os.PathLike[str]], cfg: PrepConfig, kind: str = "auto") -> Source:
    """Detect the recording kind (or use ``kind``) and return its :class:`Source`."""
    if not inputs:
        raise InputError(f"no inputs given; {_HELP}")
    paths = [Path(p) for p in inputs]
    for p in paths:
        if not p.exists():
            raise FileNotFoundError(f"{p}: no such file or folder")
    if kind not in KINDS:
        raise InputError(f"unknown input kind {kind!r}; one of {KINDS}")
    bags = _bag_files(paths)
    if bags:
        return BagSource(bags, cfg)
    if len(paths) != 1:
        raise InputError(f"several inputs are only supported for .bag files, got {[str(p) for p in paths]}")
    return _single(paths[0], cfg, kind)


def _bag_files(paths: list[Path]) -> list[Path]:
    """All bag files named (or inside named folders); [] when the inputs are not bags."""
    files: list[Path] = []
    other: list[Path] = []
    for p in paths:
        found = sorted(p.glob("*.bag")) if p.is_dir() else ([p] if p.suffix == ".bag" else [])
        if found:
            files.extend(found)
        else:
            other.append(p)
    if files and other:
        raise InputError(f"mixed inputs: {[str(p) for p in other]} are not bags (nor folders of bags)")
    return files


def _single(p: Path, cfg: PrepConfig, kind: str) -> Source:
    if p.is_file() and p.suffix == ".csv":
        if p.name in ("camera.csv", "steering.csv", "interpolated.csv"):
            return DumpSource(p.parent, cfg)
        return SimSource(p, cfg)
    if p.is_dir():
        if (p / "driving_log.csv").is_file() and kind in ("auto", "sim"):
            return SimSource(p / "driving_log.csv", cfg)
        if ((p / "camera.csv").is_file() or (p / "interpolated.csv").is_file()) and kind in ("auto", "dump"):
            return DumpSource(p, cfg)
        if is_comma_segment(p) and kind in ("auto", "comma2k19"):
            return CommaSource(p)
        if not any(p.iterdir()):
            raise InputError(f"{p}: the folder is empty; {_HELP}")
    raise InputError(f"{p}: cannot tell what this recording is; {_HELP}")
