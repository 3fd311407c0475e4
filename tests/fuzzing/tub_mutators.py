"""Seeded mutators for donkeycar tubs (v2 and v1): what real tubs and careless edits do to them.

``mutate_tub(src, dst, rng)`` copies the tub ``src`` to ``dst`` and applies one to three
mutations chosen by ``rng``: cut or garbled JSON lines, values of the wrong type, NaN and
infinities, removed keys, duplicated or odd ``_index`` values, odd ``deleted_indexes``, a
manifest listing absent catalogs or missing lines, missing / empty / cut images, non-UTF-8 bytes.
A case is reproduced by its seed alone.
"""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fuzzing.image_mutators import damage_image_files

ODD_VALUES: list[Any] = [None, True, "0.5", "", [], {}, [0.1], -1e308, 1e308, 10**30, -(10**30), 2**63, "NaN",
                         "../x.jpg", "/etc/passwd", "a" * 3000, 0, -1, 1.5]
ODD_JSON = ["NaN", "Infinity", "-Infinity", "1e999", "null", "[[[[[[[[]]]]]]]]", '"\\ud800"', "{}", "tru"]
KEYS = ["_index", "_timestamp_ms", "_session_id", "cam/image_array", "user/angle", "user/throttle", "user/mode"]


def _lines(path: Path) -> list[str]:
    return path.read_bytes().decode("utf-8", "replace").splitlines()


def _write_lines(path: Path, lines: list[str]) -> None:
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode("utf-8", "surrogatepass"))


def _catalog(tub: Path, rng: random.Random) -> Path | None:
    cats = sorted(tub.glob("*.catalog"))
    return rng.choice(cats) if cats else None


def _edit_record(tub: Path, rng: random.Random, fn: Callable[[dict[str, Any]], None]) -> None:
    cat = _catalog(tub, rng)
    if cat is None:
        return
    lines = _lines(cat)
    if not lines:
        return
    k = rng.randrange(len(lines))
    try:
        rec = json.loads(lines[k])
    except ValueError:
        return
    if isinstance(rec, dict):
        fn(rec)
        lines[k] = json.dumps(rec)
        _write_lines(cat, lines)


def _wrong_type(tub: Path, rng: random.Random) -> None:
    _edit_record(tub, rng, lambda r: r.__setitem__(rng.choice(KEYS), rng.choice(ODD_VALUES)))


def _remove_key(tub: Path, rng: random.Random) -> None:
    _edit_record(tub, rng, lambda r: r.pop(rng.choice(KEYS), None))


def _odd_json_value(tub: Path, rng: random.Random) -> None:
    cat = _catalog(tub, rng)
    if cat is None or not _lines(cat):
        return
    lines = _lines(cat)
    k = rng.randrange(len(lines))
    key = rng.choice(KEYS)
    lines[k] = lines[k].replace(f'"{key}": ', f'"{key}": {rng.choice(ODD_JSON)}, "x{key}": ', 1)
    _write_lines(cat, lines)


def _garble_line(tub: Path, rng: random.Random) -> None:
    cat = _catalog(tub, rng) if rng.random() < 0.8 else tub / "manifest.json"
    if cat is None or not cat.exists() or not _lines(cat):
        return
    lines = _lines(cat)
    k = rng.randrange(len(lines))
    s = lines[k]
    cut = rng.randrange(len(s) + 1)
    lines[k] = rng.choice([s[:cut], s[:cut] + "}" + s[cut:], s[:cut] + s[cut + 1:], s + s, s[::-1], "\x00" * 5])
    _write_lines(cat, lines)


def _cut_file(tub: Path, rng: random.Random) -> None:
    cat = _catalog(tub, rng) if rng.random() < 0.7 else tub / "manifest.json"
    if cat is not None and cat.exists():
        data = cat.read_bytes()
        cat.write_bytes(data[:rng.randrange(len(data) + 1)])


def _duplicate_index(tub: Path, rng: random.Random) -> None:
    cat = _catalog(tub, rng)
    if cat is not None and _lines(cat):
        lines = _lines(cat)
        lines.insert(rng.randrange(len(lines) + 1), rng.choice(lines))
        _write_lines(cat, lines)


def _manifest_meta(tub: Path, rng: random.Random) -> None:
    man = tub / "manifest.json"
    if not man.exists():
        return
    lines = _lines(man)
    if len(lines) < 5:
        return
    try:
        meta = json.loads(lines[4])
    except ValueError:
        return
    if not isinstance(meta, dict):
        return
    op = rng.randrange(6)
    if op == 0:
        meta["paths"] = [*meta.get("paths", []), f"catalog_{rng.randrange(2, 9)}.catalog"]  # absent catalog
    elif op == 1:
        meta["deleted_indexes"] = rng.sample(range(-3, 40), rng.randrange(8))  # unsorted, out of range
    elif op == 2:
        meta["deleted_indexes"] = rng.choice(ODD_VALUES)
    elif op == 3:
        meta["paths"] = rng.choice(ODD_VALUES + [["../manifest.json"], ["images"]])
    elif op == 4:
        meta.pop(rng.choice(["paths", "deleted_indexes", "max_len", "current_index"]), None)
    if op == 5:
        lines.pop(rng.randrange(len(lines)))  # a manifest line missing
    else:
        lines[4] = json.dumps(meta)
    _write_lines(man, lines)


def _images(tub: Path, rng: random.Random) -> None:
    folder = tub / "images" if (tub / "images").is_dir() else tub
    imgs = sorted(folder.glob("*.jpg"))
    if not imgs:
        return
    damage_image_files(imgs, rng.randrange(1, min(4, len(imgs)) + 1), rng, garbage=64)


def _non_utf8(tub: Path, rng: random.Random) -> None:
    cat = _catalog(tub, rng) or tub / "manifest.json"
    if cat.exists():
        data = bytearray(cat.read_bytes())
        if data:
            data[rng.randrange(len(data))] = rng.choice([0xFF, 0xC3, 0x80, 0x00])
            cat.write_bytes(bytes(data))


def _remove_file(tub: Path, rng: random.Random) -> None:
    files = [p for p in tub.iterdir() if p.is_file()]
    if files:
        rng.choice(files).unlink()


def _v1_record(tub: Path, rng: random.Random) -> None:
    recs = sorted(tub.glob("record_*.json"))
    if not recs:
        return
    p = rng.choice(recs)
    try:
        rec = json.loads(p.read_text())
    except ValueError:
        return
    if isinstance(rec, dict) and rng.random() < 0.6:
        rec[rng.choice(["cam/image_array", "user/angle", "user/throttle", "user/mode", "milliseconds"])] = \
            rng.choice(ODD_VALUES)
        p.write_text(json.dumps(rec))
    else:
        data = p.read_bytes()
        p.write_bytes(data[: rng.randrange(len(data) + 1)])


MUTATIONS: list[Callable[[Path, random.Random], None]] = [
    _wrong_type, _remove_key, _odd_json_value, _garble_line, _cut_file, _duplicate_index, _manifest_meta,
    _images, _non_utf8, _remove_file, _v1_record,
]


def mutate_tub(src: Path, dst: Path, rng: random.Random) -> None:
    """Copy the tub ``src`` to ``dst`` and apply one to three seeded mutations."""
    shutil.copytree(src, dst)
    for _ in range(rng.randrange(1, 4)):
        rng.choice(MUTATIONS)(dst, rng)
