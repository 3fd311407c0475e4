"""JSON records of recordings (donkeycar tubs), read so every error names the file and line.

A half-written last line (the car lost power mid-write) is reported to the caller instead of
raising, so it can be dropped and counted; any other unreadable line is a one-line
:class:`~vbp_live.core.errors.InputError` naming ``file:line``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from vbp_live.core.errors import InputError

MAX_LINE_BYTES = 1 << 20  # a tub record is ~200 bytes; anything far larger is not a record


def read_text(path: Path) -> str:
    """The file's text (UTF-8), or an InputError naming it."""
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 text (byte {e.start})") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror})") from None


def parse_json(path: Path, line: int, text: str) -> Any:
    """``json.loads(text)`` or an InputError naming ``path:line``."""
    if len(text) > MAX_LINE_BYTES:
        raise InputError(f"{path}:{line}: line of {len(text)} characters is not a record")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as e:
        raise InputError(f"{path}:{line}: not valid JSON ({str(e)[:80]})") from None


def json_lines(path: Path) -> tuple[list[tuple[int, Any]], bool]:
    """``(line_number, value)`` of every non-blank line, and whether a cut-off last line was left out."""
    text = read_text(path)
    lines = text.splitlines()
    out: list[tuple[int, Any]] = []
    for i, raw in enumerate(lines):
        if not raw.strip():
            continue
        last = i == len(lines) - 1 and not text.endswith(("\n", "\r"))
        try:
            out.append((i + 1, parse_json(path, i + 1, raw)))
        except InputError:
            if last:
                return out, True
            raise
    return out, False


def number_field(path: Path, line: int, rec: dict[str, Any], key: str, required: bool = True) -> float | None:
    """``rec[key]`` as a finite number (bools are not numbers), else an InputError naming ``path:line``."""
    if key not in rec and not required:
        return None
    v = _get(path, line, rec, key)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise InputError(f"{path}:{line}: {key!r} must be a number, got {json.dumps(v)[:40]}")
    if not math.isfinite(v):
        raise InputError(f"{path}:{line}: {key!r} is {v} (not a finite number)")
    return v


def str_field(path: Path, line: int, rec: dict[str, Any], key: str, required: bool = True) -> str | None:
    """``rec[key]`` as a string, else an InputError naming ``path:line``."""
    if key not in rec and not required:
        return None
    v = _get(path, line, rec, key)
    if not isinstance(v, str):
        raise InputError(f"{path}:{line}: {key!r} must be a string, got {json.dumps(v)[:40]}")
    return v


def _get(path: Path, line: int, rec: Any, key: str) -> Any:
    if not isinstance(rec, dict):
        raise InputError(f"{path}:{line}: a record must be a JSON object, got {json.dumps(rec)[:40]}")
    if key not in rec:
        raise InputError(f"{path}:{line}: record has no {key!r}")
    return rec[key]
