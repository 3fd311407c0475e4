"""CSV files of recordings, read with line numbers so every error names the file and line."""

from __future__ import annotations

import csv
from pathlib import Path

from vbp_live.core.errors import InputError


def read_csv_rows(path: Path, required: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    """``(line_number, row)`` of a CSV with a header row; checks the required columns."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f, skipinitialspace=True)
        cols = [c.strip() for c in (reader.fieldnames or [])]
        missing = [c for c in required if c not in cols]
        if missing:
            raise InputError(f"{path}: missing column(s) {missing}; columns: {cols}")
        return [(i + 2, {k.strip(): (v or "").strip() for k, v in r.items() if k}) for i, r in enumerate(reader)]


def read_csv_lines(path: Path) -> list[tuple[int, list[str]]]:
    """``(line_number, cells)`` of a CSV without a header, blank lines left out, cells stripped."""
    with open(path, newline="", encoding="utf-8") as f:
        return [(i + 1, [c.strip() for c in r]) for i, r in enumerate(csv.reader(f)) if any(c.strip() for c in r)]


def number(path: Path, line: int, value: str | None, column: str, kind: type = float) -> float | int:
    """``kind(value)``, or an InputError naming the file, line and column."""
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise InputError(f"{path}:{line}: column {column} is not a number: {value!r}") from None
