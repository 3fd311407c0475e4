"""Seeded mutations of ROS1 bags (format 2.0) for fuzzing the bag reader.

:func:`mutate_bag` turns the bytes of a valid bag into one damaged variant, deterministically
for a given ``random.Random``. It mixes blind damage (bit flips, zeroed blocks, truncation) with
damage that knows the record layout (a length field set to a wrong value, a header field
removed or given a wrong value, a message payload shortened or given a huge string length, a
chunk that lies about its size, a hostile message definition, a record deleted or repeated,
the bag header's index position moved). Structured mutations keep every other record intact,
so the damage lands where a reader has to cope with it instead of ending the file early.

The parser here is deliberately independent of :mod:`vbp_live.recordings.bagscan` (the code
under test): it only has to understand the valid bags it is given.
"""

from __future__ import annotations

import bz2
import random
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

import lz4.frame

MAGIC = b"#ROSBAG V2.0\n"
_U32 = struct.Struct("<I")
BIG = (0, 1, 0xFFFFFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFF, 0x01000000)


@dataclass
class Rec:
    """One record: header fields in file order, data, and (for chunks) the records inside."""

    fields: list[tuple[bytes, bytes]]
    data: bytes
    inner: list[Rec] | None = None
    compression: bytes = b"none"
    pos: int = -1  # offset in the file it was parsed from (top-level records)

    def get(self, name: bytes) -> bytes | None:
        return next((v for k, v in self.fields if k == name), None)

    def set(self, name: bytes, value: bytes) -> None:
        for i, (k, _) in enumerate(self.fields):
            if k == name:
                self.fields[i] = (k, value)
                return
        self.fields.append((name, value))

    @property
    def op(self) -> int:
        v = self.get(b"op")
        return v[0] if v else -1


def _header_bytes(fields: list[tuple[bytes, bytes]]) -> bytes:
    return b"".join(_U32.pack(len(k) + 1 + len(v)) + k + b"=" + v for k, v in fields)


def _parse_records(buf: bytes, base: int = 0) -> list[Rec]:
    out, pos = [], 0
    while pos < len(buf):
        start = pos
        (hlen,) = _U32.unpack_from(buf, pos)
        hb, fields, q = buf[pos + 4 : pos + 4 + hlen], [], 0
        while q < len(hb):
            (flen,) = _U32.unpack_from(hb, q)
            k, _, v = hb[q + 4 : q + 4 + flen].partition(b"=")
            fields.append((k, v))
            q += 4 + flen
        pos += 4 + hlen
        (dlen,) = _U32.unpack_from(buf, pos)
        out.append(Rec(fields, buf[pos + 4 : pos + 4 + dlen], pos=base + start))
        pos += 4 + dlen
    return out


def _decompress(comp: bytes, data: bytes) -> bytes:
    if comp == b"bz2":
        return bz2.decompress(data)
    if comp == b"lz4":
        return lz4.frame.decompress(data)
    return data


def _compress(comp: bytes, data: bytes) -> bytes:
    if comp == b"bz2":
        return bz2.compress(data)
    if comp == b"lz4":
        return lz4.frame.compress(data)
    return data


def parse_bag(data: bytes) -> list[Rec]:
    """The top-level records of a valid bag, with every chunk's records parsed too."""
    if not data.startswith(MAGIC):
        raise ValueError("not a ROS1 v2.0 bag")
    recs = _parse_records(data[len(MAGIC) :], len(MAGIC))
    for r in recs:
        if r.op == 5:
            r.compression = r.get(b"compression") or b"none"
            r.inner = _parse_records(_decompress(r.compression, r.data))
    return recs


def _record_bytes(r: Rec) -> bytes:
    hb = _header_bytes(r.fields)
    return _U32.pack(len(hb)) + hb + _U32.pack(len(r.data)) + r.data


