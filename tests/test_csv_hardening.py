"""Hostile and unlucky CSVs of bag dumps and simulator logs: one clear line, or a counted drop.

Every CSV and image here is written for the test (csv module, OpenCV's JPEG encoder); the
readers are the real ones, and ``prepare`` runs the whole preparation where counts matter.
"""

from __future__ import annotations

import csv
import os
import random
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from fuzzing.csv_mutators import mutate_dump, mutate_simlog
from fuzzing.reader_cases import outcome, read_recording

from data_prep.config import load_config
from data_prep.pipeline import prepare
from vbp_live.core.errors import InputError
from vbp_live.recordings.csvrows import number, read_csv_rows, timestamp_ns
from vbp_live.recordings.formats import open_recording

T0 = 1_479_425_441_000_000_000
N = 8


def small_jpeg(i: int) -> bytes:
    rng = np.random.default_rng(i)
    img = cv2.GaussianBlur(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8), (0, 0), 3)
    return cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()


def write_csv(path: Path, rows: list[list[object]], encoding: str = "utf-8") -> None:
    with open(path, "w", newline="", encoding=encoding) as f:
        csv.writer(f).writerows(rows)


def make_dump(d: Path, names: list[str] | None = None, stamps: list[object] | None = None) -> Path:
    """A bag-dump folder: N center frames at 20 Hz, steering at 50 Hz, speed 10 m/s."""
    (d / "center").mkdir(parents=True)
    rows: list[list[object]] = [["timestamp", "width", "height", "frame_id", "filename"]]
    for i in range(N):
        t = T0 + 50_000_000 * i
        (d / "center" / f"{t}.jpg").write_bytes(small_jpeg(i))
        name = names[i] if names else f"center/{t}.jpg"
        rows.append([stamps[i] if stamps else t, 160, 120, "center_camera", name])
    write_csv(d / "camera.csv", rows)
    steer = [["timestamp", "angle", "torque", "speed"]]
    steer += [[T0 - 100_000_000 + 20_000_000 * k, 0.01 * k, 0.0, 10.0] for k in range(30)]
    write_csv(d / "steering.csv", steer)
    return d


def sim_name(i: int) -> str:
    return f"center_2016_12_01_13_30_48_{100 + 50 * i:03d}.jpg"


def make_simlog(d: Path, steering: list[object] | None = None, cells: list[str] | None = None,
                header: bool = False) -> Path:
    """A simulator log folder: N rows, images in IMG/, speed 30 mph."""
    (d / "IMG").mkdir(parents=True)
    rows: list[list[object]] = [["center", "left", "right", "steering", "throttle", "brake", "speed"]] if header else []
    for i in range(N):
        (d / "IMG" / sim_name(i)).write_bytes(small_jpeg(i))
        cell = cells[i] if cells else f"IMG/{sim_name(i)}"
        rows.append([cell, "", "", steering[i] if steering else 0.1 * (i % 3 - 1), 0.5, 0, 30.0])
    write_csv(d / "driving_log.csv", rows)
    return d / "driving_log.csv"


def scan_error(path: Path) -> str:
    with pytest.raises(InputError) as e:
        open_recording([path]).scan()
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def prep(inputs: list[Path], out: Path):
    return prepare([str(p) for p in inputs], out, load_config(None, {"filter.min_speed_mps": 1.0}), progress=False)


# ---------------------------------------------------------------- paths named by CSV rows

@pytest.mark.parametrize("name", ["/dev/zero", "../../etc/passwd", "/etc/passwd", "center/../../x.jpg",
                                  "C:\\\\frames\\\\1.jpg", "", "center"])
def test_dump_row_naming_a_path_outside_or_not_a_file_is_refused(tmp_path, name):
    names = [f"center/{T0 + 50_000_000 * i}.jpg" for i in range(N)]
    names[3] = name
    d = make_dump(tmp_path / "dump", names)
    msg = scan_error(d)
    assert "camera.csv:5: image path" in msg and repr(name) in msg


