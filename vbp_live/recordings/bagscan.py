"""Streaming reader for ROS1 bag files (format v2.0) that survives truncation.

rosbags' ``Reader`` loads the bag's index (stored at the end of the file) before it yields a
single message: a bag cut short by a crash or a partial copy has no index and cannot be read,
and for a 100 GB bag the index alone takes hundreds of MB. This reader walks the records from
the start instead, one chunk at a time (memory: one chunk), and stops cleanly at the first
record that is cut or damaged, keeping every whole message before it and saying where it
stopped. Message payloads are deserialized elsewhere with rosbags' typestore, built from the
definitions stored in the bag.

Record layout (http://wiki.ros.org/Bags/Format/2.0): ``<u32 header_len><header><u32
data_len><data>``; header fields are ``<u32 len>name=value``. Top level: bag header (op 3),
then chunks (op 5, holding connection records op 7 and message records op 2) each followed by
index records (op 4), then the index section (op 7, op 6).
"""

from __future__ import annotations

import bz2
import logging
import os
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import lz4.frame

from vbp_live.core.errors import InputError

log = logging.getLogger(__name__)

MAGIC = b"#ROSBAG V2.0\n"
OP_MSGDATA, OP_BAGHEADER, OP_IDXDATA, OP_CHUNK, OP_CHUNK_INFO, OP_CONNECTION = 2, 3, 4, 5, 6, 7
_U32 = struct.Struct("<I")
_MAX_HEADER = 1 << 24  # a record header larger than this is garbage, not data


class BagError(InputError):
    """A file is not a readable ROS1 v2.0 bag."""


@dataclass(frozen=True)
class BagConnection:
    """One connection (topic + type) as recorded in the bag."""

    id: int
    topic: str
    msgtype: str  # ROS1 spelling, e.g. "sensor_msgs/CompressedImage"
    md5sum: str
    msgdef: str


@dataclass
class ScanReport:
    """What a scan of one bag found and where it stopped.

    Attributes:
        path: the bag file.
        size: file size in bytes.
        messages: whole messages yielded (all topics that were asked for).
        stopped_at: byte offset of the first record that could not be read, or None when the
            file was read to its end.
        problem: why it stopped there (None for a clean end).
        connections: every connection seen, by id.
    """

    path: Path
    size: int
    messages: int = 0
    stopped_at: int | None = None
    problem: str | None = None
    connections: dict[int, BagConnection] = field(default_factory=dict)
    counts: dict[int, int] = field(default_factory=dict)
    position: int = 0

    def topics(self) -> dict[str, tuple[str, int]]:
        """Topic -> (type, whole messages seen) over everything scanned so far."""
        out: dict[str, tuple[str, int]] = {}
        for c in self.connections.values():
            prev = out.get(c.topic, (c.msgtype, 0))[1]
            out[c.topic] = (c.msgtype, prev + self.counts.get(c.id, 0))
        return out

    def describe(self) -> str:
        """One line for people: clean or where and why it stopped."""
        if self.stopped_at is None:
            return f"{self.path.name}: read to the end, {self.messages} messages"
        return (
            f"{self.path.name}: {self.problem} at byte {self.stopped_at} of {self.size}; "
            f"kept the {self.messages} whole messages before it"
        )


def parse_header(buf: bytes | memoryview) -> dict[str, bytes]:
    """Split a record header into its ``name=value`` fields."""
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


def _u32(h: dict[str, bytes], name: str) -> int:
    return _U32.unpack(h[name])[0]


def _time_ns(raw: bytes) -> int:
    sec, nsec = struct.unpack("<II", raw)
    return sec * 1_000_000_000 + nsec


def _connection(h: dict[str, bytes], data: bytes | memoryview) -> BagConnection:
    d = parse_header(data)
    return BagConnection(
        id=_u32(h, "conn"),
        topic=h["topic"].decode(),
        msgtype=d["type"].decode(),
        md5sum=d.get("md5sum", b"").decode(),
        msgdef=d.get("message_definition", b"").decode("utf-8", "replace"),
    )


class _Cut(Exception):
    """Internal: the record at ``offset`` is incomplete or damaged."""

    def __init__(self, offset: int, problem: str):
        super().__init__(problem)
        self.offset, self.problem = offset, problem


def _records(buf: bytes | memoryview, base: int) -> Iterator[tuple[int, dict[str, bytes], memoryview]]:
    """Whole records in an in-memory buffer: (offset, header, data). Raises _Cut at a partial one."""
    mv, pos, n = memoryview(buf), 0, len(buf)
    while pos < n:
        start = pos
        if pos + 4 > n:
            raise _Cut(base + start, "record cut inside its header length")
        (hlen,) = _U32.unpack_from(mv, pos)
        if hlen > _MAX_HEADER:
            raise _Cut(base + start, f"damaged record (header length {hlen})")
        if pos + 4 + hlen + 4 > n:
            raise _Cut(base + start, "record cut inside its header")
        try:
            header = parse_header(mv[pos + 4 : pos + 4 + hlen])
        except BagError as e:
            raise _Cut(base + start, f"damaged record header ({e})") from None
        pos += 4 + hlen
        (dlen,) = _U32.unpack_from(mv, pos)
        pos += 4
        if pos + dlen > n:
            raise _Cut(base + start, "record cut inside its data")
        yield start, header, mv[pos : pos + dlen]
        pos += dlen


_DECOMPRESSORS: dict[str, Callable[[], Callable[[bytes], bytes]]] = {
    "none": lambda: (lambda b: bytes(b)),
    "bz2": lambda: bz2.BZ2Decompressor().decompress,
    "lz4": lambda: lz4.frame.LZ4FrameDecompressor().decompress,
}


