"""Helpers for the data_prep tests: small real ROS1 bags written with rosbags' own Writer.

These bags are independent of the synthetic-world writer so the fault cases (zero stamps,
reordered/duplicate stamps, corrupt JPEGs, compression, tiny chunks for truncation) can be
built exactly.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from rosbags.rosbag1 import Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

# dbw_mkz_msgs/SteeringReport as recorded in 2016 (shared/docs/udacity-format.md)
STEERING_DEF = """Header header
float32 steering_wheel_angle
float32 steering_wheel_angle_cmd
float32 steering_wheel_torque
float32 speed
bool enabled
bool override
bool driver
bool fault_wdc
bool fault_bus1
bool fault_bus2
bool fault_calibration
bool fault_connector
"""
STEERING_TYPE = "dbw_mkz_msgs/msg/SteeringReport"
STEERING_MD5 = "25bf2c220d904531d8bc16ab5271325d"
CENTER = "/center_camera/image_color/compressed"
STEER = "/vehicle/steering_report"
T0 = 1_479_425_441_000_000_000  # an epoch time in Udacity's challenge-2 recording


def typestore() -> Any:
    """ROS1 Noetic types + the 2016 SteeringReport (md5 checked)."""
    ts = get_typestore(Stores.ROS1_NOETIC)
    ts.register(get_types_from_msg(STEERING_DEF, STEERING_TYPE))
    assert ts.generate_msgdef(STEERING_TYPE)[1] == STEERING_MD5
    return ts


def flat_jpeg(value: int, w: int = 64, h: int = 48, noise: int = 0, seed: int = 0) -> bytes:
    """A JPEG of one gray level (optionally with noise), as BGR."""
    img = np.full((h, w, 3), value, np.uint8)
    if noise:
        rng = np.random.default_rng(seed)
        img = np.clip(img.astype(int) + rng.integers(-noise, noise + 1, img.shape), 0, 255).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return buf.tobytes()


def _header(ts: Any, stamp_ns: int, seq: int) -> Any:
    t = ts.types
    stamp = t["builtin_interfaces/msg/Time"](sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9)
    return t["std_msgs/msg/Header"](seq=seq, stamp=stamp, frame_id="")


def image_msg(ts: Any, stamp_ns: int, image: bytes | np.ndarray, seq: int = 0,
              encoding: str = "bgr8") -> tuple[str, Any]:
    """(msgtype, message): CompressedImage for bytes, raw Image for an array."""
    h = _header(ts, stamp_ns, seq)
    if isinstance(image, bytes):
        return "sensor_msgs/msg/CompressedImage", ts.types["sensor_msgs/msg/CompressedImage"](
            header=h, format="jpeg", data=np.frombuffer(image, np.uint8))
    ch = 1 if image.ndim == 2 else image.shape[2]
    return "sensor_msgs/msg/Image", ts.types["sensor_msgs/msg/Image"](
        header=h, height=image.shape[0], width=image.shape[1], encoding=encoding, is_bigendian=0,
        step=image.shape[1] * ch, data=np.ascontiguousarray(image).reshape(-1))


def steering_msg(ts: Any, stamp_ns: int, angle: float, speed: float, seq: int = 0) -> Any:
    """A 2016 SteeringReport."""
    return ts.types[STEERING_TYPE](
        header=_header(ts, stamp_ns, seq), steering_wheel_angle=angle, steering_wheel_angle_cmd=angle,
        steering_wheel_torque=0.0, speed=speed, enabled=False, override=False, driver=True, fault_wdc=False,
        fault_bus1=False, fault_bus2=False, fault_calibration=False, fault_connector=False)


def write_bag(
    path: Path,
    frames: Sequence[tuple[int, bytes | np.ndarray]] = (),
    steering: Sequence[tuple[int, float, float]] = (),
    *,
    topic: str = CENTER,
    record_ns: Sequence[int] | None = None,
    steer_record_ns: Sequence[int] | None = None,
    compression: str | None = None,
    chunk_threshold: int | None = None,
    extra: Sequence[tuple[str, int, bytes | np.ndarray]] = (),
) -> Path:
    """Write a bag: frames on ``topic`` (+ ``extra`` (topic, stamp, image)) and steering reports.

    Record time defaults to stamp + 1 ms; messages are written in record-time order.
    """
    ts = typestore()
    events = []
    for k, (stamp, img) in enumerate(frames):
        rec = record_ns[k] if record_ns is not None else stamp + 1_000_000
        events.append((rec, 0, topic, *image_msg(ts, stamp, img, k)))
    for k, (t_topic, stamp, img) in enumerate(extra):
        events.append((stamp + 1_000_000, 0, t_topic, *image_msg(ts, stamp, img, k)))
    for k, (stamp, angle, speed) in enumerate(steering):
        rec = steer_record_ns[k] if steer_record_ns is not None else stamp + 1_000_000
        events.append((rec, 1, STEER, STEERING_TYPE, steering_msg(ts, stamp, angle, speed, k)))
    events.sort(key=lambda e: (e[0], e[1]))
    w = Writer(path)
    if compression:
        w.set_compression(getattr(Writer.CompressionFormat, compression.upper()))
    if chunk_threshold:
        w.chunk_threshold = chunk_threshold
    conns: dict[str, Any] = {}
    with w:
        for rec, _, t_topic, msgtype, msg in events:
            if t_topic not in conns:
                conns[t_topic] = w.add_connection(t_topic, msgtype, typestore=ts)
            w.write(conns[t_topic], rec, ts.serialize_ros1(msg, msgtype))
    return path


def steering_series(t_start: int, t_end: int, period_ns: int = 20_000_000, slope_per_s: float = 0.1,
                    offset: float = -0.2, speed: float = 10.0) -> list[tuple[int, float, float]]:
    """Steering samples of a linear function of time (linear interpolation is exact on it).

    Angles are float32-representable so the bag stores them exactly.
    """
    out = []
    for t in range(t_start, t_end + 1, period_ns):
        a = float(np.float32(offset + slope_per_s * (t - t_start) / 1e9))
        out.append((t, a, speed))
    return out


def interrupt_prep(cmd: list[str], progress: Path, sig: int, cwd: Path) -> subprocess.CompletedProcess:
    """Start ``cmd``, send ``sig`` once ``progress`` (its first resume checkpoint) exists, wait for the exit.

    A process still alive 60 s after the signal is a hang, not slowness: it gets SIGABRT, so
    ``faulthandler`` prints every thread's stack, and the test fails showing them.
    """
    env = dict(os.environ, PYTHONFAULTHANDLER="1")
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 120
    while not progress.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    os.kill(proc.pid, sig)
    try:
        stdout, stderr = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)
        stdout, stderr = proc.communicate(timeout=60)
        pytest.fail(f"still running 60 s after {signal.Signals(sig).name}; its threads:\n{stderr[-8000:]}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
