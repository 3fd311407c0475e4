"""Tell what kind of recording the inputs are and open its reader: :func:`open_recording`.

The one dispatcher over the formats of :mod:`vbp_live.recordings`; a new format adds its kind
to ``KINDS`` and its detection to :func:`_single` (or :func:`_bag_files` for multi-file drives).
"""

from __future__ import annotations

import os
from pathlib import Path

from vbp_live.core.errors import InputError
from vbp_live.recordings.bag import BagRecording
from vbp_live.recordings.base import Recording
from vbp_live.recordings.comma2k19 import CommaRecording, is_comma_segment
from vbp_live.recordings.dump import DUMP_FILES, DumpRecording
from vbp_live.recordings.folder import DATA_TXT, FolderRecording, find_label_file, is_label_csv
from vbp_live.recordings.options import RecordingOptions
from vbp_live.recordings.simlog import SimLogRecording
from vbp_live.recordings.tub import MANIFEST, META, TubRecording, find_tubs

KINDS = ("auto", "bag", "dump", "sim", "comma2k19", "tub", "folder")
_HELP = (
    "expected .bag files (or a folder of them), a bag-dump folder (camera.csv + steering.csv), "
    "a simulator driving_log.csv (or its folder), a comma2k19 segment folder, a donkeycar tub "
    "(or a folder of tubs), or a folder of frames with data.txt or a labels CSV"
)


def open_recording(inputs: list[str | os.PathLike[str]], options: RecordingOptions | None = None,
                   kind: str = "auto") -> Recording:
    """Detect the recording kind (or use ``kind``) and return its reader.

    Args:
        inputs: bag files / folders of bags, a bag-dump folder, a ``driving_log.csv`` or its
            folder, a comma2k19 segment folder, donkeycar tubs (or their ``manifest.json`` /
            ``meta.json``, or a folder of tubs), or a frame folder with ``data.txt`` or a labels CSV
            (or that label file).
        options: camera, steering and simulator options (default: the built-in defaults).
        kind: one of ``KINDS``; ``auto`` tells from the files.

    Raises:
        InputError: nothing to read, a missing path, or inputs of no known kind.
    """
    options = options or RecordingOptions()
    if not inputs:
        raise InputError(f"no inputs given; {_HELP}")
    paths = [Path(p) for p in inputs]
    for p in paths:
        if not p.exists():
            raise InputError(f"{p}: no such file or folder")
    if kind not in KINDS:
        raise InputError(f"unknown input kind {kind!r}; one of {KINDS}")
    bags = bag_files(paths)
    if bags:
        return BagRecording(bags, options.camera, options.steering)
    tubs = [t for p in paths for t in find_tubs(p)] if kind in ("auto", "tub") else []
    if tubs and (len(paths) == 1 or all(find_tubs(p) for p in paths)):
        return TubRecording(sorted(set(tubs)), options.tub)
    if len(paths) != 1:
        raise InputError(f"several inputs are only supported for .bag files and tubs, got {[str(p) for p in paths]}")
    return _single(paths[0], options, kind)


def detect_kind(p: Path) -> str | None:
    """The recording kind of one file or folder (never ``bag``), or None when it is none of them.

    Cheap: looks at names and CSV headers only. A folder counts as a frame folder only when its
    label file is ``data.txt`` or a CSV whose header names an image and an angle column (an image
    folder with some other CSV stays an image folder).
    """
    try:
        rec = _single(p, RecordingOptions(), "auto")
    except InputError:
        return None
    if isinstance(rec, FolderRecording) and rec.labels.name != DATA_TXT and not is_label_csv(rec.labels):
        return None
    return rec.kind


def bag_files(paths: list[Path]) -> list[Path]:
    """All bag files named (or inside named folders); [] when the inputs are not bags."""
    files: list[Path] = []
    other: list[Path] = []
    for p in paths:
        found = sorted(p.glob("*.bag")) if p.is_dir() else ([p] if p.suffix.lower() == ".bag" else [])
        if found:
            files.extend(found)
        else:
            other.append(p)
    if files and other:
        raise InputError(f"mixed inputs: {[str(p) for p in other]} are not bags (nor folders of bags)")
    return files


def _single(p: Path, options: RecordingOptions, kind: str) -> Recording:
    if p.is_file() and p.name in (MANIFEST, META) and kind in ("auto", "tub"):
        return TubRecording([p.parent], options.tub)
    if p.is_file() and (p.name == DATA_TXT or p.suffix == ".txt") and kind in ("auto", "folder"):
        return FolderRecording(p, options.folder)
    if p.is_file() and p.suffix == ".csv":
        if p.name in DUMP_FILES:
            return DumpRecording(p.parent, options.camera)
        if kind == "folder" or (kind == "auto" and is_label_csv(p, options.folder)):
            return FolderRecording(p, options.folder)
        return SimLogRecording(p, options.simulator)
    if p.is_dir():
        if (p / "driving_log.csv").is_file() and kind in ("auto", "sim"):
            return SimLogRecording(p / "driving_log.csv", options.simulator)
        if ((p / "camera.csv").is_file() or (p / "interpolated.csv").is_file()) and kind in ("auto", "dump"):
            return DumpRecording(p, options.camera)
        if is_comma_segment(p) and kind in ("auto", "comma2k19"):
            return CommaRecording(p)
        if kind in ("auto", "tub") and find_tubs(p):
            return TubRecording(find_tubs(p), options.tub)
        labels = find_label_file(p) if kind in ("auto", "folder") else None
        if labels is not None:
            return FolderRecording(labels, options.folder)
        if not any(p.iterdir()):
            raise InputError(f"{p}: the folder is empty; {_HELP}")
        if any(p.glob("*.catalog")):
            raise InputError(f"{p}: has donkeycar catalogs but no {MANIFEST} (a tub v2 needs its manifest)")
    raise InputError(f"{p}: cannot tell what this recording is; {_HELP}")
