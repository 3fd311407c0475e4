"""Damaged ROS1 bags: every message that can be read is kept, everything skipped is counted by reason.

Bags are written with rosbags' own writer (prep_fixtures), then damaged at known offsets or
rebuilt record by record (fuzzing.bag_mutators' independent parser) so each case is exact.
"""

from __future__ import annotations

import bz2
import json
import random
import signal
import struct
import subprocess
import sys
from collections import Counter
from pathlib import Path

import lz4.frame
import numpy as np
import pytest
import yaml
from fuzzing.bag_mutators import HOSTILE_DEFS, build_bag, mutate_bag, mutate_bag_named, parse_bag
from prep_fixtures import CENTER, STEER, T0, flat_jpeg, steering_series, write_bag
from rosbags.rosbag1 import Reader

from data_prep.pipeline import prepare
from vbp_live.core.errors import InputError, VbpLiveError
from vbp_live.io.bag_source import BagFrameSource
from vbp_live.recordings.bag import BagRecording
from vbp_live.recordings.bagrecords import MAX_CHUNK_BYTES
from vbp_live.recordings.bagscan import BagScanner
from vbp_live.recordings.formats import open_recording
from vbp_live.recordings.options import CameraConfig
from vbp_live.recordings.rosmsg import MAX_DEF_FIELDS

MS = 1_000_000
N_FRAMES = 12


def _bag(path: Path, compression: str | None = None, chunk: int = 4000, n: int = N_FRAMES) -> Path:
    frames = [(T0 + 50 * MS * i, flat_jpeg(40 + 10 * i, noise=8, seed=i)) for i in range(n)]
    return write_bag(path, frames, steering_series(T0 - 100 * MS, T0 + 50 * MS * n + 100 * MS),
                     compression=compression, chunk_threshold=chunk)


def _payloads(bag: Path) -> list[tuple[str, bytes]]:
    with Reader(bag) as r:
        return [(c.topic, bytes(d)) for c, _, d in r.messages()]


def _record_start(blob: bytes, payload: bytes) -> int:
    """File offset of the (uncompressed) record whose data is ``payload``."""
    data_at = blob.index(payload)
    for start in range(data_at - 200, data_at - 8):
        (hlen,) = struct.unpack_from("<I", blob, start)
        if start + 8 + hlen == data_at and b"op=\x02" in blob[start + 4 : start + 4 + hlen]:
            return start
    raise AssertionError("record not found")


def _scan(path: Path) -> tuple[list, BagScanner]:
    s = BagScanner(path)
    return [(c.topic, bytes(d)) for c, _, d in s.messages()], s


def _manifest(out: Path) -> dict:
    return yaml.safe_load((out / "manifest.yaml").read_text())


