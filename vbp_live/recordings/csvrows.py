"""CSV files of recordings and the files their rows name, read so every error names the file and line.

* Text: UTF-8, with or without a byte-order mark. UTF-16/32 and other encodings (Latin-1,
  Windows-1252) are refused with one line naming the file and the encoding problem.
* Size: a CSV larger than :data:`MAX_CSV_BYTES` or with a field over 128 KB is refused.
* Numbers: a strict ASCII grammar (``-0.5``, ``1e-3``, ``nan``); ``5_000``, ``٣`` (Arabic-Indic
  digits), ``0x10`` or ``1,5`` are errors naming file:line:column, though Python's ``float``
  would take some of them. Timestamps are integer ns in ``[0, 2**62)``.
* Paths: a row may only name a regular file inside the recording's folder
  (:func:`member_file`): no absolute paths, no ``..`` out of it, no symbolic links, FIFOs or
  devices.
"""

from __future__ import annotations

import codecs
import csv
import io
import os
import re
import stat
from pathlib import Path

from vbp_live.core.errors import InputError

MAX_CSV_BYTES = 512 * 1024 * 1024
MAX_TIMESTAMP_NS = 2**62  # year 2116: far from int64 overflow even after differences and offsets
_FLOAT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[+-]?(?:nan|inf|infinity)",
                    re.ASCII | re.IGNORECASE)
_INT = re.compile(r"[+-]?[0-9]+", re.ASCII)
_BOMS = ((codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32"), (codecs.BOM_UTF16_LE, "UTF-16"),
         (codecs.BOM_UTF16_BE, "UTF-16"))


def read_text(path: Path, max_bytes: int = MAX_CSV_BYTES) -> str:
    """The text of a UTF-8 file (a UTF-8 byte-order mark is dropped).

    Raises:
        InputError: not a regular file, larger than ``max_bytes``, or not UTF-8 (naming the encoding problem).
    """
    data = _read_regular(path, max_bytes)
    for bom, name in _BOMS:
        if data.startswith(bom):
            raise InputError(f"{path}: the file is {name} encoded (byte-order mark {bom.hex()}); save it as UTF-8")
    if b"\x00" in data[:4096]:
        raise InputError(f"{path}: the file contains NUL bytes (UTF-16 without a byte-order mark, or binary); "
                         "save it as UTF-8 text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise InputError(f"{path}:{line}: not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}; "
                         "Latin-1 / Windows-1252?); save it as UTF-8") from None


def _read_regular(path: Path, max_bytes: int) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise InputError(f"{path}: not a regular file (a FIFO, device or folder); not read")
        if st.st_size > max_bytes:
            raise InputError(f"{path}: {st.st_size} bytes, more than the {max_bytes} a recording's CSV may have")
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read(max_bytes + 1)
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror})") from None
    finally:
        os.close(fd)


def _records(path: Path) -> list[tuple[int, list[str]]]:
    """``(line_number, cells)`` of every non-blank CSV record, cells stripped."""
    reader = csv.reader(io.StringIO(read_text(path), newline=""), skipinitialspace=True)
    out: list[tuple[int, list[str]]] = []
    start = 1
    try:
        for r in reader:
            cells = [c.strip() for c in r]
            if any(cells):
                out.append((start, cells))
            start = reader.line_num + 1
    except csv.Error as e:
        limit = csv.field_size_limit()
        why = f"a field is longer than {limit // 1024} KB" if "field limit" in str(e) else str(e)
        raise InputError(f"{path}:{start}: {why}") from None
    return out


def read_csv_rows(path: Path, required: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    """``(line_number, row)`` of a CSV with a header row; checks the required columns.

    A row with fewer cells than the header, or with more non-empty ones, is an error naming its line.
    """
    records = _records(path)
    cols = records[0][1] if records else []
    missing = [c for c in required if c not in cols]
    if missing:
        raise InputError(f"{path}: missing column(s) {missing}; columns: {cols}")
    rows = []
    for ln, cells in records[1:]:
        if len(cells) < len(cols) or any(cells[len(cols) :]):
            raise InputError(f"{path}:{ln}: {len(cells)} cells, the header has {len(cols)} columns")
        rows.append((ln, dict(zip(cols, cells[: len(cols)], strict=True))))
    return rows


def read_csv_lines(path: Path) -> list[tuple[int, list[str]]]:
    """``(line_number, cells)`` of a CSV without a header, blank lines left out, cells stripped."""
    return _records(path)


def number(path: Path, line: int, value: str | None, column: str, kind: type = float) -> float | int:
    """``value`` as a ``kind`` (float or int) by a strict ASCII grammar, or an InputError naming file, line, column."""
    text = (value or "").strip()
    grammar = _INT if kind is int else _FLOAT
    if not grammar.fullmatch(text):
        what = "an integer in ASCII digits" if kind is int else "ASCII digits, '.', 'e', or nan/inf"
        raise InputError(f"{path}:{line}: column {column} is not a number: {value!r} (expected {what})")
    return int(text) if kind is int else float(text)


def timestamp_ns(path: Path, line: int, value: str | None, column: str) -> int:
    """An integer ns timestamp in ``[0, 2**62)``; anything else is an InputError naming file:line."""
    t = int(number(path, line, value, column, int))
    if not 0 <= t < MAX_TIMESTAMP_NS:
        raise InputError(f"{path}:{line}: column {column} = {t} is not a timestamp in ns since 1970 "
                         f"(0 <= t < 2**62); it would overflow 64-bit time arithmetic")
    return t


def member_file(folder: Path, name: str, where: str) -> Path:
    """The file a CSV row names, checked to be inside ``folder`` and not a link, FIFO or device.

    ``name`` is relative to ``folder`` (``\\`` read as ``/``). A missing file is returned as is
    (counted later as a missing image); everything else that is not a regular file in the
    folder is refused.

    Args:
        folder: the recording's folder.
        name: the path as written in the CSV.
        where: ``file:line`` for the message.

    Raises:
        InputError: an empty, absolute or escaping path, or one that is a link, FIFO, device or folder.
    """
    rel = name.replace("\\", "/")
    root = os.path.realpath(folder)
    if not rel or rel.startswith("/") or re.match(r"[A-Za-z]:", rel):
        raise InputError(f"{where}: image path {name!r} must be relative to {folder}; not read")
    path = os.path.normpath(os.path.join(root, rel))
    if not path.startswith(root.rstrip(os.sep) + os.sep):
        raise InputError(f"{where}: image path {name!r} leaves the recording folder {folder}; not read")
    if os.path.realpath(path) != path:
        raise InputError(f"{where}: image path {name!r} goes through a symbolic link; only regular files inside "
                         f"{folder} are read")
    inside = folder / os.path.relpath(path, root)
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return inside
    except OSError as e:
        raise InputError(f"{where}: image path {name!r}: {e.strerror}") from None
    if not stat.S_ISREG(mode):
        raise InputError(f"{where}: image path {name!r} is not a regular file (a FIFO, device or folder); not read")
    return inside
