"""ROS1 bags (Udacity layout): camera images + ``dbw_mkz_msgs/SteeringReport``.

Several files (a drive split into parts) are read one after the other and merged in time:
all steering samples are pooled and sorted, all frames are sorted by their header stamp
before synchronization. Each file picks its own camera topic, the first configured topic it
contains, with the left/center swap applied to the 2016-10-25 El Camino bags.

Damage never ends the read: a message whose payload does not match its definition is skipped
and counted (``undecodable``, with its topic and byte offset), so is a steering report whose
angle or speed is not finite or beyond :data:`MAX_ABS_VALUE` (``bad_value``), next to what the scanner
skipped (:mod:`.bagscan`), in :attr:`~.base.Scan.skipped`; the second pass skips exactly the
frames the first pass skipped. A definition that cannot be used is refused with one line.
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from vbp_live.core.errors import InputError
from vbp_live.recordings.bagscan import BagConnection, BagScanner
from vbp_live.recordings.base import Progress, Recording, Scan, SkipLog
from vbp_live.recordings.images import Payload, image_payload
from vbp_live.recordings.options import CameraConfig, SteeringConfig
from vbp_live.recordings.rosmsg import DefinitionError, MessageTypes, UndecodableMessage, stamp_ns

log = logging.getLogger(__name__)

IMAGE_TYPES = ("sensor_msgs/CompressedImage", "sensor_msgs/Image")
MAX_ABS_VALUE = 1000.0  # steering (rad, or degrees if so configured) and speed (m/s) beyond this are damage
_SWAP = {"center": "left", "left": "center"}


class BagRecording(Recording):
    """One or more ``.bag`` files: parts of one drive (merged in time) or separate drives.

    The scan tags every steering sample with its file, so that bags whose frames overlap in time
    (separate drives on the same clock range) are each synchronized with their own reports.

    Args:
        paths: the bag files.
        camera: which camera and topics to read.
        steering: the steering report topic and fields.
        require_steering: a bag without steering reports is an error (data preparation); False
            (playback) scans it with ``steering=None`` and a warning: its frames have no truth.
    """

    kind = "bag"

    def __init__(self, paths: list[Path], camera: CameraConfig | None = None, steering: SteeringConfig | None = None,
                 require_steering: bool = True):
        super().__init__(paths)
        self.camera, self.steering = camera or CameraConfig(), steering or SteeringConfig()
        self.require_steering = require_steering
        self.types = MessageTypes()
        self.selected: list[str | None] = []
        self.frame_counts: list[int] = []
        self.skipped_frames: list[set[int]] = []  # per file: positions on its camera topic skipped by the scan

    def _swapped(self, path: Path) -> bool:
        """True for files whose left and center topics are swapped (and a camera that is affected)."""
        return self.camera.name in _SWAP and any(fnmatch.fnmatch(path.name, p) for p in self.camera.swap_left_center)

    def camera_topics(self, path: Path) -> list[str]:
        """Candidate camera topics for this file, in priority order (swap applied)."""
        name = self.camera.name
        if self._swapped(path):
            name = _SWAP[name]
        return [t.format(name=name) for t in self.camera.topics]

    def scan(self, progress: Progress | None = None) -> Scan:
        """Read header stamps of every candidate camera topic and all steering reports."""
        acc: dict[str, list[Any]] = {k: [] for k in ("ft", "fsrc", "st", "sa", "sv", "ssrc")}
        info = {"zero_stamp_frames": 0, "zero_stamp_steering": 0, "swapped_left_center": []}
        warnings, topics_seen, skipped = [], {}, SkipLog()
        self.selected, self.frame_counts, self.skipped_frames = [], [], []
        for fi, path in enumerate(self.paths):
            n_samples = len(acc["st"])
            stamps, bad, report = self._scan_file(path, acc, info, progress)
            acc["ssrc"].extend([fi] * (len(acc["st"]) - n_samples))
            topics_seen[path.name] = report.topics()
            warnings.extend(report.warnings())
            skipped.merge(report.skipped, file=path.name)
            chosen = next((t for t in self.camera_topics(path) if stamps.get(t)), None)
            self.selected.append(chosen)
            self.frame_counts.append(len(stamps.get(chosen, [])))
            self.skipped_frames.append(bad.get(chosen, set()))
            if chosen is not None:
                acc["ft"].extend(stamps[chosen])
                acc["fsrc"].extend([fi] * len(stamps[chosen]))
                if self._swapped(path):
                    info["swapped_left_center"].append(path.name)
        self._check_found(acc, topics_seen, warnings)
        info["camera_topics"] = {p.name: t for p, t in zip(self.paths, self.selected, strict=True)}
        st = np.array(acc["st"], np.int64)
        if not acc["st"]:
            warnings.append(f"no steering reports on {self.steering.topic}: the frames have no ground truth")
        return Scan(
            frame_t=np.array(acc["ft"], np.int64),
            frame_source=np.array(acc["fsrc"], np.int32),
            names=[p.name for p in self.paths],
            steering=(st, np.array(acc["sa"], np.float64)) if acc["st"] else None,
            speed=(st, np.array(acc["sv"], np.float64)) if acc["st"] else None,
            sample_source=np.array(acc["ssrc"], np.int32),
            info=info,
            warnings=warnings,
            skipped=skipped,
        )

    def _scan_file(self, path: Path, acc: dict[str, list[Any]], info: dict[str, Any], progress: Progress | None):
        cams = self.camera_topics(path)
        steer_topic = self.steering.topic
        stamps: dict[str, list[int]] = {t: [] for t in cams}
        bad: dict[str, set[int]] = {t: set() for t in cams}  # camera messages skipped, by position on the topic
        scanner, last_pos = BagScanner(path), 0
        for conn, rec_t, raw in scanner.messages(lambda c: c.topic in stamps or c.topic == steer_topic):
            image = conn.topic != steer_topic
            msg = self._decode(path, scanner, conn, raw, image)
            if msg is None:
                if image:
                    bad[conn.topic].add(len(stamps[conn.topic]) + len(bad[conn.topic]))
                continue
            t, fell_back = stamp_ns(msg, rec_t)
            if image:
                stamps[conn.topic].append(t)
                info["zero_stamp_frames"] += fell_back
            elif (why := self._steering_sample(conn, msg, t, acc)) is None:
                info["zero_stamp_steering"] += fell_back
            else:
                scanner.report.skipped.add("bad_value", topic=conn.topic, **scanner.where(), error=why)
            if progress and scanner.report.position != last_pos:
                progress(scanner.report.position - last_pos)
                last_pos = scanner.report.position
        if progress:
            progress(scanner.size - last_pos)
        return stamps, bad, scanner.report

    def _decode(self, path: Path, scanner: BagScanner, conn: BagConnection, raw: memoryview, image: bool) -> Any:
        """The message, or None when it does not match its definition (counted as ``undecodable``)."""
        if image:
            _check_image_type(conn, path)
        try:
            msg = self.types.deserialize(conn, raw)
            if image:
                _payload_of(conn, msg)
            return msg
        except UndecodableMessage as e:
            scanner.report.skipped.add("undecodable", topic=conn.topic, **scanner.where(), error=str(e))
            return None
        except DefinitionError as e:
            raise DefinitionError(f"{path}: {e}") from None

    def _steering_sample(self, conn: BagConnection, msg: Any, t: int, acc: dict[str, list[Any]]) -> str | None:
        """Add one steering sample; returns why it was not added (a value no sensor reports), else None."""
        sc = self.steering
        try:
            angle, speed = getattr(msg, sc.angle_field), getattr(msg, sc.speed_field)
        except AttributeError:
            missing = [f for f in (sc.angle_field, sc.speed_field) if not hasattr(msg, f)]
            raise InputError(
                f"{conn.topic} ({conn.msgtype}) has no field(s) {missing}; its fields: "
                f"{self.types.field_names(conn)} (set steering.angle_field / steering.speed_field)"
            ) from None
        try:
            angle, speed = float(angle), float(speed)
        except (TypeError, ValueError):
            raise InputError(f"{conn.topic} ({conn.msgtype}): fields {sc.angle_field} / {sc.speed_field} are not "
                             f"numbers in the bag's definition (set steering.angle_field / steering.speed_field)"
                             ) from None
        if not (abs(angle) <= MAX_ABS_VALUE and abs(speed) <= MAX_ABS_VALUE):  # also NaN
            return f"topic {conn.topic}: {sc.angle_field}={angle!r}, {sc.speed_field}={speed!r} (a damaged message?)"
        acc["st"].append(t)
        acc["sa"].append(angle)
        acc["sv"].append(speed)
        return None

    def _check_found(self, acc: dict[str, list[Any]], topics_seen: dict[str, dict[str, tuple[str, int]]],
                     warnings: list[str]) -> None:
        listing = "; ".join(
            f"{name}: " + (", ".join(f"{t} ({ty}, {n} msgs)" for t, (ty, n) in sorted(tops.items())) or "no topics")
            for name, tops in topics_seen.items()
        ) + "".join(f". Note: {w}" for w in warnings)
        if not acc["ft"]:
            wanted = sorted({t for p in self.paths for t in self.camera_topics(p)})
            raise InputError(f"no camera frames: none of the topics {wanted} has messages (choose the camera with "
                             f"--camera-topic). Topics present: {listing}")
        if not acc["st"] and self.require_steering:
            raise InputError(f"no steering: topic {self.steering.topic!r} has no messages. Topics present: {listing}")

    def payloads(self, wanted: np.ndarray, start: int = 0) -> Iterator[tuple[int, Payload]]:
        """Stream the selected camera topic of each file; decode-ready payloads."""
        offset = 0
        files = zip(self.paths, self.selected, self.frame_counts, self.skipped_frames, strict=True)
        for path, topic, n, bad in files:
            if topic is not None and offset + n > start and wanted[offset : offset + n].any():
                yield from self._file_payloads(path, topic, n, bad, offset, wanted, start)
            offset += n

    def _file_payloads(self, path: Path, topic: str, n: int, bad: set[int], offset: int, wanted: np.ndarray,
                       start: int) -> Iterator[tuple[int, Payload]]:
        k = 0
        for j, (conn, _, raw) in enumerate(BagScanner(path).messages(lambda c: c.topic == topic)):
            if j in bad:
                continue  # skipped (and counted) by the first pass
            o, k = offset + k, k + 1
            if k > n:
                break
            if o >= start and wanted[o]:
                yield o, _payload_of(conn, self.types.deserialize(conn, raw))
        if k != n:
            raise InputError(f"{path}: has {k} frames on {topic} now, the first pass saw {n} (file changed?)")


def _payload_of(conn: BagConnection, msg: Any) -> Payload:
    """The image payload of a camera message (UndecodableMessage when its fields are not an image's)."""
    try:
        data = msg.data
        if not isinstance(data, np.ndarray) or data.dtype != np.uint8:
            raise TypeError(f"data is {type(data).__name__}, not bytes")
        return image_payload(conn.msgtype, msg)
    except (AttributeError, TypeError, ValueError) as e:
        raise UndecodableMessage(f"topic {conn.topic}: {conn.msgtype} message without image fields ({e})") from None


def _check_image_type(conn: BagConnection, path: Path) -> None:
    if conn.msgtype not in IMAGE_TYPES:
        raise InputError(f"{path}: camera topic {conn.topic} has type {conn.msgtype}, expected one of {IMAGE_TYPES}")