class BagScanner:
    """Iterate the messages of one ROS1 bag in file order, surviving truncation.

    Args:
        path: the ``.bag`` file.

    Use :meth:`messages` (a generator); afterwards :attr:`report` says how far it got.
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        if not self.path.is_file():
            raise InputError(f"{self.path}: no such bag file")
        self.size = self.path.stat().st_size
        self.report = ScanReport(self.path, self.size)

    def _check_magic(self, f) -> None:
        head = f.read(len(MAGIC))
        if not head:
            raise BagError(f"{self.path}: the file is empty (0 bytes)")
        if head != MAGIC:
            raise BagError(f"{self.path}: not a ROS1 v2.0 bag (starts with {head[:13]!r})")

    def messages(self, want: Callable[[BagConnection], bool] = lambda c: True
                 ) -> Iterator[tuple[BagConnection, int, memoryview]]:
        """Yield ``(connection, record_time_ns, raw_message)`` for wanted connections.

        Args:
            want: filter on the connection (called once per connection).

        The raw bytes are a view into the current chunk; copy them to keep them past the
        next iteration step.
        """
        self.report = ScanReport(self.path, self.size)
        with open(self.path, "rb") as f:
            self._check_magic(f)
            try:
                yield from self._top_level(f, want)
            except _Cut as cut:
                self.report.stopped_at, self.report.problem = cut.offset, cut.problem
                log.warning("%s", self.report.describe())

    def _top_level(self, f, want) -> Iterator[tuple[BagConnection, int, memoryview]]:
        wanted: dict[int, bool] = {}
        pos = len(MAGIC)
        while pos < self.size:
            self.report.position = pos
            header, data_len, data_pos = self._read_record_head(f, pos)
            op = header.get("op", b"\xff")[0]
            if op == OP_CHUNK:
                yield from self._chunk(f, header, data_pos, data_len, wanted, want)
            elif op in (OP_MSGDATA, OP_CONNECTION):
                data = self._read_exact(f, data_pos, data_len, pos)
                yield from self._inner(((pos, header, memoryview(data)),), wanted, want)
            elif op not in (OP_BAGHEADER, OP_IDXDATA, OP_CHUNK_INFO):
                raise _Cut(pos, f"unknown record type {op}")
            pos = data_pos + data_len
        self.report.position = min(pos, self.size)
        if pos > self.size:
            raise _Cut(self.size, "file ends inside a record")

    def _read_record_head(self, f, pos: int) -> tuple[dict[str, bytes], int, int]:
        f.seek(pos)
        raw = f.read(4)
        if len(raw) < 4:
            raise _Cut(pos, "record cut inside its header length")
        (hlen,) = _U32.unpack(raw)
        if hlen > _MAX_HEADER:
            raise _Cut(pos, f"damaged record (header length {hlen})")
        hb = f.read(hlen + 4)
        if len(hb) < hlen + 4:
            raise _Cut(pos, "record cut inside its header")
        try:
            header = parse_header(hb[:hlen])
        except BagError as e:
            raise _Cut(pos, f"damaged record header ({e})") from None
        (dlen,) = _U32.unpack_from(hb, hlen)
        return header, dlen, pos + 4 + hlen + 4

    def _read_exact(self, f, data_pos: int, data_len: int, rec_pos: int) -> bytes:
        f.seek(data_pos)
        data = f.read(data_len)
        if len(data) < data_len:
            raise _Cut(rec_pos, "record cut inside its data")
        return data

    def _chunk(self, f, header, data_pos, data_len, wanted, want) -> Iterator[tuple[BagConnection, int, memoryview]]:
        comp = header.get("compression", b"none").decode()
        if comp not in _DECOMPRESSORS:
            raise _Cut(data_pos, f"unsupported chunk compression {comp!r}")
        f.seek(data_pos)
        data = f.read(data_len)
        try:
            inner = _DECOMPRESSORS[comp]()(data)
        except Exception as e:  # noqa: BLE001 - any decompressor failure means a damaged chunk
            raise _Cut(data_pos, f"damaged {comp} chunk ({e})") from None
        base = data_pos if comp == "none" else -1
        try:
            yield from self._inner(_records(inner, base), wanted, want)
        except _Cut as cut:
            where = cut.offset if comp == "none" else data_pos
            what = "chunk" if len(data) == data_len else "file ends inside a chunk"
            raise _Cut(where, f"{what}: {cut.problem}") from None
        if len(data) < data_len:
            raise _Cut(data_pos + len(data) if comp == "none" else data_pos, "file ends inside a chunk")

    def _inner(self, records, wanted, want) -> Iterator[tuple[BagConnection, int, memoryview]]:
        conns = self.report.connections
        for _, h, data in records:
            op = h.get("op", b"\xff")[0]
            if op == OP_CONNECTION:
                c = _connection(h, data)
                conns.setdefault(c.id, c)
            elif op == OP_MSGDATA:
                cid = _u32(h, "conn")
                self.report.counts[cid] = self.report.counts.get(cid, 0) + 1
                if cid not in wanted:
                    if cid not in conns:
                        continue  # message of a connection whose record was lost
                    wanted[cid] = bool(want(conns[cid]))
                if wanted[cid]:
                    self.report.messages += 1
                    yield conns[cid], _time_ns(h["time"]), data


def bag_topics(path: str | os.PathLike[str]) -> dict[str, tuple[str, int]]:
    """Topic -> (type, message count) of a whole bag, by a full scan (works on cut bags)."""
    scanner = BagScanner(path)
    for _ in scanner.messages(lambda c: False):
        pass
    return scanner.report.topics()
