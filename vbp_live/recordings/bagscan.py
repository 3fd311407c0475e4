"""Streaming reader for ROS1 bag files (format v2.0) that survives truncation and damage.

rosbags' ``Reader`` loads the bag's index (stored at the end of the file) before it yields a
single message: a bag cut short by a crash or a partial copy has no index and cannot be read,
and for a 100 GB bag the index alone takes hundreds of MB. This reader walks the records from
the start instead, one chunk at a time (memory: one chunk, at most
:data:`~.bagrecords.MAX_CHUNK_BYTES`), and keeps every whole message it can read:

- a file cut short ends the scan at the cut, keeping every whole message before it;
- a damaged record (garbage lengths, a header that does not parse) is skipped up to the next
  readable record (:func:`~.bagrecords.find_record`), inside a chunk or between chunks;
- a record with a missing or malformed field, an unknown record type, a message of an unknown
  connection and a chunk that does not inflate to its stated size are skipped;
- the index records after each chunk say how many messages it held: any it lists that could
  not be read are counted as ``lost``;
- the bag header says whether the file was closed properly: a file cut exactly between two
  records (its index starts past the end) or never indexed is reported.

Everything skipped is counted by reason in :attr:`ScanReport.skipped` with the byte offset of
the first few; message payloads are deserialized elsewhere (:mod:`.rosmsg`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from vbp_live.core.errors import InputError
from vbp_live.recordings.bagrecords import (
    INNER_OPS,
    MAGIC,
    MAX_CHUNK_BYTES,
    MAX_HEADER,
    OP_BAGHEADER,
    OP_CHUNK,
    OP_CHUNK_INFO,
    OP_CONNECTION,
    OP_IDXDATA,
    OP_MSGDATA,
    TOP_OPS,
    BagError,
    RecordError,
    check_fields,
    find_record,
    inflate,
    op_of,
    parse_header,
    text,
    time_ns,
    u32,
    u64,
)
from vbp_live.recordings.base import SkipLog

__all__ = ["BagConnection", "BagError", "BagScanner", "ScanReport", "bag_topics"]

log = logging.getLogger(__name__)
MAX_NOTES = 10  # notes (non-UTF-8 names, ...) kept per file
MAX_INDEX_BYTES = 1 << 26  # the index section read for fallback connection records


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
    """What a scan of one bag found, what it skipped and where it stopped.

    Attributes:
        path: the bag file.
        size: file size in bytes.
        messages: whole messages yielded (all topics that were asked for).
        stopped_at: byte offset of the first record that could not be read and after which
            nothing readable follows (a cut), or None when the file was read to its end.
        problem: why it stopped there (None for a clean end).
        connections: every connection seen, by id.
        counts: messages read per connection id (all topics).
        position: the byte the scan has reached.
        skipped: damaged parts skipped, by reason (see the module docstring).
        notes: other problems found and survived, one line each (cut at a record boundary,
            never indexed, names that are not UTF-8).
        chunks: chunk records seen (damaged ones included).
    """

    path: Path
    size: int
    messages: int = 0
    stopped_at: int | None = None
    problem: str | None = None
    connections: dict[int, BagConnection] = field(default_factory=dict)
    counts: dict[int, int] = field(default_factory=dict)
    position: int = 0
    skipped: SkipLog = field(default_factory=SkipLog)
    notes: list[str] = field(default_factory=list)
    chunks: int = 0

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

    def warnings(self) -> list[str]:
        """Every problem of this file worth telling, one line each (empty for a clean file)."""
        out = [self.describe()] if self.stopped_at is not None else []
        out += [f"{self.path.name}: {n}" for n in self.notes]
        if self.skipped.counts:
            out.append(f"{self.path.name}: {self.skipped.describe()}")
        return out

    def note(self, line: str) -> None:
        """Add a note (at most :data:`MAX_NOTES`)."""
        if len(self.notes) < MAX_NOTES:
            self.notes.append(line)


class _Cut(Exception):
    """Internal: nothing readable follows the record at ``offset``."""

    def __init__(self, offset: int, problem: str):
        super().__init__(problem)
        self.offset, self.problem = offset, problem


class _Damage(Exception):
    """Internal: the record at ``offset`` cannot be framed (its lengths or header are garbage)."""

    def __init__(self, offset: int, problem: str):
        super().__init__(problem)
        self.offset, self.problem = offset, problem


def _connection(h: dict[str, bytes], data: bytes | memoryview, report: ScanReport) -> BagConnection:
    try:
        d = parse_header(data)
    except BagError as e:
        raise RecordError(f"connection record with a damaged body ({e})") from None
    if "type" not in d:
        raise RecordError("connection record without a message type")
    topic, ok_topic = text(h["topic"])
    msgtype, ok_type = text(d["type"])
    cid = u32(h, "conn")
    if not (ok_topic and ok_type):
        report.note(f"connection {cid}: topic '{topic}' / type '{msgtype}' are not UTF-8 (shown escaped)")
    return BagConnection(
        id=cid,
        topic=topic,
        msgtype=msgtype,
        md5sum=d.get("md5sum", b"").decode("ascii", "replace"),
        msgdef=d.get("message_definition", b"").decode("utf-8", "replace"),
    )


class BagScanner:
    """Iterate the messages of one ROS1 bag in file order, surviving truncation and damage.

    Args:
        path: the ``.bag`` file.

    Use :meth:`messages` (a generator); afterwards :attr:`report` says how far it got and what
    it skipped. While iterating, :meth:`where` locates the message just yielded.
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        if not self.path.is_file():
            raise InputError(f"{self.path}: no such bag file")
        self.size = self.path.stat().st_size
        self.report = ScanReport(self.path, self.size)
        self._f: BinaryIO | None = None
        self._offset: tuple[int, int | None] = (0, None)
        self._reset_state()

    def _reset_state(self) -> None:
        self._wanted: dict[int, bool] = {}
        self._fallback: dict[int, BagConnection] = {}
        self._chunk_read: dict[int, int] = {}
        self._chunk_unattributed = 0
        self._index_pos: int | None = None
        self._header_chunks: int | None = None

    def where(self) -> dict[str, int]:
        """Where the message just yielded is: ``{"offset": byte}``, plus ``in_chunk`` (its byte
        inside the decompressed chunk) when ``offset`` is that of a compressed chunk."""
        return _where(self._offset)

    def _read(self, pos: int, n: int) -> bytes:
        assert self._f is not None
        self._f.seek(pos)
        return self._f.read(n)

    def _check_magic(self) -> None:
        head = self._read(0, len(MAGIC))
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
        self._reset_state()
        with open(self.path, "rb") as f:
            self._f = f
            self._check_magic()
            try:
                yield from self._top_level(want)
            except _Cut as cut:
                self.report.stopped_at, self.report.problem = cut.offset, cut.problem
                log.warning("%s", self.report.describe())
            else:
                self._end_notes()
            finally:
                self._f = None

    # ------------------------------------------------------------ top level

    def _top_level(self, want) -> Iterator[tuple[BagConnection, int, memoryview]]:
        pos = len(MAGIC)
        while pos < self.size:
            self.report.position = pos
            try:
                h, op, dpos, dlen = self._head(pos)
            except _Damage as d:
                pos = self._resync(d)
                continue
            if op == OP_CHUNK:
                pos = yield from self._chunk(pos, h, dpos, dlen, want)
                continue
            if dpos + dlen > self.size:
                pos = self._resync(_Damage(pos, "file ends inside a record"))
                continue
            if op in (OP_MSGDATA, OP_CONNECTION):
                records = [(pos, h, memoryview(self._read(dpos, dlen)))]
                yield from self._records(records, want)
            else:
                self._other(pos, op, h, dlen)
            pos = dpos + dlen
        self.report.position = self.size

    def _head(self, pos: int) -> tuple[dict[str, bytes], int, int, int]:
        """Header, op, data position and data length of the record at ``pos`` (raises _Damage)."""
        raw = self._read(pos, 4)
        if len(raw) < 4:
            raise _Damage(pos, "record cut inside its header length")
        hlen = int.from_bytes(raw, "little")
        if hlen > MAX_HEADER:
            raise _Damage(pos, f"damaged record (header length {hlen})")
        hb = self._read(pos + 4, hlen + 4)
        if len(hb) < hlen + 4:
            raise _Damage(pos, "record cut inside its header")
        try:
            header = parse_header(hb[:hlen])
        except BagError as e:
            raise _Damage(pos, f"damaged record header ({e})") from None
        return header, op_of(header), pos + 8 + hlen, int.from_bytes(hb[hlen:], "little")

    def _resync(self, damage: _Damage) -> int:
        """Skip from a damaged record to the next readable one; _Cut when none follows."""
        nxt = find_record(self._read, damage.offset + 1, self.size, TOP_OPS)
        if nxt is None:
            raise _Cut(damage.offset, damage.problem)
        self.report.skipped.add("damaged_record", offset=damage.offset, skipped_bytes=nxt - damage.offset,
                                error=damage.problem)
        self._start_chunk()  # what follows is counted against the next index records
        return nxt

    def _other(self, pos: int, op: int, h: dict[str, bytes], dlen: int) -> None:
        """Top-level records that carry no messages: bag header, index data, chunk info, unknown."""
        try:
            check_fields(h, op)
        except RecordError as e:
            self.report.skipped.add("bad_record_header", offset=pos, error=str(e))
            return
        if op == OP_BAGHEADER:
            self._bag_header(pos, h)
        elif op == OP_IDXDATA:
            self._index_data(pos, h, dlen)
        elif op != OP_CHUNK_INFO:
            reason, error = _unknown(op)
            self.report.skipped.add(reason, offset=pos, error=error)

    def _bag_header(self, pos: int, h: dict[str, bytes]) -> None:
        if pos != len(MAGIC) or self._index_pos is not None:
            return
        self._index_pos, self._header_chunks = u64(h, "index_pos"), u32(h, "chunk_count")
        if 0 < self._index_pos < self.size:
            self._read_index_connections(self._index_pos)

    def _read_index_connections(self, pos: int) -> None:
        """Connection records of the index section: fallbacks for connections damaged in a chunk."""
        end = min(self.size, pos + MAX_INDEX_BYTES)
        while pos < end:
            try:
                h, op, dpos, dlen = self._head(pos)
                if op == OP_CONNECTION and dpos + dlen <= end:
                    check_fields(h, op)
                    c = _connection(h, self._read(dpos, dlen), ScanReport(self.path, self.size))
                    self._fallback.setdefault(c.id, c)
            except (_Damage, RecordError):
                return  # only a fallback: a damaged index is reported nowhere
            pos = dpos + dlen

    def _index_data(self, pos: int, h: dict[str, bytes], dlen: int) -> None:
        """An index record after a chunk: its messages of one connection that were not read are lost."""
        cid, count = u32(h, "conn"), u32(h, "count")
        if dlen != 12 * count:
            self.report.skipped.add("bad_record_header", offset=pos,
                                    error=f"index record lists {count} messages in {dlen} bytes")
            return
        read = self._chunk_read.get(cid, 0)
        self._chunk_read[cid] = max(0, read - count)
        lost = count - read
        forgiven = min(max(lost, 0), self._chunk_unattributed)  # already counted as bad record headers
        self._chunk_unattributed -= forgiven
        if lost - forgiven > 0:
            conn = self.report.connections.get(cid) or self._fallback.get(cid)
            topic = conn.topic if conn else f"connection {cid}"
            self.report.skipped.add("lost", lost - forgiven, topic=topic, offset=pos,
                                    error="listed by the chunk's index but not readable")

    def _end_notes(self) -> None:
        """After a scan to the end of the file: was the file closed properly and is it all there?"""
        ip, listed, found = self._index_pos, self._header_chunks, self.report.chunks
        if ip is None:
            self.report.note("no valid bag header: whether the file is complete cannot be checked")
        elif ip == 0:
            self.report.note(f"the bag was never indexed (its recorder did not close it): it may end early; "
                             f"read {found} chunks up to byte {self.size}")
        elif ip > self.size or (ip == self.size and listed is not None and found < listed):
            self.report.note(f"the file ends at byte {self.size} but its index starts at byte {ip}: the file was "
                             f"cut short, whatever was recorded after byte {self.size} is lost "
                             f"({found} of the {listed} chunks the bag lists were found)")
        elif listed is not None and found < listed:
            self.report.note(f"the bag lists {listed} chunks, only {found} were found: the rest is lost")

    # ------------------------------------------------------------ chunks

    def _start_chunk(self) -> None:
        self._chunk_read, self._chunk_unattributed = {}, 0

    def _chunk(self, pos: int, h, dpos: int, dlen: int, want) -> Iterator[tuple[BagConnection, int, memoryview]]:
        """Read, inflate and walk one chunk; returns where the top level goes on."""
        self.report.chunks += 1
        self._start_chunk()
        try:
            check_fields(h, OP_CHUNK)
        except RecordError as e:
            if dpos + dlen > self.size:
                return self._resync(_Damage(pos, str(e)))
            self.report.skipped.add("bad_record_header", offset=pos, error=str(e))
            return dpos + dlen
        comp, size = h["compression"].decode(), u32(h, "size")
        if comp == "none" and dpos + dlen > self.size >= dpos + size:
            dlen = size  # the data length is damaged; an uncompressed chunk's size says it too
        data = self._read(dpos, min(dlen, MAX_CHUNK_BYTES + 1))
        if len(data) > MAX_CHUNK_BYTES:
            return self._resync(_Damage(pos, f"chunk of {dlen} bytes, over the {MAX_CHUNK_BYTES >> 20} MiB limit"))
        inner, problem, used, ended = inflate(comp, data, size)
        whole = len(data) == dlen
        if problem and whole:
            self.report.skipped.add("damaged_chunk", offset=pos, error=problem)
        plain = comp == "none"
        chunk = (dpos, True) if plain else (pos, False)
        consumed = yield from self._records(self._chunk_records(inner, chunk, whole and problem is None), want, chunk)
        if whole:
            return dpos + dlen
        if not plain and ended and problem is None:  # the stream ended before the file: the data length is damaged
            return dpos + used
        if not plain:  # the file ends inside this chunk
            raise _Cut(pos, "file ends inside a chunk")
        return self._resync(_Damage(dpos + consumed, "file ends inside a chunk"))

    def _chunk_records(self, inner: bytes, chunk: tuple[int, bool], complete: bool):
        """Records of a decompressed chunk: (inner offset, header, data); damaged framing is skipped.

        ``complete``: the chunk inflated whole (else a partial last record is expected, not news).
        The generator's return value is the offset after the last whole record.
        """
        n, pos, read = len(inner), 0, (lambda o, k: inner[o : o + k])
        mv = memoryview(inner)
        while pos < n:
            try:
                h, dpos, dlen = self._inner_head(inner, pos)
            except _Damage as d:
                nxt = find_record(read, pos + 1, n, INNER_OPS)
                if nxt is None:
                    if complete:
                        self.report.skipped.add("damaged_record", **_where(_in_chunk(chunk, pos)),
                                                skipped_bytes=n - pos, error=d.problem)
                    return pos
                self.report.skipped.add("damaged_record", **_where(_in_chunk(chunk, pos)),
                                        skipped_bytes=nxt - pos, error=d.problem)
                pos = nxt
                continue
            yield pos, h, mv[dpos : dpos + dlen]
            pos = dpos + dlen
        return pos

    @staticmethod
    def _inner_head(buf: bytes, pos: int) -> tuple[dict[str, bytes], int, int]:
        n = len(buf)
        if pos + 4 > n:
            raise _Damage(pos, "record cut inside its header length")
        hlen = int.from_bytes(buf[pos : pos + 4], "little")
        if hlen > MAX_HEADER:
            raise _Damage(pos, f"damaged record (header length {hlen})")
        if pos + 8 + hlen > n:
            raise _Damage(pos, "record cut inside its header")
        try:
            header = parse_header(buf[pos + 4 : pos + 4 + hlen])
        except BagError as e:
            raise _Damage(pos, f"damaged record header ({e})") from None
        dlen = int.from_bytes(buf[pos + 4 + hlen : pos + 8 + hlen], "little")
        if pos + 8 + hlen + dlen > n:
            raise _Damage(pos, "record cut inside its data")
        return header, pos + 8 + hlen, dlen

    # ------------------------------------------------------------ messages and connections

    def _records(self, records, want, chunk: tuple[int, bool] | None = None
                 ) -> Iterator[tuple[BagConnection, int, memoryview]]:
        """Connections and messages from ``records``; returns the return value of ``records``.

        ``records`` yields ``(offset, header, data)``: file offsets (``chunk`` None), or offsets
        inside the chunk described by ``chunk = (base, plain)``: an uncompressed chunk's data
        starts at file byte ``base``; a compressed one is located by its record's byte ``base``.
        """
        it = iter(records)
        while True:
            try:
                off, h, data = next(it)
            except StopIteration as stop:
                return stop.value or 0
            where = (off, None) if chunk is None else _in_chunk(chunk, off)
            op = op_of(h)
            try:
                check_fields(h, op)
            except RecordError as e:
                self._skip_record("bad_record_header", str(e), where)
                continue
            if op == OP_CONNECTION:
                self._add_connection(h, data, where)
            elif op == OP_MSGDATA:
                msg = self._message(h, where, want)
                if msg is not None:
                    self._offset = where
                    yield msg[0], msg[1], data
            else:
                self._skip_record(*_unknown(op), where)

    def _skip_record(self, reason: str, error: str, where: tuple[int, int | None]) -> None:
        """Count a skipped record of a chunk; the chunk's index may list it as a message (not lost twice)."""
        self._chunk_unattributed += 1
        self.report.skipped.add(reason, **_where(where), error=error)

    def _add_connection(self, h: dict[str, bytes], data, where: tuple[int, int | None]) -> None:
        try:
            c = _connection(h, data, self.report)
        except RecordError as e:
            self.report.skipped.add("bad_connection", **_where(where), error=str(e))
            return
        self.report.connections.setdefault(c.id, c)

    def _message(self, h: dict[str, bytes], where, want) -> tuple[BagConnection, int] | None:
        cid = u32(h, "conn")
        conns = self.report.connections
        if cid not in conns:
            if cid not in self._fallback:
                self._skip_record("unknown_connection", f"message of connection {cid}, which the bag never "
                                  "defines", where)
                return None
            conns[cid] = self._fallback[cid]
        self.report.counts[cid] = self.report.counts.get(cid, 0) + 1
        self._chunk_read[cid] = self._chunk_read.get(cid, 0) + 1
        if cid not in self._wanted:
            self._wanted[cid] = bool(want(conns[cid]))
        if not self._wanted[cid]:
            return None
        self.report.messages += 1
        return conns[cid], time_ns(h["time"])


def bag_topics(path: str | os.PathLike[str]) -> dict[str, tuple[str, int]]:
    """Topic -> (type, message count) of a whole bag, by a full scan (works on cut bags)."""
    scanner = BagScanner(path)
    for _ in scanner.messages(lambda c: False):
        pass
    return scanner.report.topics()


def _unknown(op: int) -> tuple[str, str]:
    """Reason and error for a record of an unknown type (op -1: none readable)."""
    return ("unknown_record", f"record type {op}") if op >= 0 else ("bad_record_header", "no one-byte op field")


def _in_chunk(chunk: tuple[int, bool], off: int) -> tuple[int, int | None]:
    """Location of byte ``off`` of a chunk: a file byte for an uncompressed chunk (data at byte
    ``chunk[0]``), else (the compressed chunk's record byte, ``off``)."""
    base, plain = chunk
    return (base + off, None) if plain else (base, off)


def _where(where: tuple[int, int | None]) -> dict[str, int]:
    """A location as plain values: ``offset`` (file byte), plus ``in_chunk`` inside a compressed chunk."""
    return {"offset": where[0]} if where[1] is None else {"offset": where[0], "in_chunk": where[1]}
