"""Seeded mutators for bag-dump folders and simulator logs: CSV text and the files rows name.

:func:`mutate_dump` and :func:`mutate_simlog` copy a valid seed recording and apply one
mutation, chosen by the ``random.Random``: truncation, encoding changes (UTF-16/32, Latin-1,
BOM), huge fields, odd numbers (``5_000``, Arabic-Indic digits, int64 overflow, out-of-range
steering), path tricks (``/dev/zero``, ``../../etc/passwd``, FIFOs, symbolic links), broken rows,
or damage to one image (:mod:`fuzzing.image_mutators`). Each returns the path to hand the
reader and the mutation's name.
"""

from __future__ import annotations

import csv
import io
import os
import random
import shutil
from pathlib import Path

from fuzzing.image_mutators import mutate_image

ODD_NUMBERS = [
    "5_000", "٣", "١٢٣", "１２", "0x10", "1,5", "1e999", "-1e999", "nan", "inf", "-inf", "9" * 30,
    "-9223372036854775809", "9223372036854775808", "1.5e18", "", " ", "--1", "+", ".", "e5", "5.0", "-32",
    "1e-400", "½", "\u00a01", "0b101",
]
PATH_TRICKS = [
    "/dev/zero", "../../etc/passwd", "/etc/passwd", "..", ".", "", "C:\\Windows\\..\\..\\etc\\passwd",
    "center/../../../etc/shadow", "\\\\server\\share\\x.jpg", "IMG/", "nul", "a" * 300, "center/\x00.jpg",
]


def _rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline="")))


def _write(rows: list[list[str]]) -> str:
    out = io.StringIO(newline="")
    csv.writer(out).writerows(rows)
    return out.getvalue()


def _cell_edit(text: str, rng: random.Random, values: list[str], columns: list[int] | None = None) -> str:
    rows = _rows(text)
    body = [r for r in rows if r]
    if not body:
        return text
    row = rng.choice(body)
    col = rng.choice(columns) if columns else rng.randrange(len(row))
    if col < len(row):
        row[col] = rng.choice(values)
    return _write(rows)


def mutate_csv_text(data: bytes, rng: random.Random, path_cols: list[int], number_cols: list[int]) -> tuple[bytes, str]:
    """One text-level mutation of a CSV: ``(bytes, name)``."""
    text = data.decode("utf-8")
    name = rng.choice(["truncate", "utf16", "utf32", "latin1", "bom", "nul", "huge_field", "odd_number",
                       "path_trick", "extra_cell", "missing_cell", "blank_lines", "crlf", "cr_only", "quote",
                       "no_header", "duplicate_rows", "shuffle_rows", "steering_range", "empty"])
    if name == "truncate":
        return data[: rng.randrange(len(data) + 1)], name
    if name in ("utf16", "utf32"):
        return text.encode("utf-16" if name == "utf16" else "utf-32"), name
    if name == "latin1":
        return _cell_edit(text, rng, ["café.jpg", "Ärger", "ñ"], path_cols).encode("latin-1", "replace"), name
    if name == "bom":
        return b"\xef\xbb\xbf" + data, name
    if name == "nul":
        p = rng.randrange(len(data) + 1)
        return data[:p] + b"\x00" + data[p:], name
    if name == "huge_field":
        return _cell_edit(text, rng, ["x" * rng.choice([131_073, 200_000, 1_000_000])]).encode(), name
    if name == "odd_number":
        return _cell_edit(text, rng, ODD_NUMBERS, number_cols).encode(), name
    if name == "steering_range":
        return _cell_edit(text, rng, ["5.0", "-1.5", "1.0000001", "1e300"], number_cols).encode(), name
    if name == "path_trick":
        return _cell_edit(text, rng, PATH_TRICKS, path_cols).encode(), name
    rows = _rows(text)
    if name in ("extra_cell", "missing_cell") and rows:
        row = rng.choice(rows)
        if name == "extra_cell":
            row.append(rng.choice(["", "x", "1"]))
        elif row:
            row.pop()
    elif name == "blank_lines":
        rows.insert(rng.randrange(len(rows) + 1), [])
    elif name == "no_header" and rows:
        rows = rows[1:]
    elif name == "duplicate_rows" and rows:
        r = rng.choice(rows)
        rows.insert(rng.randrange(len(rows) + 1), list(r))
    elif name == "shuffle_rows":
        rng.shuffle(rows)
    elif name == "empty":
        rows = []
    out = _write(rows)
    if name == "crlf":
        out = out.replace("\r\n", "\n").replace("\n", "\r\n")
    elif name == "cr_only":
        out = out.replace("\r\n", "\r")
    elif name == "quote":
        p = rng.randrange(len(out) + 1)
        out = out[:p] + '"' + out[p:]
    return out.encode(), name


def _file_trick(folder: Path, target: Path, rng: random.Random) -> str:
    """Replace an image the CSV names with a FIFO, a symbolic link, a folder or an empty file."""
    name = rng.choice(["fifo", "symlink_out", "symlink_in", "folder", "empty_file"])
    target.unlink(missing_ok=True)
    if name == "fifo":
        os.mkfifo(target)
    elif name == "symlink_out":
        target.symlink_to(rng.choice(["/dev/zero", "/etc/passwd", "/nonexistent"]))
    elif name == "symlink_in":
        other = next((p for p in target.parent.iterdir() if p.is_file() and not p.is_symlink()), folder)
        target.symlink_to(other)
    elif name == "folder":
        target.mkdir()
    else:
        target.write_bytes(b"")
    return name


def _damage_image(images: list[Path], rng: random.Random) -> str:
    img = rng.choice(images)
    data, what = mutate_image(img.read_bytes(), rng)
    img.write_bytes(data)
    return f"image:{what}"


def mutate_dump(src: Path, dst: Path, rng: random.Random) -> tuple[Path, str]:
    """Copy the dump folder ``src`` to ``dst`` and mutate one CSV, one image or one file: ``(dst, name)``."""
    shutil.copytree(src, dst, symlinks=True)
    images = sorted((dst / "center").glob("*.jpg"))
    roll = rng.random()
    if roll < 0.2 and images:
        return dst, _damage_image(images, rng)
    if roll < 0.3 and images:
        return dst, "file:" + _file_trick(dst, rng.choice(images), rng)
    csvs = sorted(p for p in dst.glob("*.csv"))
    target = rng.choice(csvs)
    header = _rows(target.read_text())[0]
    path_cols = [i for i, c in enumerate(header) if c.strip() == "filename"] or [0]
    number_cols = [i for i, c in enumerate(header) if c.strip() in ("timestamp", "angle", "speed", "seq")] or [0]
    data, name = mutate_csv_text(target.read_bytes(), rng, path_cols, number_cols)
    target.write_bytes(data)
    return dst, f"{target.name}:{name}"


def mutate_simlog(src: Path, dst: Path, rng: random.Random) -> tuple[Path, str]:
    """Copy the simulator folder ``src`` (``driving_log.csv`` + ``IMG/``) and mutate it: ``(log, name)``."""
    shutil.copytree(src, dst, symlinks=True)
    log = dst / "driving_log.csv"
    images = sorted((dst / "IMG").glob("*.jpg"))
    roll = rng.random()
    if roll < 0.2 and images:
        return log, _damage_image(images, rng)
    if roll < 0.3 and images:
        return log, "file:" + _file_trick(dst, rng.choice(images), rng)
    data, name = mutate_csv_text(log.read_bytes(), rng, [0, 1, 2], [3, 4, 5, 6])
    log.write_bytes(data)
    return log, name
