"""Sinks for the non-bag formats of a synthetic drive: mp4, bag-dump folder, simulator log.

Layouts follow ``shared/docs/udacity-format.md``:

- bag dump (udacity-driving-reader): ``center/<stamp_ns>.jpg`` (and ``left/``, ``right/``),
  ``camera.csv`` = ``seq,timestamp,width,height,frame_id,filename``, ``steering.csv`` =
  ``timestamp,angle,torque,speed``, ``interpolated.csv`` = ``index,timestamp,width,height,
  frame_id,filename,angle,torque,speed,lat,long,alt`` (steering linearly interpolated at each
  camera stamp; the steering reports start before the first frame, so no frame gets the
  reader's 0.0 quirk; lat/long/alt are a flat-earth GPS track around Mountain View).
- simulator: ``driving_log.csv`` with header ``center,left,right,steering,throttle,brake,speed``,
  a space after each comma, relative ``IMG/...`` paths; steering = road-wheel angle / 25 degrees
  with the simulator's sign (positive = RIGHT), speed in mph, 320x160 images (rows
  0.167-0.833 of the frame, resized). Without side cameras the left/right columns repeat the
  center image path.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import uuid
from pathlib import Path

import cv2
import numpy as np

from vbp_live.io.atomic import write_text_atomic
from vbp_live.io.synth_records import RenderedFrame
from vbp_live.io.video_writer import EncoderBase, even_size, fit_frame, open_encoder, resolve_codec
from vbp_live.synth.drive import Drive

LAT0, LON0, ALT0 = 37.3998, -122.1084, 10.0  # near Mountain View, CA
SIM_SIZE = (320, 160)


def _write_file(path: Path, data: bytes) -> None:
    """Write beside, then rename: a reader never sees half a file (no fsync per image)."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class VideoSink:
    """Dashcam-style .mp4 of the center camera through the one video writer (H.264 that plays in
    browsers; mp4v only where PyAV has no H.264 encoder), written to a temp name, renamed on close."""

    def __init__(self, path: str | os.PathLike[str], fps: float = 20.0) -> None:
        self.path, self.fps = Path(path), fps
        self.tmp = self.path.with_name(f".{self.path.stem}.{uuid.uuid4().hex[:8]}.tmp.mp4")
        self.writer: EncoderBase | None = None

    def add(self, rec: RenderedFrame) -> None:
        if self.writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            h, w = rec.frame.shape[:2]
            self.size = even_size(w, h)
            self.writer = open_encoder(self.tmp, self.fps, self.size, resolve_codec(self.path), container_of=self.path)
        self.writer.write(fit_frame(rec.frame, self.size))  # (H, W, 3) BGR

    def close(self) -> list[Path]:
        if self.writer is None:
            return []
        self.writer.close()
        os.replace(self.tmp, self.path)
        return [self.path]

    def abort(self) -> None:
        """Release the encoder and delete the unfinished video."""
        if self.writer is not None:
            self.writer.abort()
            self.writer = None
        self.tmp.unlink(missing_ok=True)