def build_bag(recs: list[Rec], refresh: bool = True) -> bytes:
    """Serialize records; chunks are rebuilt from their inner records when ``refresh`` (size fixed up).

    The bag header's index position and the chunk infos' chunk positions follow the records
    they pointed to (when those are still there), so only the intended damage is in the result.
    """
    for r in recs:
        if r.inner is not None and refresh:
            raw = b"".join(_record_bytes(x) for x in r.inner)
            r.data = _compress(r.compression, raw)
            r.set(b"size", _U32.pack(len(raw)))
    new, pos = {}, len(MAGIC)
    for r in recs:
        if r.pos >= 0:
            new.setdefault(r.pos, pos)
        pos += len(_record_bytes(r))
    for r in recs:
        for name in (b"index_pos", b"chunk_pos"):
            v = r.get(name)
            if r.op in (3, 6) and v is not None and len(v) == 8 and struct.unpack("<Q", v)[0] in new:
                r.set(name, struct.pack("<Q", new[struct.unpack("<Q", v)[0]]))
    return MAGIC + b"".join(_record_bytes(r) for r in recs)


# ---------------------------------------------------------------- blind damage on bytes

def flip_bits(data: bytes, rng: random.Random) -> bytes:
    """Flip 1-16 random bits after the magic line."""
    b = bytearray(data)
    for _ in range(rng.randint(1, 16)):
        i = rng.randrange(len(MAGIC), len(b))
        b[i] ^= 1 << rng.randrange(8)
    return bytes(b)


def zero_block(data: bytes, rng: random.Random) -> bytes:
    """Zero a block of 16 bytes to 4 KB."""
    b = bytearray(data)
    n = rng.choice([16, 64, 512, 4096])
    i = rng.randrange(len(MAGIC), max(len(MAGIC) + 1, len(b) - 1))
    b[i : i + n] = bytes(len(b[i : i + n]))
    return bytes(b)


def truncate(data: bytes, rng: random.Random) -> bytes:
    """Cut the file anywhere (sometimes inside the magic line)."""
    return data[: rng.randrange(0, len(data)) if rng.random() < 0.05 else rng.randrange(len(MAGIC), len(data))]


def overwrite_u32(data: bytes, rng: random.Random) -> bytes:
    """Write a huge or tiny 32-bit value at a random position (a length read in the wrong place)."""
    b = bytearray(data)
    i = rng.randrange(len(MAGIC), len(b) - 4)
    b[i : i + 4] = _U32.pack(rng.choice(BIG))
    return bytes(b)


# ---------------------------------------------------------------- damage that knows the layout

def _all_records(recs: list[Rec]) -> list[tuple[Rec, Rec | None]]:
    """(record, its chunk or None) for every top-level and inner record."""
    out: list[tuple[Rec, Rec | None]] = []
    for r in recs:
        out.append((r, None))
        out.extend((x, r) for x in r.inner or [])
    return out


def _messages(recs: list[Rec]) -> list[Rec]:
    return [x for x, _ in _all_records(recs) if x.op == 2]


def cut_at_record_boundary(recs: list[Rec], rng: random.Random) -> bytes:
    """The file ends exactly after a whole top-level record (no index, or part of it)."""
    keep = rng.randrange(1, len(recs))
    return build_bag(recs[:keep])


def drop_field(recs: list[Rec], rng: random.Random) -> bytes:
    """Remove one header field from one record (framing stays valid)."""
    rec, _ = rng.choice([(r, c) for r, c in _all_records(recs) if r.fields])
    del rec.fields[rng.randrange(len(rec.fields))]
    return build_bag(recs)


def bad_field_value(recs: list[Rec], rng: random.Random) -> bytes:
    """Give one header field a wrong-length, out-of-range or non-UTF-8 value."""
    rec, _ = rng.choice([(r, c) for r, c in _all_records(recs) if r.fields])
    i = rng.randrange(len(rec.fields))
    name, value = rec.fields[i]
    choices = [value[:-1], value + b"\x00", b"", bytes([rng.randrange(256)]) * len(value),
               b"\xff\xfe" + value, _U32.pack(rng.choice(BIG)), b"zip", bytes([rng.randrange(8, 256)])]
    rec.fields[i] = (name, rng.choice(choices))
    return build_bag(recs)


