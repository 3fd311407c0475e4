"""Small real recordings for the tub / frame-folder / comma2k19 tests, written in their own layouts.

Tubs follow donkeycar's ``parts/datastore_v2.py`` byte layout (``\\r\\n`` line ends, five
manifest lines, ``sort_keys`` JSON records); the comma2k19 segment gets an HEVC video encoded
with PyAV's FFmpeg (libx265).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import av
import cv2
import numpy as np

T0_MS = 1_729_502_364_204  # the real tub's first _timestamp_ms


def scene(i: int, w: int = 160, h: int = 120) -> np.ndarray:
    """A BGR frame that changes with ``i`` (a bright bar moving across a road-like gradient)."""
    img = np.tile(np.linspace(40, 200, h, dtype=np.uint8)[:, None, None], (1, w, 3))
    x = (i * 7) % (w - 10)
    img[h // 2:, x:x + 10] = (255, 255, 255)
    return img


def jpeg(img: np.ndarray) -> bytes:
    """JPEG bytes of a BGR image."""
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return buf.tobytes()


def angle_of(i: int) -> float:
    """The steering (-1..+1) recorded with frame ``i``."""
    return round(float(np.sin(i / 5.0)), 6)


def write_tub_v2(dst: Path, n: int = 30, start: int = 0, deleted: Sequence[int] = (), session: str = "24-10-21_0",
                 t0_ms: int = T0_MS, max_len: int = 1000, size: tuple[int, int] = (160, 120)) -> Path:
    """A donkeycar tub v2 of ``n`` records with indexes ``start..start+n-1``."""
    (dst / "images").mkdir(parents=True, exist_ok=True)
    catalogs: list[str] = []
    for k, i in enumerate(range(start, start + n)):
        name = f"{i}_cam_image_array_.jpg"
        (dst / "images" / name).write_bytes(jpeg(scene(i, *size)))
        rec = {"_index": i, "_session_id": session, "_timestamp_ms": t0_ms + 50 * k, "cam/image_array": name,
               "user/angle": angle_of(i), "user/mode": "user", "user/throttle": 0.3 + 0.01 * (i % 10)}
        cat = f"catalog_{k // max_len}.catalog"
        if cat not in catalogs:
            catalogs.append(cat)
        with open(dst / cat, "a", newline="") as f:
            f.write(json.dumps(rec, sort_keys=True) + "\r\n")
    for cat in catalogs:
        lengths = [len(x) + 1 for x in (dst / cat).read_text().splitlines()]
        meta = {"created_at": 1729501912.1, "line_lengths": lengths, "path": cat + "_manifest", "start_index": start}
        (dst / (cat + "_manifest")).write_text(json.dumps(meta) + "\r\n", newline="")
    lines = [["cam/image_array", "user/angle", "user/throttle", "user/mode"], ["image_array", "float", "float", "str"],
             {}, {"created_at": 1729501912.1, "sessions": {"all_full_ids": [session], "last_id": 0}},
             {"paths": catalogs, "current_index": start + n, "max_len": max_len, "deleted_indexes": list(deleted)}]
    (dst / "manifest.json").write_text("".join(json.dumps(x) + "\r\n" for x in lines), newline="")
    return dst


def write_tub_v1(dst: Path, n: int = 20) -> Path:
    """A donkeycar tub v1: ``meta.json``, ``record_<i>.json`` and ``<i>_cam-image_array_.jpg``."""
    dst.mkdir(parents=True, exist_ok=True)
    (dst / "meta.json").write_text(json.dumps({"inputs": ["cam/image_array", "user/angle", "user/throttle",
                                                          "user/mode"], "types": ["image_array", "float", "float",
                                                                                  "str"]}))
    for i in range(n):
        name = f"{i}_cam-image_array_.jpg"
        (dst / name).write_bytes(jpeg(scene(i)))
        rec = {"cam/image_array": name, "user/angle": angle_of(i), "user/throttle": 0.4, "user/mode": "user",
               "milliseconds": 1000 + 50 * i}
        (dst / f"record_{i}.json").write_text(json.dumps(rec))
    return dst


def write_data_txt_folder(dst: Path, n: int = 30, size: tuple[int, int] = (200, 66 * 2)) -> Path:
    """SullyChen's layout: ``0.jpg .. n-1.jpg`` and ``data.txt`` lines ``<i>.jpg <degrees>``."""
    dst.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(n):
        (dst / f"{i}.jpg").write_bytes(jpeg(scene(i, *size)))
        lines.append(f"{i}.jpg {angle_of(i) * 90:.6f}")
    (dst / "data.txt").write_text("\n".join(lines) + "\n")
    return dst


def write_label_csv_folder(dst: Path, n: int = 20, speed: bool = True) -> Path:
    """Frames ``frame_<i>.png`` with ``labels.csv``: filename,steering_angle,timestamp[,speed]."""
    dst.mkdir(parents=True, exist_ok=True)
    rows = ["filename,steering_angle,timestamp" + (",speed" if speed else "")]
    for i in range(n):
        cv2.imwrite(str(dst / f"frame_{i}.png"), scene(i))
        rows.append(f"frame_{i}.png,{angle_of(i) * 30:.4f},{100 + 0.05 * i:.3f}" + (f",{6 + i % 3}" if speed else ""))
    (dst / "labels.csv").write_text("\n".join(rows) + "\n")
    return dst


def encode_hevc(path: Path, frames: Sequence[np.ndarray], fps: int = 20) -> None:
    """Encode BGR frames as a raw HEVC elementary stream (comma2k19's ``video.hevc``)."""
    h, w = frames[0].shape[:2]
    with av.open(str(path), "w", format="hevc") as c:
        s = c.add_stream("libx265", rate=fps)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.options = {"x265-params": "log-level=none"}
        for img in frames:
            for pkt in s.encode(av.VideoFrame.from_ndarray(img, format="bgr24")):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)


def write_comma_segment(dst: Path, n: int = 30, video_frames: int | None = None, size: tuple[int, int] = (160, 96),
                        speed_mps: float = 10.0) -> Path:
    """A comma2k19 segment: frame times (20 Hz), CAN steering (deg, 100 Hz) and speed, video.hevc."""
    for rel in ("global_pose", "processed_log/CAN/steering_angle", "processed_log/CAN/speed"):
        (dst / rel).mkdir(parents=True, exist_ok=True)
    ft = 5000.0 + 0.05 * np.arange(n)
    np.save(dst / "global_pose" / "frame_times.npy", ft)
    st = np.arange(ft[0] - 0.1, ft[-1] + 0.1, 0.01)
    np.save(dst / "processed_log/CAN/steering_angle/t.npy", st)
    np.save(dst / "processed_log/CAN/steering_angle/value.npy", 30.0 * np.sin(st - st[0]))
    np.save(dst / "processed_log/CAN/speed/t.npy", st)
    np.save(dst / "processed_log/CAN/speed/value.npy", np.full((len(st), 1), speed_mps))
    for f in dst.rglob("*.npy"):
        f.rename(f.with_suffix(""))  # comma2k19 files carry no extension
    encode_hevc(dst / "video.hevc", [scene(i, *size) for i in range(n if video_frames is None else video_frames)])
    return dst
