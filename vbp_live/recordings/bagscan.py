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

Everything skipped is counted by reason in :attr:`~.bagreport.ScanReport.skipped` with the byte
offset of the first few (:mod:`.bagreport`: what a scan found and where); the records themselves
are parsed by :mod:`.bagrecords`, message payloads deserialized by :mod:`.rosmsg`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from vbp_live.core.errors import InputError
from vbp_live.recordings.bagrecords import (
    INNER_OPS,
    MAGIC,
    MAX_CHUNK_BYTES,
    OP_BAGHEADER,
    OP_CHUNK,
    OP_CHUNK_INFO,
    OP_CONNECTION,
    OP_IDXDATA,
    OP_MSGDATA,
    TOP_OPS,
    BagConnection,
    BagError,
    RecordDamage,
    RecordError,
    check_fields,
    connection_record,
    find_record,
    frame_at,
    frame_in,
    inflate,
    op_of,
    time_ns,
    u32,
    u64,
)
from vbp_live.recordings.bagreport import ScanReport, in_chunk, location

__all__ = ["BagConnection", "BagError", "BagScanner", "ScanReport", "bag_topics"]

log = logging.getLogger(__name__)
MAX_INDEX_BYTES = 1 << 26  # the index section read for fallback connection records


class _Cut(Exception):
    """Internal: nothing readable follows the record at ``offset``."""

    def __init__(self, offset: int, problem: str):
        super().__init__(problem)
        self.offset, self.problem = offset, problem


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
            what = "not a regular file" if self.path.exists() else "no such bag file"
            raise InputError(f"{self.path}: {what}")
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
        return location(self._offset)

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
                h, op, dpos, dlen = frame_at(self._read, pos)
            except RecordDamage as d:
                pos = self._resync(d)
                continue
            if op == OP_CHUNK:
                pos = yield from self._chunk(pos, h, dpos, dlen, want)
                continue
            if dpos + dlen > self.size:
                pos = self._resync(RecordDamage(pos, "file ends inside a record"))
                continue
            if op in (OP_MSGDATA, OP_CONNECTION):
                records = [(pos, h, memoryview(self._read(dpos, dlen)))]
                yield from self._records(records, want)
            else:
                self._other(pos, op, h, dlen)
            pos = dpos + dlen
        self.report.position = self.size

    def _resync(self, damage: RecordDamage) -> int:
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
                h, op, dpos, dlen = frame_at(self._read, pos)
                if op == OP_CONNECTION and dpos + dlen <= end:
                    check_fields(h, op)
                    c, _ = connection_record(h, self._read(dpos, dlen))
                    self._fallback.setdefault(c.id, c)
            except (RecordDamage, RecordError):
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
                return self._resync(RecordDamage(pos, str(e)))
            self.report.skipped.add("bad_record_header", offset=pos, error=str(e))
            return dpos + dlen
        comp, size = h["compression"].decode(), u32(h, "size")
        plain = comp == "none"
        if plain:
            dlen = min(dlen, size)  # the two must agree; the smaller cannot run into the next record
        data = self._read(dpos, min(dlen, MAX_CHUNK_BYTES + 1))
        if len(data) > MAX_CHUNK_BYTES:
            return self._resync(RecordDamage(pos, f"chunk of {dlen} bytes, over the {MAX_CHUNK_BYTES >> 20} MiB limit"))
        inner, problem, used, ended = inflate(comp, data, size)
        whole = len(data) == dlen
        if problem and whole:
            self.report.skipped.add("damaged_chunk", offset=pos, error=problem)
        chunk = (dpos, True) if plain else (pos, False)
        consumed = yield from self._records(self._chunk_records(inner, chunk, whole and problem is None), want, chunk)
        if not plain and ended:  # where the compressed stream ends (its data length may be damaged)
            return dpos + used
        if whole:
            return dpos + dlen
        if not plain:
            raise _Cut(pos, "file ends inside a chunk")
        return self._resync(RecordDamage(dpos + consumed, "file ends inside a chunk"))

    def _chunk_records(self, inner: bytes | bytearray, chunk: tuple[int, bool], complete: bool):
        """Records of a decompressed chunk: (inner offset, header, data); damaged framing is skipped.

        ``complete``: the chunk inflated whole (else a partial last record is expected, not news).
        The generator's return value is the offset after the last whole record.
        """
        n, pos, read = len(inner), 0, (lambda o, k: inner[o : o + k])
        mv = memoryview(inner)
        while pos < n:
            try:
                h, dpos, dlen = frame_in(inner, pos)
            except RecordDamage as d:
                nxt = find_record(read, pos + 1, n, INNER_OPS)
                if nxt is None:
                    if complete:
                        self.report.skipped.add("damaged_record", **location(in_chunk(chunk, pos)),
                                                skipped_bytes=n - pos, error=d.problem)
                    return pos
                self.report.skipped.add("damaged_record", **location(in_chunk(chunk, pos)),
                                        skipped_bytes=nxt - pos, error=d.problem)
                pos = nxt
                continue
            yield pos, h, mv[dpos : dpos + dlen]
            pos = dpos + dlen
        return pos

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
            where = (off, None) if chunk is None else in_chunk(chunk, off)
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
        self.report.skipped.add(reason, **location(where), error=error)

    def _add_connection(self, h: dict[str, bytes], data, where: tuple[int, int | None]) -> None:
        try:
            c, utf8 = connection_record(h, data)
        except RecordError as e:
            self.report.skipped.add("bad_connection", **location(where), error=str(e))
            return
        if not utf8:
            self.report.note(f"connection {c.id}: topic '{c.topic}' / type '{c.msgtype}' are not UTF-8 (shown escaped)")
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