def message_payload(recs: list[Rec], rng: random.Random) -> bytes:
    """Damage one message's payload: shorten it, or put a huge/odd length at a random place."""
    msgs = _messages(recs)
    m = rng.choice(msgs)
    b = bytearray(m.data)
    what = rng.random()
    if what < 0.3 and b:
        m.data = bytes(b[: rng.randrange(len(b))])
    elif what < 0.6 and len(b) > 16:
        i = 12 if rng.random() < 0.5 else rng.randrange(0, len(b) - 4)  # 12: frame_id's length after seq + stamp
        b[i : i + 4] = _U32.pack(rng.choice(BIG))
        m.data = bytes(b)
    elif b:
        i = rng.randrange(len(b))
        n = rng.choice([1, 8, 256, 4096])
        b[i : i + n] = bytes(len(b[i : i + n])) if rng.random() < 0.5 else bytes(rng.randrange(256) for _ in b[i:i + n])
        m.data = bytes(b)
    return build_bag(recs)


def chunk_size_lie(recs: list[Rec], rng: random.Random) -> bytes:
    """A chunk whose header states the wrong uncompressed size (smaller, larger, absurd)."""
    chunks = [r for r in recs if r.op == 5]
    c = rng.choice(chunks)
    build_bag(recs)  # compresses every chunk and sets its true size
    real = _U32.unpack(c.get(b"size"))[0]
    c.set(b"size", _U32.pack(rng.choice([0, 1, real // 2, real - 1, real + 1, 0xFFFFFFFF])))
    return build_bag(recs, refresh=False)


_SEP = b"=" * 80 + b"\n"
_HEADER_DEF = _SEP + b"MSG: std_msgs/Header\nuint32 seq\ntime stamp\nstring frame_id\n"


def _deep(n: int) -> bytes:
    return b"Header header\nfoo/N0 a\n" + b"".join(_SEP + f"MSG: foo/N{i}\nfoo/N{i + 1} a\n".encode()
                                                  for i in range(n)) + _SEP + f"MSG: foo/N{n}\nint8 x\n".encode()


# message definitions that take minutes or gigabytes to parse or use, or do not parse at all
HOSTILE_DEFS: dict[str, Callable[[], bytes]] = {
    "wide": lambda: b"Header header\n" + b"".join(b"float32 f%d\n" % i for i in range(60_000)) + _HEADER_DEF,
    "many_fields": lambda: b"Header header\n" + b"int8 a\n" * 30_000 + _HEADER_DEF,
    "recursive": lambda: b"Header header\nfoo/Loop next\n" + _SEP + b"MSG: foo/Loop\nfoo/Loop next\n" + _HEADER_DEF,
    "deep": lambda: _deep(3000) + _HEADER_DEF,
    "deep_100": lambda: _deep(100) + _HEADER_DEF,
    "empty_array": lambda: b"Header header\nfoo/E[] xs\n" + _SEP + b"MSG: foo/E\n" + _HEADER_DEF,
    "garbage": lambda: bytes(random.Random(1).randrange(256) for _ in range(300)),
    "empty": lambda: b"",
}


def hostile_definition(recs: list[Rec], rng: random.Random) -> bytes:
    """Replace a connection's message definition with a wide, recursive, deep or garbage one."""
    conns = [r for r, _ in _all_records(recs) if r.op == 7]
    c = rng.choice(conns)
    fields = _parse_records(_U32.pack(len(c.data)) + c.data + _U32.pack(0))[0].fields
    name = rng.choice(sorted(HOSTILE_DEFS))
    fields = [(k, HOSTILE_DEFS[name]() if k == b"message_definition" else v) for k, v in fields]
    if rng.random() < 0.5:
        fields = [(k, v) for k, v in fields if k != b"md5sum"]
    c.data = _header_bytes(fields)
    return build_bag(recs)


def delete_or_repeat(recs: list[Rec], rng: random.Random) -> bytes:
    """Delete or repeat one record inside a chunk (or at the top level)."""
    chunks = [r for r in recs if r.inner]
    seq = rng.choice(chunks).inner if chunks and rng.random() < 0.7 else recs
    i = rng.randrange(1 if seq is recs else 0, len(seq))
    if rng.random() < 0.5:
        del seq[i]
    else:
        seq.insert(i, seq[i])
    return build_bag(recs)


def index_position(recs: list[Rec], rng: random.Random) -> bytes:
    """The bag header's index position: 0 (never indexed), past the end, or inside a chunk."""
    head = recs[0]
    head.set(b"index_pos", struct.pack("<Q", rng.choice([0, 1 << 40, 4117, 0xFFFFFFFFFFFFFFFF])))
    return build_bag(recs)


def length_field(recs: list[Rec], rng: random.Random) -> bytes:
    """Set a header-length, data-length or field-length of one record to a wrong value."""
    data = build_bag(recs)
    starts, pos = [], len(MAGIC)
    while pos < len(data):  # top-level record starts (+ uncompressed inner ones)
        (hlen,) = _U32.unpack_from(data, pos)
        (dlen,) = _U32.unpack_from(data, pos + 4 + hlen)
        starts.append((pos, hlen))
        if b"compression=none" in data[pos + 4 : pos + 4 + hlen]:
            q = pos + 8 + hlen
            while q < pos + 8 + hlen + dlen:
                (h2,) = _U32.unpack_from(data, q)
                (d2,) = _U32.unpack_from(data, q + 4 + h2)
                starts.append((q, h2))
                q += 8 + h2 + d2
        pos += 8 + hlen + dlen
    start, hlen = rng.choice(starts)
    where = rng.choice([start, start + 4 + hlen, start + 4])  # header length, data length, first field length
    value = rng.choice([*BIG, hlen + 1, max(0, hlen - 1)])
    b = bytearray(data)
    b[where : where + 4] = _U32.pack(value)
    return bytes(b)


BYTE_MUTATIONS: dict[str, Callable[[bytes, random.Random], bytes]] = {
    "flip_bits": flip_bits, "zero_block": zero_block, "truncate": truncate, "overwrite_u32": overwrite_u32,
}
RECORD_MUTATIONS: dict[str, Callable[[list[Rec], random.Random], bytes]] = {
    "cut_at_record_boundary": cut_at_record_boundary, "drop_field": drop_field, "bad_field_value": bad_field_value,
    "message_payload": message_payload, "chunk_size_lie": chunk_size_lie, "hostile_definition": hostile_definition,
    "delete_or_repeat": delete_or_repeat, "index_position": index_position, "length_field": length_field,
}
MUTATIONS = (*BYTE_MUTATIONS, *RECORD_MUTATIONS)


@dataclass
class Mutant:
    """A mutated bag and the mutations that made it (for reports)."""

    data: bytes
    applied: list[str] = field(default_factory=list)


def mutate_bag_named(data: bytes, rng: random.Random, max_steps: int = 2) -> Mutant:
    """Like :func:`mutate_bag`, also naming the mutations applied (in order)."""
    out = Mutant(data)
    for _ in range(rng.randint(1, max_steps)):
        name = rng.choice(MUTATIONS)
        if name in BYTE_MUTATIONS:
            out.data = BYTE_MUTATIONS[name](out.data, rng)
        else:
            try:
                recs = parse_bag(out.data)
            except Exception:  # noqa: BLE001 - an earlier step broke the layout: damage the bytes instead
                name = "flip_bits"
                out.data = flip_bits(out.data, rng)
            else:
                out.data = RECORD_MUTATIONS[name](recs, rng)
        out.applied.append(name)
        if len(out.data) <= len(MAGIC):
            break
    return out


def mutate_bag(data: bytes, rng: random.Random) -> bytes:
    """One damaged variant of a valid bag: one or two seeded mutations (see the module docstring).

    Args:
        data: the bytes of a valid ROS1 v2.0 bag.
        rng: the source of every random choice (same seed -> same mutant).
    """
    return mutate_bag_named(data, rng).data