def gps(drive: Drive, stamps_ns: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flat-earth latitude/longitude/altitude of the rear axle at the given stamps."""
    t = (np.asarray(stamps_ns) - drive.config.start_time_ns) / 1e9
    s, e = np.interp(t, drive.trace.t, drive.trace.s), np.interp(t, drive.trace.t, drive.trace.e)
    x, y = drive.road.frenet_to_world(s, e)
    lat = LAT0 + y / 111_320.0
    lon = LON0 + x / (111_320.0 * math.cos(math.radians(LAT0)))
    return lat, lon, np.full(len(t), ALT0)


def _pandas_time(ns: int) -> str:
    """How pandas prints a nanosecond timestamp (the ``index`` column of interpolated.csv)."""
    t = _dt.datetime.fromtimestamp(ns // 10**9, _dt.timezone.utc)
    return t.strftime("%Y-%m-%d %H:%M:%S") + f".{ns % 10**9:09d}"


class DumpSink:
    """A udacity-driving-reader bag-dump folder."""

    def __init__(self, drive: Drive, out_dir: str | os.PathLike[str], side_cameras: bool = False) -> None:
        self.drive, self.dir = drive, Path(out_dir)
        self.cams = ("center", "left", "right") if side_cameras else ("center",)
        for c in self.cams:
            (self.dir / c).mkdir(parents=True, exist_ok=True)
        self.rows: list[tuple[int, int, int, int, str]] = []  # seq, stamp, w, h, camera

    def add(self, rec: RenderedFrame) -> None:
        h, w = rec.frame.shape[:2]
        for cam in self.cams:
            _write_file(self.dir / cam / f"{rec.stamp_ns}.jpg", rec.jpeg(cam))
            self.rows.append((rec.index, rec.stamp_ns, w, h, cam))

    def close(self) -> list[Path]:
        d = self.drive
        cam_lines = ["seq,timestamp,width,height,frame_id,filename"]
        cam_lines += [f"{q},{t},{w},{h},{c}_camera,{c}/{t}.jpg" for q, t, w, h, c in self.rows]
        steer = ["timestamp,angle,torque,speed"]
        cols = (d.steer_times_ns.tolist(), d.steer_angle.tolist(), d.steer_torque.tolist(), d.steer_speed.tolist())
        steer += [f"{t},{a!r},{q!r},{v!r}" for t, a, q, v in zip(*cols, strict=True)]
        paths = [self.dir / "camera.csv", self.dir / "steering.csv", self.dir / "interpolated.csv"]
        write_text_atomic(paths[0], "\n".join(cam_lines) + "\n")
        write_text_atomic(paths[1], "\n".join(steer) + "\n")
        write_text_atomic(paths[2], self._interpolated())
        return paths

    def abort(self) -> None:
        """Images written so far stay (each is complete); the CSVs are only written by :meth:`close`."""

    def _interpolated(self) -> str:
        d = self.drive
        stamps = np.array([r[1] for r in self.rows], np.int64)
        ts = d.steer_times_ns.astype(np.float64)
        cols = [np.interp(stamps.astype(np.float64), ts, a) for a in (d.steer_angle, d.steer_torque, d.steer_speed)]
        lat, lon, alt = gps(d, stamps)
        lines = ["index,timestamp,width,height,frame_id,filename,angle,torque,speed,lat,long,alt"]
        for k, (_, t, w, h, c) in enumerate(self.rows):
            vals = ",".join(repr(float(x[k])) for x in (*cols, lat, lon, alt))
            lines.append(f"{_pandas_time(t)},{t},{w},{h},{c}_camera,{c}/{t}.jpg,{vals}")
        return "\n".join(lines) + "\n"


def sim_crop(frame: np.ndarray) -> np.ndarray:
    """A 640x480 frame -> the simulator's 320x160 (rows 1/6..5/6 keep the aspect ratio)."""
    h = frame.shape[0]
    return cv2.resize(frame[h // 6: h - h // 6], SIM_SIZE, interpolation=cv2.INTER_AREA)


class SimLogSink:
    """A Udacity-simulator recording: ``driving_log.csv`` + ``IMG/``."""

    def __init__(self, drive: Drive, out_dir: str | os.PathLike[str], side_cameras: bool = False) -> None:
        self.drive, self.dir, self.side = drive, Path(out_dir), side_cameras
        (self.dir / "IMG").mkdir(parents=True, exist_ok=True)
        self.lines = ["center,left,right,steering,throttle,brake,speed"]

    def add(self, rec: RenderedFrame) -> None:
        t = _dt.datetime.fromtimestamp(rec.stamp_ns / 1e9, _dt.timezone.utc)
        tag = t.strftime("%Y_%m_%d_%H_%M_%S_") + f"{t.microsecond // 1000:03d}"
        names = {}
        for cam in ("center", "left", "right") if self.side else ("center",):
            img = rec.frame if cam == "center" else rec.side[cam]
            ok, buf = cv2.imencode(".jpg", sim_crop(img), [cv2.IMWRITE_JPEG_QUALITY, 90])
            names[cam] = f"IMG/{cam}_{tag}.jpg"
            _write_file(self.dir / names[cam], buf.tobytes())
        d, i = self.drive, rec.index
        wheel_deg = math.degrees(float(d.steering[i]) / d.config.vehicle.steering_ratio)
        steer = float(np.clip(-wheel_deg / 25.0, -1.0, 1.0))
        throttle = float(np.clip(d.accel[i] / 2.0, 0.0, 1.0)) if d.speed[i] > 0.05 or d.accel[i] > 0 else 0.0
        brake = float(np.clip(-d.accel[i] / 3.0, 0.0, 1.0))
        mph = float(d.speed[i]) * 2.2369363
        row = [names["center"], names.get("left", names["center"]), names.get("right", names["center"]),
               f"{steer:.6f}", f"{throttle:.6f}", f"{brake:.6f}", f"{mph:.5f}"]
        self.lines.append(", ".join(row))

    def close(self) -> list[Path]:
        path = self.dir / "driving_log.csv"
        write_text_atomic(path, "\n".join(self.lines) + "\n")
        return [path]

    def abort(self) -> None:
        """Images written so far stay; ``driving_log.csv`` is only written by :meth:`close`."""
