"""Seeded mutators for frame folders with a label file (``data.txt`` or a labels CSV).

``mutate_folder(src, dst, rng)`` copies the folder and applies one to three mutations chosen by
``rng`` to its label file and images: cut or garbled lines, non-numbers, NaN / infinities, an
image named twice, absolute and ``..`` paths, a header with missing or doubled columns, missing /
empty / broken images, non-UTF-8 bytes, NUL bytes. A case is reproduced by its seed alone.
"""

from __future__ import annotations

import random
import shutil
from collections.abc import Callable
from pathlib import Path

from fuzzing.image_mutators import damage_image_files

ODD_CELLS = ["nan", "inf", "-inf", "1e999", "1e300", "-9e18", "", "abc", "0x10", "1,5", "١٢", "--1", "1e-400", "  ",
             "None", "/etc/passwd", "../0.jpg", "C:\\x.jpg", "a" * 3000, "\x00", '"', "0.jpg 1.0"]


def _label_file(folder: Path) -> Path | None:
    if (folder / "data.txt").is_file():
        return folder / "data.txt"
    csvs = sorted(folder.glob("*.csv"))
    return csvs[0] if csvs else None


def _lines(path: Path) -> list[str]:
    return path.read_bytes().decode("utf-8", "replace").splitlines()


def _sep(path: Path) -> str:
    return " " if path.suffix == ".txt" else ","


def _cell(folder: Path, rng: random.Random) -> None:
    lab = _label_file(folder)
    if lab is None or not _lines(lab):
        return
    lines = _lines(lab)
    k = rng.randrange(len(lines))
    cells = lines[k].split(_sep(lab))
    cells[rng.randrange(len(cells))] = rng.choice(ODD_CELLS)
    lines[k] = _sep(lab).join(cells)
    lab.write_text("\n".join(lines) + "\n", errors="surrogatepass")


def _line(folder: Path, rng: random.Random) -> None:
    lab = _label_file(folder)
    if lab is None or not _lines(lab):
        return
    lines = _lines(lab)
    k = rng.randrange(len(lines))
    op = rng.randrange(5)
    if op == 0:
        lines.insert(rng.randrange(len(lines) + 1), lines[k])  # duplicated row: an image named twice
    elif op == 1:
        lines.pop(k)  # removed (for a CSV maybe the header)
    elif op == 2:
        lines[k] = lines[k][: rng.randrange(len(lines[k]) + 1)]  # cut
    elif op == 3:
        lines[k] = lines[k] + _sep(lab) + rng.choice(ODD_CELLS)  # extra cell
    else:
        lines[k] = lines[k].split(_sep(lab))[0]  # a cell short
    lab.write_text("\n".join(lines) + "\n")


def _bytes(folder: Path, rng: random.Random) -> None:
    lab = _label_file(folder)
    if lab is None:
        return
    data = bytearray(lab.read_bytes())
    if rng.random() < 0.5 and data:
        data[rng.randrange(len(data))] = rng.choice([0xFF, 0x00, 0xC3, 0x0D])
    else:
        data = data[: rng.randrange(len(data) + 1)]
    lab.write_bytes(bytes(data))


def _images(folder: Path, rng: random.Random) -> None:
    imgs = sorted(p for p in folder.iterdir() if p.suffix in (".jpg", ".png"))
    damage_image_files(imgs, min(len(imgs), rng.randrange(1, 4)), rng, garbage=40)


def _header(folder: Path, rng: random.Random) -> None:
    lab = _label_file(folder)
    if lab is None or lab.suffix != ".csv" or not _lines(lab):
        return
    lines = _lines(lab)
    cols = lines[0].split(",")
    op = rng.randrange(3)
    if op == 0:
        cols[rng.randrange(len(cols))] = rng.choice(["", "x", "angle", "image", "time"])  # renamed / doubled
    elif op == 1:
        cols.pop(rng.randrange(len(cols)))
    else:
        cols.append(rng.choice(["speed", "time", "extra"]))
    lines[0] = ",".join(cols)
    lab.write_text("\n".join(lines) + "\n")


def _empty(folder: Path, rng: random.Random) -> None:
    lab = _label_file(folder)
    if lab is not None:
        lab.write_text(rng.choice(["", "\n\n", "# nothing\n"]))


MUTATIONS: list[Callable[[Path, random.Random], None]] = [_cell, _cell, _line, _line, _bytes, _images, _header,
                                                          _empty]


def mutate_folder(src: Path, dst: Path, rng: random.Random) -> None:
    """Copy the frame folder ``src`` to ``dst`` and apply one to three seeded mutations."""
    shutil.copytree(src, dst)
    for _ in range(rng.randrange(1, 4)):
        rng.choice(MUTATIONS)(dst, rng)