def test_dump_row_naming_a_fifo_or_symlink_is_refused_without_reading(tmp_path):
    d = make_dump(tmp_path / "dump")
    target = d / "center" / f"{T0}.jpg"
    fifo = d / "center" / f"{T0 + 50_000_000 * 2}.jpg"
    fifo.unlink()
    os.mkfifo(fifo)  # reading it would block forever
    assert "is not a regular file" in scan_error(d)
    fifo.unlink()
    fifo.symlink_to(target)
    assert "symbolic link" in scan_error(d)
    fifo.unlink()
    (d / "center" / "sub").symlink_to("/etc")
    names = [f"center/{T0 + 50_000_000 * i}.jpg" for i in range(N)]
    names[1] = "center/sub/passwd"
    d2 = make_dump(tmp_path / "dump2", names)
    (d2 / "center" / "sub").symlink_to("/etc")
    assert "symbolic link" in scan_error(d2)


def test_prep_cli_refuses_passwd_with_one_line(tmp_path):
    names = [f"center/{T0 + 50_000_000 * i}.jpg" for i in range(N)]
    names[0] = "../../../../../../etc/passwd"
    d = make_dump(tmp_path / "dump", names)
    p = subprocess.run([sys.executable, "-m", "vbp_live.cli.main", "prep", str(d), "-o", str(tmp_path / "o")],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 1, p.stderr
    lines = [ln for ln in p.stderr.splitlines() if "error" in ln or "Traceback" in ln]
    assert len(lines) == 1 and "camera.csv:2" in lines[0] and "leaves the recording folder" in lines[0]
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("cell", ["..", "IMG/", "C:\\\\sim\\\\IMG\\\\.."])
def test_sim_row_naming_no_file_is_refused(tmp_path, cell):
    cells = [f"IMG/{sim_name(i)}" for i in range(N)]
    cells[2] = cell
    assert "driving_log.csv:3" in scan_error(make_simlog(tmp_path / "sim", cells=cells))


def test_sim_image_that_is_a_link_or_fifo_is_refused(tmp_path):
    log = make_simlog(tmp_path / "sim")
    img = log.parent / "IMG" / sim_name(4)
    img.unlink()
    img.symlink_to("/etc/passwd")
    assert "driving_log.csv:5" in scan_error(log) and "symbolic link" in scan_error(log)
    img.unlink()
    os.mkfifo(img)
    assert "not a regular file" in scan_error(log)


# ---------------------------------------------------------------- values

def test_sim_steering_outside_unit_range_is_an_error(tmp_path):
    steering: list[object] = [0.0] * N
    steering[2] = 5.0
    msg = scan_error(make_simlog(tmp_path / "sim", steering=steering))
    assert "driving_log.csv:3" in msg and "[-1, 1]" in msg and "5.0" in msg
    steering[2] = -1.0
    scan = open_recording([make_simlog(tmp_path / "ok", steering=steering)]).scan()
    assert np.all(np.abs(scan.presynced["steering"]) <= np.radians(25) * 14.8 + 1e-9)


def test_sim_nan_steering_is_dropped_and_counted(tmp_path):
    steering: list[object] = [0.0] * N
    steering[5] = "nan"
    res = prep([make_simlog(tmp_path / "sim", steering=steering)], tmp_path / "o")
    assert res.counts["dropped"] == {"steering_missing": 1} and res.counts["kept"] == N - 1


@pytest.mark.parametrize("text", ["5_000", "٣", "１", "0x10", "1,5", "1e", "--1", "infinityx", "", "½"])
def test_numbers_outside_the_ascii_grammar_are_refused(text):
    with pytest.raises(InputError, match=r"f.csv:7: column 'speed' is not a number"):
        number(Path("f.csv"), 7, text, "'speed'")


@pytest.mark.parametrize("text,value", [("-0.5", -0.5), ("+1e-3", 1e-3), (".5", 0.5), ("3.", 3.0), ("12", 12.0)])
def test_ascii_numbers_are_read(text, value):
    assert number(Path("f.csv"), 1, f" {text} ", "x") == value


@pytest.mark.parametrize("stamp", ["99999999999999999999", str(2**63 - 1), "-5", "1.5e18", "1_479_425_441"])
def test_timestamps_out_of_int64_range_or_odd_are_one_line(tmp_path, stamp):
    stamps: list[object] = [T0 + 50_000_000 * i for i in range(N)]
    stamps[6] = stamp
    msg = scan_error(make_dump(tmp_path / "dump", stamps=stamps))
    assert "camera.csv:8" in msg and "timestamp" in msg
    assert timestamp_ns(Path("c.csv"), 1, str(T0), "t") == T0


# ---------------------------------------------------------------- encodings, sizes, shapes

def test_utf8_bom_is_accepted(tmp_path):
    d = make_dump(tmp_path / "dump")
    data = (d / "camera.csv").read_bytes()
    (d / "camera.csv").write_bytes(b"\xef\xbb\xbf" + data)
    assert len(open_recording([d]).scan().frame_t) == N
    log = make_simlog(tmp_path / "sim", header=True)
    log.write_bytes(b"\xef\xbb\xbf" + log.read_bytes())
    assert len(open_recording([log]).scan().frame_t) == N


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-32"])
def test_utf16_csv_names_file_and_encoding(tmp_path, encoding):
    d = make_dump(tmp_path / "dump")
    text = (d / "camera.csv").read_text()
    (d / "camera.csv").write_bytes(text.encode(encoding))
    msg = scan_error(d)
    assert "camera.csv" in msg and ("UTF-16" in msg or "UTF-32" in msg or "NUL" in msg) and "UTF-8" in msg


def test_latin1_csv_names_file_line_and_encoding(tmp_path):
    log = make_simlog(tmp_path / "sim")
    lines = log.read_text().splitlines(keepends=True)
    lines[3] = lines[3].replace("IMG/", "IMG/caf\u00e9_")
    log.write_bytes("".join(lines).encode("latin-1"))
    msg = scan_error(log)
    assert "driving_log.csv:4" in msg and "not UTF-8" in msg and "0xe9" in msg


def test_huge_field_names_file_and_line(tmp_path):
    d = make_dump(tmp_path / "dump")
    with open(d / "camera.csv", "a", newline="") as f:
        csv.writer(f).writerow([T0 + 10**9, 160, 120, "center_camera", "x" * 200_000])
    msg = scan_error(d)
    assert f"camera.csv:{N + 2}" in msg and "128 KB" in msg


def test_row_with_extra_or_missing_cells_names_the_line(tmp_path):
    d = make_dump(tmp_path / "dump")
    with open(d / "camera.csv", "a", newline="") as f:
        f.write(f"{T0 + 10**9},160,120,center_camera,center/x.jpg,surprise\n")
    assert f"camera.csv:{N + 2}: 6 cells, the header has 5" in scan_error(d)
    rows = read_csv_rows(make_dump(tmp_path / "d2") / "camera.csv", ("timestamp",))
    assert [ln for ln, _ in rows] == list(range(2, N + 2))


# ---------------------------------------------------------------- nothing dropped silently

def test_damaged_and_missing_images_are_counted_and_listed(tmp_path):
    d = make_dump(tmp_path / "dump")
    files = sorted((d / "center").iterdir())
    bad = bytearray(files[2].read_bytes())
    sos = bad.index(b"\xff\xda")
    bad[sos + 300 : sos + 300 + 1500] = bytes(1500)
    files[2].write_bytes(bytes(bad))
    files[5].unlink()
    res = prep([d], tmp_path / "o")
    assert res.counts["dropped"] == {"corrupt_image": 1, "missing_image": 1} and res.counts["kept"] == N - 2
    with open(res.out_dir / "dropped.csv", newline="") as f:
        dropped = {r["timestamp_ns"]: r["reason"] for r in csv.DictReader(f)}
    assert dropped == {files[2].stem: "corrupt_image", files[5].stem: "missing_image"}
    man = yaml.safe_load((res.out_dir / "manifest.yaml").read_text())
    assert man["counts"]["dropped"] == {"corrupt_image": 1, "missing_image": 1}


# ---------------------------------------------------------------- seeded mutants (fuzz)

@pytest.mark.parametrize("kind", ["dump", "simlog"])
def test_seeded_csv_mutants_give_one_clear_line_or_counted_drops(tmp_path, kind):
    seed = make_dump(tmp_path / "seed") if kind == "dump" else make_simlog(tmp_path / "seed").parent
    mutate = mutate_dump if kind == "dump" else mutate_simlog
    outcomes: Counter[str] = Counter()
    for s in range(100):
        target, what = mutate(seed, tmp_path / f"m{s}", random.Random(s))
        outcomes[outcome(lambda target=target: read_recording(target), timeout_s=20)] += 1
        shutil.rmtree(tmp_path / f"m{s}")
    print(kind, dict(sorted(outcomes.items())))
    assert sum(outcomes.values()) == 100 and outcomes["clear error"] > 0
