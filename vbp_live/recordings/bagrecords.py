"""The record layer of ROS1 bags (format v2.0): framing, headers, field checks, bounded chunk inflation, resync.

Record layout (http://wiki.ros.org/Bags/Format/2.0): ``<u32 header_len><header><u32
data_len><data>``; header fields are ``<u32 len>name=value``. Every function here treats the
bytes as untrusted: a field of the wrong length is a :class:`RecordError` (never a
``struct.error``), a chunk never inflates past the size its header states nor past
:data:`MAX_CHUNK_BYTES`, and :func:`find_record` finds the next plausible record after damage
so a reader can go on with the rest of the file. :func:`frame_at` (a record in the file) and
:func:`frame_in` (one inside a decompressed chunk) frame a record or raise :class:`RecordDamage`.
"""

from __future__ import annotations

import bz2
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import lz4.frame

from vbp_live.core.errors import InputError

MAGIC = b"#ROSBAG V2.0\n"
OP_MSGDATA, OP_BAGHEADER, OP_IDXDATA, OP_CHUNK, OP_CHUNK_INFO, OP_CONNECTION = 2, 3, 4, 5, 6, 7
KNOWN_OPS = (OP_MSGDATA, OP_BAGHEADER, OP_IDXDATA, OP_CHUNK, OP_CHUNK_INFO, OP_CONNECTION)
MAX_HEADER = 1 << 24  # a record header larger than this is garbage, not data
MAX_CHUNK_BYTES = 1 << 28  # 256 MiB: rosbag's chunks are ~768 KB (one big message may exceed that)
RESYNC_MAX_HEADER = 1 << 16  # headers a resync accepts (chunk, message, index headers are < 1 KB)
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
# fields each record type must have, with their byte length (None: any length)
REQUIRED: dict[int, dict[str, int | None]] = {
    OP_MSGDATA: {"conn": 4, "time": 8},
    OP_BAGHEADER: {"index_pos": 8, "conn_count": 4, "chunk_count": 4},
    OP_IDXDATA: {"ver": 4, "conn": 4, "count": 4},
    OP_CHUNK: {"compression": None, "size": 4},
    OP_CHUNK_INFO: {"ver": 4, "chunk_pos": 8, "start_time": 8, "end_time": 8, "count": 4},
    OP_CONNECTION: {"conn": 4, "topic": None},
}
COMPRESSIONS = ("none", "bz2", "lz4")
_INFLATE_ERRORS = (OSError, EOFError, ValueError, RuntimeError)  # what bz2 / lz4 raise on damaged data


@dataclass(frozen=True)
class BagConnection:
    """One connection (topic + type) as recorded in the bag."""

    id: int
    topic: str
    msgtype: str  # ROS1 spelling, e.g. "sensor_msgs/CompressedImage"
    md5sum: str
    msgdef: str


class BagError(InputError):
    """A file is not a readable ROS1 v2.0 bag."""


class RecordError(Exception):
    """Internal: one record's header is malformed (its framing may still be intact)."""


class RecordDamage(Exception):
    """Internal: the record at ``offset`` cannot be framed (its lengths or header are garbage)."""

    def __init__(self, offset: int, problem: str):
        super().__init__(problem)
        self.offset, self.problem = offset, problem


def parse_header(buf: bytes | memoryview) -> dict[str, bytes]:
    """Split a record header into its ``name=value`` fields.

    Raises:
        BagError: a field is cut off or has no ``=``.
    """
    b = bytes(buf)
    out, pos, n = {}, 0, len(b)
    while pos < n:
        if pos + 4 > n:
            raise BagError("header field length cut off")
        end = pos + 4 + int.from_bytes(b[pos : pos + 4], "little")
        pos += 4
        if end > n:
            raise BagError("header field longer than its header")
        eq = b.find(b"=", pos, end)
        if eq < 0:
            raise BagError("header field without '='")
        out[b[pos:eq].decode("ascii", "replace")] = b[eq + 1 : end]
        pos = end
    return out


def op_of(h: dict[str, bytes]) -> int:
    """The record type; -1 when the ``op`` field is missing or not one byte."""
    op = h.get("op", b"")
    return op[0] if len(op) == 1 else -1


