"""The streaming ROS1 bag scanner: agrees with rosbags on whole bags, survives truncation."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from prep_fixtures import T0, flat_jpeg, steering_series, write_bag
from rosbags.rosbag1 import Reader, ReaderError

from vbp_live.core.errors import InputError
from vbp_live.recordings.bagscan import BagError, BagScanner, bag_topics


def _bag(tmp_path: Path, name: str = "a.bag", n: int = 40, **kw) -> Path:
    frames = [(T0 + 100_000_000 + k * 50_000_000, flat_jpeg(k * 5, noise=20, seed=k)) for k in range(n)]
    return write_bag(tmp_path / name, frames, steering_series(T0, T0 + n * 50_000_000 + 200_000_000), **kw)


def _scan(path: Path) -> tuple[list[tuple[str, int, bytes]], BagScanner]:
    s = BagScanner(path)
    return [(c.topic, t, bytes(d)) for c, t, d in s.messages()], s


def _rosbags(path: Path) -> list[tuple[str, int, bytes]]:
    with Reader(path) as r:
        return [(c.topic, t, bytes(d)) for c, t, d in r.messages()]


@pytest.mark.parametrize("compression", [None, "lz4", "bz2"])
def test_whole_bag_matches_rosbags(tmp_path, compression):
    bag = _bag(tmp_path, compression=compression, chunk_threshold=20_000)
    mine, s = _scan(bag)
    theirs = _rosbags(bag)
    assert sorted(mine) == sorted(theirs) and len(mine) == 40 + len(steering_series(T0, T0 + 2_200_000_000))
    assert s.report.stopped_at is None and s.report.messages == len(mine)
    for topic in ("/center_camera/image_color/compressed", "/vehicle/steering_report"):  # per topic: same order
        assert [m for m in mine if m[0] == topic] == [m for m in theirs if m[0] == topic]


def test_real_duckietown_bag(shared_data):
    bag = shared_data / "rosbag1" / "duckietown_gym_test.bag"
    mine, s = _scan(bag)
    assert mine == _rosbags(bag)
    assert [(m[0], m[1]) for m in mine] == [("/gym/observations", 1539268786723917961)]
    conn = next(iter(s.report.connections.values()))
    assert conn.msgtype == "sensor_msgs/CompressedImage" and "# This message contains a compressed image" in conn.msgdef
    assert bag_topics(bag) == {"/gym/observations": ("sensor_msgs/CompressedImage", 1)}


def _message_ends(bag: Path, msgs: list[tuple[str, int, bytes]]) -> list[int]:
    """Byte offset where each message's record ends: its payload is stored verbatim (uncompressed)."""
    blob, ends, pos = bag.read_bytes(), [], 0
    for _, _, data in msgs:
        start = blob.index(data, pos)
        ends.append(start + len(data))
        pos = start + 1
    return ends


def test_truncation_keeps_exactly_the_whole_records_before_the_cut(tmp_path):
    bag = _bag(tmp_path, chunk_threshold=30_000)
    whole, _ = _scan(bag)
    ends = _message_ends(bag, whole)
    size = bag.stat().st_size
    cuts = [4096 + 13 + 5, ends[3] - 1, ends[3], ends[3] + 7, ends[len(ends) // 2] + 100, ends[-1] - 2, ends[-1] + 40,
            size - 1]
    for cut in cuts:
        part = tmp_path / f"cut_{cut}.bag"
        part.write_bytes(bag.read_bytes()[:cut])
        with pytest.raises(ReaderError):  # what rosbags itself does with such a file
            Reader(part).open()
        got, s = _scan(part)
        expected = sum(e <= cut for e in ends)
        assert got == whole[:expected], f"cut at {cut}"
        assert s.report.messages == expected
        if expected < len(whole):
            assert s.report.stopped_at is not None and s.report.stopped_at <= cut
            assert f"of {cut}" in s.report.describe() and "whole messages before it" in s.report.describe()


def _whole_chunk_counts(bag: Path) -> list[tuple[int, int]]:
    """(byte where the chunk's data ends, messages in it) per chunk, from rosbags' index."""
    with Reader(bag) as r:
        return [(r.chunks[ci.pos].datapos + r.chunks[ci.pos].datasize, sum(ci.connection_counts.values()))
                for ci in r.chunk_infos]


@pytest.mark.parametrize("compression", ["lz4", "bz2"])
def test_truncated_compressed_bag_keeps_every_whole_chunk(tmp_path, compression):
    bag = _bag(tmp_path, compression=compression, chunk_threshold=20_000)
    whole, _ = _scan(bag)
    chunks = _whole_chunk_counts(bag)
    assert len(chunks) >= 3
    counts = []
    for cut in [chunks[0][0] - 1, chunks[0][0] + 3, chunks[1][0] + 50, chunks[-1][0] - 10]:
        part = tmp_path / f"cut_{cut}.bag"
        part.write_bytes(bag.read_bytes()[:cut])
        got, s = _scan(part)
        at_least = sum(n for end, n in chunks if end <= cut)
        assert got == whole[: len(got)] and len(got) >= at_least and s.report.stopped_at is not None
        counts.append(len(got))
    assert counts == sorted(counts) and counts[1] > 0


def test_garbage_record_is_skipped_and_counted(tmp_path):
    bag = _bag(tmp_path, chunk_threshold=30_000)
    whole, _ = _scan(bag)
    ends = _message_ends(bag, whole)
    blob = bytearray(bag.read_bytes())
    blob[ends[10] : ends[10] + 4] = b"\xff\xff\xff\x7f"  # next record claims a 2 GB header
    bad = tmp_path / "bad.bag"
    bad.write_bytes(bytes(blob))
    got, s = _scan(bad)  # that one record is lost, the rest of the bag is kept
    assert got == whole[:11] + whole[12:] and s.report.stopped_at is None
    assert s.report.skipped.counts == {"damaged_record": 1, "lost": 1}
    first = s.report.skipped.first[0]
    assert first["offset"] == ends[10] and "damaged" in first["error"]
    assert s.report.skipped.first[1]["topic"] == whole[11][0]


def test_not_a_bag_and_empty_file(tmp_path):
    empty = tmp_path / "empty.bag"
    empty.write_bytes(b"")
    with pytest.raises(BagError, match="empty"):
        list(BagScanner(empty).messages())
    other = tmp_path / "x.bag"
    shutil.copy(Path(__file__), other)
    with pytest.raises(BagError, match="not a ROS1 v2.0 bag"):
        list(BagScanner(other).messages())
    with pytest.raises(InputError, match="no such bag file"):
        BagScanner(tmp_path / "missing.bag")
