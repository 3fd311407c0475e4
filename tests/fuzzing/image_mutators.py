"""Seeded mutators for encoded images (JPEG, PNG): the damage real files and hostile ones carry.

Each takes the encoded bytes and a ``random.Random`` and returns ``(mutant, what)`` where
``what`` names the mutation, so a case is reproduced by its seed alone. Some mutations keep
the checksums valid (PNG CRCs recomputed) so the damage must be found deeper than the CRC.
:func:`damage_image_files` damages image files in place (the tub and folder mutators' image step).
"""

from __future__ import annotations

import random
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

Mutation = Callable[[bytes, random.Random], bytes]


def _span(data: bytes, rng: random.Random, start: int = 2) -> tuple[int, int]:
    p = rng.randrange(min(start, len(data) - 1), len(data))
    n = rng.choice([1, 16, 256, 1024, 4096])
    return p, min(len(data), p + n)


def zero_block(data: bytes, rng: random.Random) -> bytes:
    p, q = _span(data, rng)
    return data[:p] + bytes(q - p) + data[q:]


def random_block(data: bytes, rng: random.Random) -> bytes:
    p, q = _span(data, rng)
    return data[:p] + rng.randbytes(q - p) + data[q:]


def flip_bits(data: bytes, rng: random.Random) -> bytes:
    b = bytearray(data)
    for _ in range(rng.choice([1, 2, 8, 64])):
        b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
    return bytes(b)


def truncate(data: bytes, rng: random.Random) -> bytes:
    return data[: rng.randrange(0, len(data))]


def drop_block(data: bytes, rng: random.Random) -> bytes:
    p, q = _span(data, rng)
    return data[:p] + data[q:]


def duplicate_block(data: bytes, rng: random.Random) -> bytes:
    p, q = _span(data, rng)
    return data[:q] + data[p:q] + data[q:]


def append_garbage(data: bytes, rng: random.Random) -> bytes:
    return data + rng.randbytes(rng.choice([1, 100, 5000]))


# ---------------------------------------------------------------- JPEG-specific

def _marker(data: bytes, marker: bytes) -> int:
    return data.find(marker)


def jpeg_huge_dims(data: bytes, rng: random.Random) -> bytes:
    """SOF states 16000x16000 (or 65535 / 0): a header-only bomb."""
    sof = max(_marker(data, b"\xff\xc0"), _marker(data, b"\xff\xc2"))
    if sof < 0:
        return data
    w = h = rng.choice([16000, 65535, 0, 40000])
    return data[: sof + 5] + struct.pack(">HH", h, w) + data[sof + 9 :]


def jpeg_no_eoi(data: bytes, rng: random.Random) -> bytes:
    return data[:-2]


def jpeg_many_scans(data: bytes, rng: random.Random) -> bytes:
    return data[:-2] + b"\xff\xda\x00\x02" * rng.choice([10, 300, 3000]) + data[-2:]


def jpeg_damage_tables(data: bytes, rng: random.Random) -> bytes:
    """Garble a quantization or Huffman table segment."""
    at = _marker(data, rng.choice([b"\xff\xdb", b"\xff\xc4"]))
    if at < 0:
        return data
    b = bytearray(data)
    for _ in range(8):
        b[at + 4 + rng.randrange(40)] = rng.randrange(256)
    return bytes(b)


def jpeg_entropy_zero(data: bytes, rng: random.Random) -> bytes:
    """Zero up to 4 KB inside the entropy-coded data (the issue's 'smeared image')."""
    sos = _marker(data, b"\xff\xda")
    if sos < 0 or sos + 20 >= len(data) - 2:
        return data
    p = rng.randrange(sos + 20, len(data) - 2)
    q = min(len(data) - 2, p + rng.choice([16, 256, 4096]))
    return data[:p] + bytes(q - p) + data[q:]


JPEG_MUTATIONS: dict[str, Mutation] = {
    "zero_block": zero_block, "random_block": random_block, "flip_bits": flip_bits, "truncate": truncate,
    "drop_block": drop_block, "duplicate_block": duplicate_block, "append_garbage": append_garbage,
    "huge_dims": jpeg_huge_dims, "no_eoi": jpeg_no_eoi, "many_scans": jpeg_many_scans,
    "damage_tables": jpeg_damage_tables, "entropy_zero": jpeg_entropy_zero,
}


# ---------------------------------------------------------------- PNG-specific