def test_undecodable_messages_are_skipped_counted_and_located(tmp_path):
    bag = _bag(tmp_path / "a.bag")
    msgs = _payloads(bag)
    steer = [d for t, d in msgs if t == STEER]
    cams = [d for t, d in msgs if t == CENTER]
    blob = bytearray(bag.read_bytes())
    starts = {"huge_string": _record_start(blob, steer[5]), "flipped": _record_start(blob, cams[3]),
              "zeroed": _record_start(blob, cams[6])}
    i = blob.index(steer[5])
    blob[i + 12 : i + 16] = b"\xff\xff\xff\xff"  # frame_id's string length after seq + stamp
    i = blob.index(cams[3])
    blob[i + 16 : i + 20] = b"\x00\x00\x00\x7f"  # the format string's length (frame_id is empty)
    i = blob.index(cams[6])
    blob[i + 16 : i + 32] = bytes(16)  # a zeroed block: no format, then "jpeg" read as the data length
    recs = parse_bag(bytes(blob))
    short = next(r for c in recs for r in c.inner or [] if r.data == steer[30])
    short.data = short.data[:-6]  # a short payload, record lengths fixed up
    bad = tmp_path / "bad" / "a.bag"
    bad.parent.mkdir()
    bad.write_bytes(build_bag(recs))

    res = prepare([bad], tmp_path / "out", progress=False)
    man = _manifest(res.out_dir)
    counts = man["skipped"]["counts"]
    assert counts == {"undecodable": 4}
    assert res.counts["read"] == N_FRAMES - 2 and res.counts["kept"] == N_FRAMES - 2
    first = man["skipped"]["first"]
    assert all(f["file"] == "a.bag" and f["reason"] == "undecodable" for f in first)
    located = {(f["topic"], f["offset"]) for f in first}
    assert located >= {(STEER, starts["huge_string"]), (CENTER, starts["flipped"]), (CENTER, starts["zeroed"])}
    assert any("undecodable" in w and "a.bag" in w for w in man["warnings"])
    ok = prepare([bag], tmp_path / "clean", progress=False)
    assert _manifest(ok.out_dir)["skipped"] == {"counts": {}, "first": []}

    src = BagFrameSource(bad)  # run's bag source: same skips, frames still in order with truth
    frames = list(src.frames())
    assert len(frames) == N_FRAMES - 2 and src.skipped.counts == counts
    assert any("undecodable" in w for w in src.warnings)


def test_steering_values_no_sensor_reports_are_skipped_not_trained_on(tmp_path):
    bag = _bag(tmp_path / "a.bag")
    steer = [d for t, d in _payloads(bag) if t == STEER]
    blob = bytearray(bag.read_bytes())
    i = blob.index(steer[10])
    blob[i + 16 : i + 20] = struct.pack("<f", float("nan"))  # steering_wheel_angle after the 16-byte header
    i = blob.index(steer[11])
    blob[i + 28 : i + 32] = b"\xff\xff\x7f\x7f"  # speed = 3.4e38: a flipped exponent
    bad = tmp_path / "bad" / "a.bag"
    bad.parent.mkdir()
    bad.write_bytes(bytes(blob))
    res = prepare([bad], tmp_path / "out", progress=False)
    man = _manifest(res.out_dir)
    assert man["skipped"]["counts"] == {"bad_value": 2}
    assert "nan" in man["skipped"]["first"][0]["error"]
    rows = (res.out_dir / "index.csv").read_text().splitlines()[1:]
    assert len(rows) == N_FRAMES and all(abs(float(r.split(",")[2])) < 1 for r in rows)


@pytest.mark.parametrize("compression", [None, "lz4", "bz2"])
def test_malformed_record_headers_inside_a_chunk(tmp_path, compression):
    bag = _bag(tmp_path / "a.bag", compression)
    whole, _ = _scan(bag)
    recs = parse_bag(bag.read_bytes())
    inner = [r for c in recs for r in c.inner or [] if r.op == 2]
    damaged = {5: "no time", 9: "short conn", 14: "no op", 20: "unknown op", 25: "unknown conn"}
    for k in damaged:
        r = inner[k]
        if k == 5:
            r.fields = [(n, v) for n, v in r.fields if n != b"time"]
        elif k == 9:
            r.set(b"conn", b"\x00\x00")
        elif k == 14:
            r.fields = [(n, v) for n, v in r.fields if n != b"op"]
        elif k == 20:
            r.set(b"op", b"\x09")
        else:
            r.set(b"conn", struct.pack("<I", 99))
    bad = tmp_path / "bad.bag"
    bad.write_bytes(build_bag(recs))
    got, s = _scan(bad)
    assert got == [m for k, m in enumerate(whole) if k not in damaged]
    assert s.report.skipped.counts == {"bad_record_header": 3, "unknown_record": 1, "unknown_connection": 1}
    assert s.report.stopped_at is None
    res = prepare([bad], tmp_path / "out", progress=False)  # no KeyError('time'), struct.error or IndexError
    assert _manifest(res.out_dir)["skipped"]["counts"] == s.report.skipped.counts