def check_fields(h: dict[str, bytes], op: int) -> None:
    """Raise :class:`RecordError` naming the first required field that is missing or of the wrong length."""
    for name, size in REQUIRED.get(op, {}).items():
        if name not in h:
            raise RecordError(f"op {op} record without its {name!r} field")
        if size is not None and len(h[name]) != size:
            raise RecordError(f"op {op} record with a {len(h[name])}-byte {name!r} field (expected {size})")
    if op == OP_CHUNK and h["compression"].decode("ascii", "replace") not in COMPRESSIONS:
        raise RecordError(f"chunk with unknown compression {h['compression'][:20]!r}")


def u32(h: dict[str, bytes], name: str) -> int:
    """A little-endian uint32 field (checked by :func:`check_fields` first)."""
    return _U32.unpack(h[name])[0]


def u64(h: dict[str, bytes], name: str) -> int:
    """A little-endian uint64 field."""
    return _U64.unpack(h[name])[0]


def time_ns(raw: bytes) -> int:
    """A ROS time field (sec, nsec) in ns."""
    sec, nsec = struct.unpack("<II", raw)
    return sec * 1_000_000_000 + nsec


def text(raw: bytes) -> tuple[str, bool]:
    """Decode a name from a header: ``(text, was_utf8)``; bytes that are not UTF-8 are shown escaped."""
    try:
        return raw.decode("utf-8"), True
    except UnicodeDecodeError:
        return raw.decode("utf-8", "backslashreplace"), False


def connection_record(h: dict[str, bytes], data: bytes | memoryview) -> tuple[BagConnection, bool]:
    """A connection record (header checked by :func:`check_fields`) -> (connection, names were UTF-8).

    Raises:
        RecordError: its body does not parse or names no message type.
    """
    try:
        d = parse_header(data)
    except BagError as e:
        raise RecordError(f"connection record with a damaged body ({e})") from None
    if "type" not in d:
        raise RecordError("connection record without a message type")
    topic, ok_topic = text(h["topic"])
    msgtype, ok_type = text(d["type"])
    conn = BagConnection(id=u32(h, "conn"), topic=topic, msgtype=msgtype,
                         md5sum=d.get("md5sum", b"").decode("ascii", "replace"),
                         msgdef=d.get("message_definition", b"").decode("utf-8", "replace"))
    return conn, ok_topic and ok_type


def _decompressor(comp: str) -> Any:
    return bz2.BZ2Decompressor() if comp == "bz2" else lz4.frame.LZ4FrameDecompressor()


class Inflated(NamedTuple):
    """A chunk's data as far as it could be inflated."""

    data: bytes | bytearray  # (not copied: a chunk may be up to MAX_CHUNK_BYTES)
    problem: str | None  # None, or why ``data`` is not the whole chunk
    used: int  # input bytes the compressed stream took (all of them unless its end was found earlier)
    ended: bool = False  # the compressed stream's end mark was found


def inflate(comp: str, data: bytes, size: int) -> Inflated:
    """Decompress a chunk's data, never past ``size`` (its header's) or :data:`MAX_CHUNK_BYTES`.

    Data is fed in pieces, so the part before a damaged spot is recovered.
    """
    if size > MAX_CHUNK_BYTES:
        return Inflated(b"", f"chunk states {size} bytes uncompressed, over the {MAX_CHUNK_BYTES >> 20} MiB limit",
                        len(data))
    if comp == "none":
        problem = None if len(data) == size else f"chunk holds {len(data)} bytes, its header says {size}"
        return Inflated(data[:size], problem, len(data))
    dec, out, step = _decompressor(comp), bytearray(), 1 << 16
    try:
        for i in range(0, len(data), step):
            out += dec.decompress(data[i : i + step], max_length=size + 1 - len(out))
            while len(out) <= size and not dec.eof and not dec.needs_input:
                more = dec.decompress(b"", max_length=size + 1 - len(out))
                if not more:
                    break
                out += more
            if len(out) > size:
                del out[size:]
                return Inflated(out, f"{comp} chunk inflates past the {size} bytes its header states",
                                len(data))
            if dec.eof:
                used = min(len(data), i + step) - len(dec.unused_data or b"")
                return Inflated(*_check_size(comp, out, size), used, True)
    except _INFLATE_ERRORS as e:
        return Inflated(out, f"damaged {comp} chunk ({e})", len(data))
    return Inflated(*_check_size(comp, out, size), len(data))


def _check_size(comp: str, out: bytearray, size: int) -> tuple[bytearray, str | None]:
    return out, None if len(out) == size else f"{comp} chunk inflates to {len(out)} bytes, its header says {size}"


Reader = Callable[[int, int], bytes]  # (offset, n) -> up to n bytes


