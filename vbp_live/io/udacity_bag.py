"""Write Udacity-layout ROS1 bags with rosbags (any frames, any steering samples).

A generic writer that synthetic drives, tests and fault-injection tools share::

    from vbp_live.io.udacity_bag import UdacityBagWriter, SteeringSamples, write_udacity_bag

    with UdacityBagWriter("drive.bag") as bag:               # atomic: temp name, renamed on close
        bag.write_steering(stamp_ns, angle_rad, speed_mps)    # dbw_mkz_msgs/SteeringReport (2016)
        bag.write_image(stamp_ns, frame_bgr_or_jpeg_bytes)    # /center_camera/image_color/compressed

    write_udacity_bag("drive.bag", [(stamp_ns, frame), ...], SteeringSamples(stamps, angles, speeds))

Topics follow Udacity's bags: ``/{left,center,right}_camera/image_color/compressed``
(``sensor_msgs/CompressedImage``, JPEG) or, with ``raw=True``, ``/{...}_camera/image_color``
(``sensor_msgs/Image``, ``bgr8``); ``/vehicle/steering_report`` as ``dbw_mkz_msgs/SteeringReport``
with the 2016 definition (ROS1 md5 ``25bf2c220d904531d8bc16ab5271325d``). ``swap_left_center``
reproduces the 2016-10-25 (El Camino) release, where the center camera's frames are on
``/left_camera/...`` and the left camera's on ``/center_camera/...``.

Messages carry header stamps; the bag record time is the stamp plus ``record_delay_ns``
(transport latency), unless given explicitly (tests can write zero stamps, reordered or
missing messages this way).
"""

from __future__ import annotations

import functools
import heapq
import os
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from rosbags.rosbag1 import Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

STEERING_REPORT_TYPE = "dbw_mkz_msgs/msg/SteeringReport"
STEERING_REPORT_MD5 = "25bf2c220d904531d8bc16ab5271325d"
# dbw_mkz_msgs 1.0.0-1.0.6, as recorded in Udacity's 2016 bags
STEERING_REPORT_2016 = """Header header
float32 steering_wheel_angle      # rad, steering WHEEL angle, positive = left turn
float32 steering_wheel_angle_cmd  # rad
float32 steering_wheel_torque     # Nm
float32 speed                     # m/s, negative in reverse
bool enabled
bool override
bool driver
bool fault_wdc
bool fault_bus1
bool fault_bus2
bool fault_calibration
bool fault_connector
"""
STEERING_TOPIC = "/vehicle/steering_report"
COMPRESSED_TYPE = "sensor_msgs/msg/CompressedImage"
RAW_TYPE = "sensor_msgs/msg/Image"
CAMERAS = ("left", "center", "right")


def camera_topic(camera: str, raw: bool = False) -> str:
    """Udacity topic of a camera (``left``, ``center`` or ``right``)."""
    if camera not in CAMERAS:
        raise ValueError(f"camera must be one of {CAMERAS}, got {camera!r}")
    return f"/{camera}_camera/image_color" + ("" if raw else "/compressed")


@functools.lru_cache(maxsize=1)
def udacity_typestore() -> Any:
    """ROS1 Noetic typestore with the 2016 ``dbw_mkz_msgs/SteeringReport`` registered (md5 checked)."""
    store = get_typestore(Stores.ROS1_NOETIC)
    store.register(get_types_from_msg(STEERING_REPORT_2016, STEERING_REPORT_TYPE))
    md5 = store.generate_msgdef(STEERING_REPORT_TYPE)[1]
    if md5 != STEERING_REPORT_MD5:
        raise RuntimeError(f"SteeringReport md5 is {md5}, expected {STEERING_REPORT_MD5} (rosbags changed?)")
    return store


@dataclass
class SteeringSamples:
    """Steering reports: stamps (ns), wheel angle (rad, left +), speed (m/s); optional torque/command."""

    stamps_ns: np.ndarray
    angle: np.ndarray
    speed: np.ndarray
    torque: np.ndarray | None = None
    cmd: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.stamps_ns)

    def row(self, k: int) -> dict[str, float]:
        """Keyword arguments of :meth:`UdacityBagWriter.write_steering` for sample ``k``."""
        return {
            "angle": float(self.angle[k]),
            "speed": float(self.speed[k]),
            "torque": 0.0 if self.torque is None else float(self.torque[k]),
            "cmd": None if self.cmd is None else float(self.cmd[k]),
        }


def encode_jpeg(frame: np.ndarray, quality: int = 90) -> bytes:
    """BGR frame -> JPEG bytes (as Udacity's compressed camera topics carry)."""
    ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError(f"JPEG encoding failed for a frame of shape {frame.shape}")
    return buf.tobytes()