def test_non_utf8_topic_is_read_escaped_and_noted(tmp_path):
    frames = [(T0 + 50 * MS * i, flat_jpeg(60)) for i in range(6)]
    extra = [("/left_camera/image_color/compressed", T0 + 50 * MS * i + MS, flat_jpeg(90)) for i in range(6)]
    bag = write_bag(tmp_path / "a.bag", frames, steering_series(T0 - 100 * MS, T0 + 400 * MS), extra=extra)
    recs = parse_bag(bag.read_bytes())
    for r in [r for c in recs for r in [c, *(c.inner or [])] if r.op == 7]:
        if r.get(b"topic").startswith(b"/left"):
            r.set(b"topic", b"/left\xff\xfe_camera")
    bad = tmp_path / "bad" / "a.bag"
    bad.parent.mkdir()
    bad.write_bytes(build_bag(recs))
    res = prepare([bad], tmp_path / "out", progress=False)
    assert res.counts["kept"] == 6
    assert any("not UTF-8" in w and "/left\\xff\\xfe_camera" in w for w in res.warnings)
    with pytest.raises(InputError, match="no camera frames") as e:  # the listing shows the escaped name
        BagRecording([bad], CameraConfig(topics=("/nowhere",))).scan()
    assert "/left\\xff\\xfe_camera" in str(e.value)


def _chunk_bag(tmp_path: Path, compression: str) -> tuple[Path, list, list]:
    bag = _bag(tmp_path / f"{compression}.bag", compression)
    recs = parse_bag(bag.read_bytes())
    return bag, recs, _scan(bag)[0]


@pytest.mark.parametrize("compression", ["bz2", "lz4"])
def test_chunk_inflating_past_its_stated_size_is_cut_there(tmp_path, compression):
    bag, recs, whole = _chunk_bag(tmp_path, compression)
    chunk = next(r for r in recs if r.op == 5)
    raw = b"".join(struct.pack("<I", len(h)) + h + struct.pack("<I", len(r.data)) + r.data
                   for r in chunk.inner
                   for h in [b"".join(struct.pack("<I", len(k) + 1 + len(v)) + k + b"=" + v for k, v in r.fields)])
    bomb = raw + bytes(8 << 20)  # 8 MB of zeros the header does not mention
    chunk.data = bz2.compress(bomb) if compression == "bz2" else lz4.frame.compress(bomb)
    chunk.set(b"size", struct.pack("<I", len(raw)))
    bad = tmp_path / "bomb.bag"
    bad.write_bytes(build_bag(recs, refresh=False))
    got, s = _scan(bad)
    assert got == whole  # the stated size holds every record; the rest is never inflated
    assert s.report.skipped.counts == {"damaged_chunk": 1}
    assert "inflates past" in s.report.skipped.first[0]["error"]

    chunk.set(b"size", struct.pack("<I", MAX_CHUNK_BYTES + 1))  # an absurd stated size: refused before inflating
    bad.write_bytes(build_bag(recs, refresh=False))
    got, s = _scan(bad)
    n_first = len(chunk.inner) - sum(r.op == 7 for r in chunk.inner)
    assert got == whole[n_first:] and s.report.skipped.counts == {"damaged_chunk": 1, "lost": n_first}
    assert "over the 256 MiB limit" in s.report.skipped.first[0]["error"]


