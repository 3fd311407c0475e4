"""What a recording reader may be told: camera, steering source, simulator scale, label sync.

These are also sections of ``configs/prep.yaml`` (:class:`data_prep.config.PrepConfig` holds
them under the same names), so a reader and the preparation agree on every option.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class CameraConfig:
    """Which camera stream becomes the frames.

    Attributes:
        name: camera to keep (the paper: ``center``).
        topics: bag topics to try, in order; ``{name}`` is replaced by the camera name.
        swap_left_center: bag file name patterns whose left and center topics are swapped
            (Udacity's 2016-10-25 El Camino bags: the true center camera is on /left_camera).
    """

    name: str = "center"
    topics: tuple[str, ...] = ("/{name}_camera/image_color/compressed", "/{name}_camera/image_color")
    swap_left_center: tuple[str, ...] = ("2016-10-25*.bag",)


@dataclass(frozen=True)
class SteeringConfig:
    """Where steering and speed come from in bags (``dbw_mkz_msgs/SteeringReport``).

    Attributes:
        topic: the steering report topic.
        angle_field: message field with the steering wheel angle in rad (positive = left).
        speed_field: message field with the vehicle speed in m/s.
    """

    topic: str = "/vehicle/steering_report"
    angle_field: str = "steering_wheel_angle"
    speed_field: str = "speed"


@dataclass(frozen=True)
class SyncConfig:
    """Resampling steering and speed onto camera timestamps.

    Attributes:
        method: ``linear`` (interpolate) or ``zoh`` (hold the latest sample).
        max_gap_s: drop frames inside a wider gap between samples (null: no limit).
    """

    method: str = "linear"
    max_gap_s: float | None = 0.25

    def max_gap_ns(self) -> int | None:
        """``max_gap_s`` in ns (None: no limit)."""
        return None if self.max_gap_s is None else int(round(self.max_gap_s * 1e9))


@dataclass(frozen=True)
class SimulatorConfig:
    """Udacity simulator logs (``driving_log.csv``): steering there is normalized to [-1, 1].

    steering_rad = (-1 if positive_right else 1) * steering * radians(max_wheel_angle_deg)
    * steering_ratio: the simulator's road-wheel angle (25 degrees at full lock) expressed as
    the steering *wheel* angle of a car with that ratio (Lincoln MKZ 14.8), positive = left,
    the same unit and sign as the real bags' SteeringReport.

    Attributes:
        max_wheel_angle_deg: road-wheel angle at steering = 1.
        steering_ratio: steering wheel angle / road-wheel angle (1.0 keeps road-wheel angles).
        positive_right: the simulator's positive steering turns right.
        frame_period_s: frame spacing used when image names carry no timestamp.
    """

    max_wheel_angle_deg: float = 25.0
    steering_ratio: float = 14.8
    positive_right: bool = True
    frame_period_s: float = 0.1

    def to_rad(self, normalized: float) -> float:
        """Simulator steering in [-1, 1] -> steering wheel angle in rad (positive = left)."""
        sign = -1.0 if self.positive_right else 1.0
        return sign * normalized * math.radians(self.max_wheel_angle_deg) * self.steering_ratio


ANGLE_UNITS = ("deg", "rad", "normalized")


def angle_to_rad(values: np.ndarray, unit: str, positive_right: bool, full_scale_deg: float = 25.0) -> np.ndarray:
    """Recorded steering -> the project's unit and sign: rad, positive = left.

    Args:
        values: (N,) recorded angles.
        unit: ``deg``, ``rad`` or ``normalized`` (-1..+1, ``full_scale_deg`` at 1).
        positive_right: the recording's positive angle turns right (donkeycar, SullyChen).
        full_scale_deg: the angle of a normalized 1.0.
    """
    v = np.asarray(values, np.float64)  # (N,)
    rad = {"deg": np.deg2rad(v), "rad": v, "normalized": v * math.radians(full_scale_deg)}[unit]
    return -rad if positive_right else rad


@dataclass(frozen=True)
class TubConfig:
    """donkeycar tubs (v1 and v2): ``user/angle`` in -1..+1, +1 = full right.

    steering_rad = (-1 if positive_right else 1) * angle * radians(full_scale_deg): the car's
    road-wheel angle, positive = left. Tubs carry no speed, so the speed filter is skipped;
    these optional filters take its place (off by default).

    Attributes:
        full_scale_deg: road-wheel angle at ``user/angle`` = 1 (a typical 1/10 car: 25 degrees).
        positive_right: a positive ``user/angle`` turns right (donkeycar's convention).
        min_throttle: keep records with ``user/throttle`` strictly above this (null: no filter).
        modes: keep only records whose ``user/mode`` is one of these (empty: no filter),
            e.g. ``[user]`` for human driving only.
        frame_period_s: frame spacing for records without ``_timestamp_ms`` (tub v1 without
            ``milliseconds``).
    """

    full_scale_deg: float = 25.0
    positive_right: bool = True
    min_throttle: float | None = None
    modes: tuple[str, ...] = ()
    frame_period_s: float = 0.05


@dataclass(frozen=True)
class FolderConfig:
    """A folder of frames with a label file (``data.txt`` or a CSV with a header).

    Attributes:
        angle_unit: ``deg`` (SullyChen's data.txt), ``rad`` or ``normalized`` (-1..+1).
        positive_right: a positive recorded angle turns right (SullyChen's steering wheel: yes).
        full_scale_deg: the angle of a normalized 1.0 (``angle_unit: normalized`` only).
        fps: frame rate when the labels carry no time column (frames in natural name order).
        image_column, angle_column: CSV header names (null: the first of the usual names,
            ``image``/``filename``/``frame``/``path`` and ``angle``/``steering``/``steering_angle``).
        time_column: CSV column with the frame time (null: ``time``/``timestamp`` if present).
        time_unit: unit of the time column: ``s``, ``ms``, ``us`` or ``ns``.
        speed_column: CSV column with the speed in m/s (null: ``speed`` if present; none: the
            speed filter is skipped).
    """

    angle_unit: str = "deg"
    positive_right: bool = True
    full_scale_deg: float = 25.0
    fps: float = 20.0
    image_column: str | None = None
    angle_column: str | None = None
    time_column: str | None = None
    time_unit: str = "s"
    speed_column: str | None = None


@dataclass(frozen=True)
class RecordingOptions:
    """Everything the readers of :mod:`vbp_live.recordings` may be told (defaults = ``configs/prep.yaml``).

    Attributes:
        camera: which camera becomes the frames (bags, bag dumps).
        steering: where steering and speed are in bags.
        sync: how labels are put onto the frame stamps (:mod:`vbp_live.recordings.labels`).
        simulator: the scale of simulator logs' steering.
        tub: donkeycar tubs' steering scale and optional throttle / mode filters.
        folder: frame folders' label unit, sign, frame rate and CSV columns.
    """

    camera: CameraConfig = field(default_factory=CameraConfig)
    steering: SteeringConfig = field(default_factory=SteeringConfig)
    sync: SyncConfig = field(default_factory=SyncConfig)
    simulator: SimulatorConfig = field(default_factory=SimulatorConfig)
    tub: TubConfig = field(default_factory=TubConfig)
    folder: FolderConfig = field(default_factory=FolderConfig)
