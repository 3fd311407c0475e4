"""What a scan of one ROS1 bag found: :class:`ScanReport`, and how it names places in the file.

:class:`~.bagscan.BagScanner` fills a report as it walks the file: the connections and message
counts it read, what it skipped by reason (with the byte offsets of the first few), where and why
it stopped, and notes on problems it survived. A place is a file byte, or for a record inside a
compressed chunk the chunk record's file byte plus the byte inside the decompressed chunk
(:func:`in_chunk`, :func:`location`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from vbp_live.recordings.bagrecords import BagConnection
from vbp_live.recordings.base import SkipLog

MAX_NOTES = 10  # notes (non-UTF-8 names, ...) kept per file


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


def in_chunk(chunk: tuple[int, bool], off: int) -> tuple[int, int | None]:
    """Location of byte ``off`` of a chunk: a file byte for an uncompressed chunk (data at byte
    ``chunk[0]``), else (the compressed chunk's record byte, ``off``)."""
    base, plain = chunk
    return (base + off, None) if plain else (base, off)


def location(where: tuple[int, int | None]) -> dict[str, int]:
    """A location as plain values: ``offset`` (file byte), plus ``in_chunk`` inside a compressed chunk."""
    return {"offset": where[0]} if where[1] is None else {"offset": where[0], "in_chunk": where[1]}