@pytest.mark.parametrize("name", ["wide", "many_fields", "recursive", "deep", "deep_100", "empty_array"])
def test_hostile_message_definitions_are_refused_with_one_line(tmp_path, name):
    bag = _bag(tmp_path / "a.bag")
    recs = parse_bag(bag.read_bytes())
    for r in [r for c in recs for r in [c, *(c.inner or [])] if r.op == 7 and r.get(b"topic") == STEER.encode()]:
        body = parse_bag(b"#ROSBAG V2.0\n" + struct.pack("<I", len(r.data)) + r.data + struct.pack("<I", 0))[0]
        body.fields = [(k, HOSTILE_DEFS[name]() if k == b"message_definition" else v)
                       for k, v in body.fields if k != b"md5sum"]
        r.data = b"".join(struct.pack("<I", len(k) + 1 + len(v)) + k + b"=" + v for k, v in body.fields)
    bad = tmp_path / "bad.bag"
    bad.write_bytes(build_bag(recs))
    with pytest.raises(InputError) as e:
        prepare([bad], tmp_path / "out", progress=False)
    msg = str(e.value)
    assert "\n" not in msg and "bad.bag" in msg and STEER in msg and "refused" in msg
    want = {"wide": "over the 256 KB limit", "many_fields": f"more than {MAX_DEF_FIELDS} fields",
            "recursive": "is recursive", "deep": "over the 256 KB limit", "deep_100": "more than 32 deep",
            "empty_array": "takes no bytes"}[name]
    assert want in msg


def _cut_after(recs: list, k: int) -> bytes:
    """The bag's bytes up to the end of top-level record ``k`` (a record boundary)."""
    return build_bag(recs[: k + 1])


def test_cut_exactly_at_a_record_boundary_or_never_indexed_is_said(tmp_path):
    bag = _bag(tmp_path / "a.bag")
    recs = parse_bag(bag.read_bytes())
    chunk_ends = [k for k, r in enumerate(recs) if r.op == 4 and (k + 1 == len(recs) or recs[k + 1].op != 4)]
    cut = tmp_path / "cut" / "a.bag"
    cut.parent.mkdir()
    cut.write_bytes(_cut_after(recs, chunk_ends[1]))  # two whole chunks and their index records, nothing after
    res = prepare([cut], tmp_path / "out", progress=False)
    man = _manifest(res.out_dir)
    note = next(w for w in man["warnings"] if "cut short" in w)
    assert f"ends at byte {cut.stat().st_size}" in note and "2 of the 5 chunks" in note
    assert res.counts["read"] < N_FRAMES

    recs[0].set(b"index_pos", struct.pack("<Q", 0))  # a recorder that never closed its bag
    open_bag = tmp_path / "open" / "a.bag"
    open_bag.parent.mkdir()
    open_bag.write_bytes(_cut_after(recs, chunk_ends[1]))
    src = BagFrameSource(open_bag)
    assert any("never indexed" in w for w in src.warnings)

    whole = prepare([bag], tmp_path / "whole", progress=False)  # a complete bag says nothing
    assert whole.warnings == []


@pytest.mark.parametrize("compression", [None, "bz2"])
def test_damaged_chunk_loses_only_its_messages_and_says_how_many(tmp_path, compression):
    bag = _bag(tmp_path / "a.bag", compression)
    whole, _ = _scan(bag)
    with Reader(bag) as r:
        info = r.chunk_infos[1]
        chunk = r.chunks[info.pos]
        in_chunk = sum(info.connection_counts.values())
    blob = bytearray(bag.read_bytes())
    if compression:
        blob[chunk.datapos + 100 : chunk.datapos + 164] = bytes(64)  # zeroed block inside the bz2 stream
    else:
        blob[info.pos : info.pos + 4] = b"\xff\xff\xff\x7f"  # the chunk record's header length
    bad = tmp_path / "bad.bag"
    bad.write_bytes(bytes(blob))
    got, s = _scan(bad)
    before = sum(sum(ci.connection_counts.values()) for ci in Reader(bag).__enter__().chunk_infos[:1])
    assert got[:before] == whole[:before] and got[before:] == whole[before + in_chunk :]
    counts = s.report.skipped.counts
    assert counts["lost"] == in_chunk and s.report.stopped_at is None
    assert counts.get("damaged_chunk", 0) + counts.get("damaged_record", 0) == 1