class UdacityBagWriter:
    """Context manager writing one Udacity-layout ROS1 bag atomically (temp name, then rename).

    Args:
        path: target ``.bag`` path.
        raw: write ``sensor_msgs/Image`` (bgr8) instead of JPEG ``CompressedImage``.
        swap_left_center: put center frames on ``/left_camera/...`` and left on ``/center_camera/...``.
        record_delay_ns: record time = header stamp + this (unless ``record_ns`` is given).
        jpeg_quality: quality for frames given as arrays on compressed topics.
        overwrite: replace an existing file (rosbags itself never overwrites).
    """

    def __init__(self, path: str | os.PathLike[str], *, raw: bool = False, swap_left_center: bool = False,
                 record_delay_ns: int = 1_500_000, jpeg_quality: int = 90, overwrite: bool = False) -> None:
        self.path = Path(path)
        if self.path.exists() and not overwrite:
            raise FileExistsError(f"{self.path} exists already (pass overwrite=True to replace it)")
        self.raw, self.swap = raw, swap_left_center
        self.delay, self.quality = int(record_delay_ns), jpeg_quality
        self.store = udacity_typestore()
        self._tmp = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex[:12]}.tmp")
        self._writer: Writer | None = None
        self._conns: dict[str, Any] = {}
        self._seq: dict[str, int] = {}
        self.counts: dict[str, int] = {}

    def __enter__(self) -> UdacityBagWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = Writer(self._tmp)
        self._writer.open()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        assert self._writer is not None
        try:
            self._writer.close()
            if exc_type is None:
                os.replace(self._tmp, self.path)
        finally:
            if self._tmp.exists():
                self._tmp.unlink()

    def _conn(self, topic: str, msgtype: str) -> Any:
        if topic not in self._conns:
            assert self._writer is not None, "use UdacityBagWriter as a context manager"
            self._conns[topic] = self._writer.add_connection(topic, msgtype, typestore=self.store)
        return self._conns[topic]

    def _header(self, topic: str, stamp_ns: int, frame_id: str, seq: int | None) -> Any:
        t = self.store.types
        n = self._seq.get(topic, 0) if seq is None else seq
        self._seq[topic] = n + 1
        sec, nanosec = divmod(int(stamp_ns), 1_000_000_000)
        stamp = t["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec)
        return t["std_msgs/msg/Header"](seq=n, stamp=stamp, frame_id=frame_id)

    def _write(self, topic: str, msgtype: str, msg: Any, stamp_ns: int, record_ns: int | None) -> None:
        data = self.store.serialize_ros1(msg, msgtype)
        rec = int(stamp_ns) + self.delay if record_ns is None else int(record_ns)
        assert self._writer is not None
        self._writer.write(self._conn(topic, msgtype), rec, data)
        self.counts[topic] = self.counts.get(topic, 0) + 1

    def write_image(self, stamp_ns: int, image: np.ndarray | bytes, camera: str = "center", *,
                    seq: int | None = None, record_ns: int | None = None) -> None:
        """Write one camera frame (BGR array, or JPEG bytes for compressed topics)."""
        physical = {"center": "left", "left": "center"}.get(camera, camera) if self.swap else camera
        topic, frame_id = camera_topic(physical, self.raw), f"{physical}_camera"
        header = self._header(topic, stamp_ns, frame_id, seq)
        t = self.store.types
        if self.raw:
            if isinstance(image, (bytes, bytearray)):
                image = cv2.imdecode(np.frombuffer(image, np.uint8), cv2.IMREAD_COLOR)
            h, w = image.shape[:2]
            msg = t[RAW_TYPE](header=header, height=h, width=w, encoding="bgr8", is_bigendian=0, step=w * 3,
                              data=np.ascontiguousarray(image).reshape(-1))
            self._write(topic, RAW_TYPE, msg, stamp_ns, record_ns)
            return
        jpeg = image if isinstance(image, (bytes, bytearray)) else encode_jpeg(image, self.quality)
        msg = t[COMPRESSED_TYPE](header=header, format="jpeg", data=np.frombuffer(jpeg, np.uint8))
        self._write(topic, COMPRESSED_TYPE, msg, stamp_ns, record_ns)

    def write_steering(self, stamp_ns: int, angle: float, speed: float, *, cmd: float | None = None,
                       torque: float = 0.0, enabled: bool = False, seq: int | None = None,
                       record_ns: int | None = None) -> None:
        """Write one ``dbw_mkz_msgs/SteeringReport`` (angle rad left +, speed m/s)."""
        msg = self.store.types[STEERING_REPORT_TYPE](
            header=self._header(STEERING_TOPIC, stamp_ns, "", seq),
            steering_wheel_angle=float(angle), steering_wheel_angle_cmd=float(angle if cmd is None else cmd),
            steering_wheel_torque=float(torque), speed=float(speed), enabled=enabled, override=False,
            driver=not enabled, fault_wdc=False, fault_bus1=False, fault_bus2=False,
            fault_calibration=False, fault_connector=False,
        )
        self._write(STEERING_TOPIC, STEERING_REPORT_TYPE, msg, stamp_ns, record_ns)


def write_udacity_bag(path: str | os.PathLike[str], images: Iterable[tuple[int, np.ndarray | bytes]],
                      steering: SteeringSamples, *, camera: str = "center", **writer_kw: Any) -> dict[str, int]:
    """Write frames and steering reports into one bag, interleaved in stamp order.

    Args:
        path: target ``.bag``.
        images: ``(stamp_ns, BGR frame or JPEG bytes)`` in stamp order (may be a lazy generator).
        steering: the steering reports.
        camera: which camera the frames come from.
        **writer_kw: options of :class:`UdacityBagWriter` (``raw``, ``swap_left_center``, ...).

    Returns:
        Message count per topic.
    """
    events = heapq.merge(((int(t), 1, k) for k, t in enumerate(steering.stamps_ns)),
                         ((int(t), 0, img) for t, img in images), key=lambda e: (e[0], e[1]))
    with UdacityBagWriter(path, **writer_kw) as bag:
        for stamp, kind, item in events:
            if kind == 1:
                bag.write_steering(stamp, **steering.row(item))
            else:
                bag.write_image(stamp, item, camera)
    return dict(bag.counts)