def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png_split(data: bytes) -> list[tuple[bytes, bytes]]:
    out, pos = [], 8
    while pos + 12 <= len(data):
        n, kind = struct.unpack(">I4s", data[pos : pos + 8])
        out.append((kind, data[pos + 8 : pos + 8 + n]))
        pos += 12 + n
    return out


def _png_join(chunks: list[tuple[bytes, bytes]]) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + b"".join(_chunk(k, b) for k, b in chunks)


def png_huge_dims(data: bytes, rng: random.Random) -> bytes:
    """IHDR states a huge (or zero) size, CRC valid."""
    chunks = _png_split(data)
    if not chunks or chunks[0][0] != b"IHDR":
        return data
    w = h = rng.choice([20000, 2**31 - 1, 0, 100000])
    chunks[0] = (b"IHDR", struct.pack(">II", w, h) + chunks[0][1][8:])
    return _png_join(chunks)


def png_idat_damage_valid_crc(data: bytes, rng: random.Random) -> bytes:
    """Flip, zero or cut the compressed image data, then fix the CRC."""
    chunks = _png_split(data)
    for i, (kind, body) in enumerate(chunks):
        if kind == b"IDAT" and body:
            body = rng.choice([zero_block, flip_bits, truncate, random_block])(body, rng)
            chunks[i] = (kind, body)
            break
    return _png_join(chunks)


def png_header_fields(data: bytes, rng: random.Random) -> bytes:
    """Odd bit depth / colour type / interlace in IHDR, CRC valid."""
    chunks = _png_split(data)
    if not chunks or chunks[0][0] != b"IHDR" or len(chunks[0][1]) != 13:
        return data
    b = bytearray(chunks[0][1])
    b[rng.choice([8, 9, 10, 11, 12])] = rng.choice([0, 1, 3, 7, 16, 255])
    chunks[0] = (b"IHDR", bytes(b))
    return _png_join(chunks)


def png_no_iend(data: bytes, rng: random.Random) -> bytes:
    return _png_join([c for c in _png_split(data) if c[0] != b"IEND"])


def png_chunk_order(data: bytes, rng: random.Random) -> bytes:
    chunks = _png_split(data)
    rng.shuffle(chunks)
    return _png_join(chunks)


PNG_MUTATIONS: dict[str, Mutation] = {
    "zero_block": zero_block, "flip_bits": flip_bits, "truncate": truncate, "drop_block": drop_block,
    "append_garbage": append_garbage, "huge_dims": png_huge_dims, "idat_valid_crc": png_idat_damage_valid_crc,
    "header_fields": png_header_fields, "no_iend": png_no_iend, "chunk_order": png_chunk_order,
}


# ---------------------------------------------------------------- QOI-specific

def qoi_huge_dims(data: bytes, rng: random.Random) -> bytes:
    w = h = rng.choice([20000, 2**32 - 1, 0])
    return data[:4] + struct.pack(">II", w, h) + data[12:]


def qoi_channels(data: bytes, rng: random.Random) -> bytes:
    return data[:12] + bytes([rng.choice([0, 1, 2, 4, 5, 255])]) + data[13:]


QOI_MUTATIONS: dict[str, Mutation] = {
    "zero_block": zero_block, "random_block": random_block, "flip_bits": flip_bits, "truncate": truncate,
    "drop_block": drop_block, "append_garbage": append_garbage, "huge_dims": qoi_huge_dims,
    "channels": qoi_channels,
}


def mutate_image(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """One seeded mutation of a JPEG, PNG or QOI (chosen by its signature): ``(mutant, mutation name)``."""
    table = {b"\x89PNG": PNG_MUTATIONS, b"qoif": QOI_MUTATIONS}.get(data[:4], JPEG_MUTATIONS)
    name = rng.choice(sorted(table))
    return table[name](data, rng), name


# ---------------------------------------------------------------- image files in a recording

def damage_image_files(images: list[Path], k: int, rng: random.Random, garbage: int) -> None:
    """Damage ``k`` of ``images`` (a sorted list), chosen by ``rng``: each is deleted, emptied, cut
    at a random byte or replaced by ``garbage`` random bytes. Used by the tub and folder mutators."""
    for img in rng.sample(images, k):
        op = rng.randrange(4)
        if op == 0:
            img.unlink()
        elif op == 1:
            img.write_bytes(b"")
        elif op == 2:
            data = img.read_bytes()
            img.write_bytes(data[: rng.randrange(len(data) + 1)])
        else:
            img.write_bytes(bytes(rng.randrange(256) for _ in range(garbage)))