@pytest.mark.slow
def test_cli_prep_and_run_on_a_damaged_bag_show_no_traceback(tmp_path):
    bag = _bag(tmp_path / "a.bag")
    blob = bytearray(bag.read_bytes())
    steer = [d for t, d in _payloads(bag) if t == STEER]
    i = blob.index(steer[7])
    blob[i + 12 : i + 16] = b"\xff\xff\xff\xff"
    bad = tmp_path / "in" / "a.bag"
    bad.parent.mkdir()
    bad.write_bytes(bytes(blob))
    env_cmd = [sys.executable, "-m", "vbp_live.cli.main"]
    prep = subprocess.run([*env_cmd, "prep", str(bad), "-o", str(tmp_path / "ds"), "--no-progress"],
                          capture_output=True, text=True, timeout=300)
    assert prep.returncode == 0, prep.stderr
    assert "Traceback" not in prep.stderr and "undecodable" in prep.stdout
    stats = tmp_path / "stats.json"
    run = subprocess.run([*env_cmd, "run", str(bad), "--no-output", "--device", "cpu", "--quiet",
                          "--stats-json", str(stats)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr and "source warning" in run.stdout and "undecodable" in run.stdout
    source = json.loads(stats.read_text())["source"]  # the skips, machine-readable
    assert sum(source["skipped"]["counts"].values()) >= 1 and source["skipped"]["first"][0]["reason"]
    assert any("undecodable" in w for w in source["warnings"])


# ---------------------------------------------------------------- seeded mutants

class _Hang(Exception):
    pass


def _alarm(*_):
    raise _Hang


def _read_both(path: Path) -> str:
    """prep's reader (both passes) and run's bag source on one file: 'ok' or 'clear error'."""
    try:
        rec = open_recording([path])
        scan = rec.scan()
        n = sum(1 for _ in rec.payloads(np.ones(len(scan.frame_t), bool)))
        assert n == len(scan.frame_t)
        with BagFrameSource(path) as src:
            for _ in src.frames():
                pass
    except VbpLiveError as e:
        assert "\n" not in str(e).strip(), str(e)
        return "clear error"
    except OSError as e:
        assert e.filename is not None, e
        return "clear error"
    return "ok"


def test_mutator_is_deterministic(tmp_path):
    data = _bag(tmp_path / "a.bag").read_bytes()
    a = [mutate_bag(data, random.Random(s)) for s in range(20)]
    assert a == [mutate_bag(data, random.Random(s)) for s in range(20)]
    assert len({hash(x) for x in a}) > 15 and all(x != data for x in a)


@pytest.mark.slow
def test_seeded_mutants_never_crash_or_hang(tmp_path, capsys):
    seeds = {c: _bag(tmp_path / f"seed_{c}.bag", c).read_bytes() for c in (None, "lz4", "bz2")}
    outcomes: Counter = Counter()
    by_mutation: Counter = Counter()
    old = signal.signal(signal.SIGALRM, _alarm)
    try:
        for seed in range(100):
            comp = (None, "lz4", "bz2")[seed % 3]
            m = mutate_bag_named(seeds[comp], random.Random(f"bag:{seed}"))
            path = tmp_path / f"m{seed}.bag"
            path.write_bytes(m.data)
            signal.alarm(60)  # generous: a case takes well under a second
            try:
                outcome = _read_both(path)
            except _Hang:
                outcome = "hang"
            finally:
                signal.alarm(0)
            outcomes[outcome] += 1
            by_mutation.update(f"{name}: {outcome}" for name in m.applied)
            assert outcome != "hang", f"seed {seed} ({comp}, {m.applied}) did not finish"
            path.unlink()
    finally:
        signal.signal(signal.SIGALRM, old)
    with capsys.disabled():
        print(f"\nbag mutants: {dict(outcomes)}; by mutation: {dict(sorted(by_mutation.items()))}")
    assert outcomes["ok"] + outcomes["clear error"] == 100 and outcomes["ok"] > 50