def plausible_record(read: Reader, pos: int, end: int, ops: tuple[int, ...]) -> bool:
    """True when a whole record with a well-formed header of a kind in ``ops`` starts at ``pos`` (ends by ``end``)."""
    head = read(pos, 4)
    if len(head) < 4:
        return False
    (hlen,) = _U32.unpack(head)
    if hlen < 8 or hlen > RESYNC_MAX_HEADER or pos + 8 + hlen > end:
        return False
    hb = read(pos + 4, hlen + 4)
    try:
        h = parse_header(hb[:hlen])
        op = op_of(h)
        if op not in ops:
            return False
        check_fields(h, op)
    except (BagError, RecordError):
        return False
    (dlen,) = _U32.unpack_from(hb, hlen)
    return pos + 8 + hlen + dlen <= end and (op != OP_CHUNK or dlen <= MAX_CHUNK_BYTES)


_OP_FIELD = b"\x04\x00\x00\x00op="  # the op field of any header: length 4, "op=", then the op byte
_BEFORE_OP = 64  # header bytes that may come before the op field (rosbag sorts fields by name)


TOP_OPS = (OP_IDXDATA, OP_CHUNK, OP_CHUNK_INFO)  # what a resync between chunks looks for
INNER_OPS = (OP_MSGDATA, OP_CONNECTION)  # ... and inside a chunk


def find_record(read: Reader, start: int, end: int, ops: tuple[int, ...], window: int = 1 << 20) -> int | None:
    """The first offset >= ``start`` where :func:`plausible_record` holds for one of ``ops``, up to ``end``.

    Every header holds ``op=<byte>``; each such spot is tried with the record start up to 64
    bytes before it. Reads ``window`` bytes at a time (memory stays bounded). Between chunks
    only chunk and index records are looked for: compressed chunk data can hold the bytes of
    message records verbatim (lz4 literals), which must not be taken for records.
    """
    base = max(0, start - _BEFORE_OP)
    while base < end:
        buf = read(base, min(window, end - base) + len(_OP_FIELD) + 1)
        k = buf.find(_OP_FIELD)
        while k >= 0:
            if k + len(_OP_FIELD) < len(buf) and buf[k + len(_OP_FIELD)] in ops:
                field_at = base + k
                for pos in range(max(start, field_at - _BEFORE_OP - 4), field_at - 3):
                    if plausible_record(read, pos, end, ops):
                        return pos
            k = buf.find(_OP_FIELD, k + 1)
        base += window
    return None


def frame_at(read: Reader, pos: int) -> tuple[dict[str, bytes], int, int, int]:
    """Header, op, data position and data length of the record at file byte ``pos``.

    Raises:
        RecordDamage: the lengths or the header are garbage, or the file ends inside the header.
    """
    raw = read(pos, 4)
    if len(raw) < 4:
        raise RecordDamage(pos, "record cut inside its header length")
    hlen = int.from_bytes(raw, "little")
    if hlen > MAX_HEADER:
        raise RecordDamage(pos, f"damaged record (header length {hlen})")
    hb = read(pos + 4, hlen + 4)
    if len(hb) < hlen + 4:
        raise RecordDamage(pos, "record cut inside its header")
    try:
        header = parse_header(hb[:hlen])
    except BagError as e:
        raise RecordDamage(pos, f"damaged record header ({e})") from None
    return header, op_of(header), pos + 8 + hlen, int.from_bytes(hb[hlen:], "little")


def frame_in(buf: bytes | bytearray, pos: int) -> tuple[dict[str, bytes], int, int]:
    """Header, data position and data length of the record at byte ``pos`` of a decompressed chunk.

    Raises:
        RecordDamage: the lengths or the header are garbage, or the record does not fit in ``buf``.
    """
    n = len(buf)
    if pos + 4 > n:
        raise RecordDamage(pos, "record cut inside its header length")
    hlen = int.from_bytes(buf[pos : pos + 4], "little")
    if hlen > MAX_HEADER:
        raise RecordDamage(pos, f"damaged record (header length {hlen})")
    if pos + 8 + hlen > n:
        raise RecordDamage(pos, "record cut inside its header")
    try:
        header = parse_header(buf[pos + 4 : pos + 4 + hlen])
    except BagError as e:
        raise RecordDamage(pos, f"damaged record header ({e})") from None
    dlen = int.from_bytes(buf[pos + 4 + hlen : pos + 8 + hlen], "little")
    if pos + 8 + hlen + dlen > n:
        raise RecordDamage(pos, "record cut inside its data")
    return header, pos + 8 + hlen, dlen
