"""What a recording reader may be told: camera, steering source, simulator scale, label sync.

These are also sections of ``configs/prep.yaml`` (:class:`data_prep.config.PrepConfig` holds
them under the same names), so a reader and the preparation agree on every option.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


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


@dataclass(frozen=True)
class RecordingOptions:
    """Everything the readers of :mod:`vbp_live.recordings` may be told (defaults = ``configs/prep.yaml``).

    Attributes:
        camera: which camera becomes the frames (bags, bag dumps).
        steering: where steering and speed are in bags.
        sync: how labels are put onto the frame stamps (:mod:`vbp_live.recordings.labels`).
        simulator: the scale of simulator logs' steering.
    """

    camera: CameraConfig = field(default_factory=CameraConfig)
    steering: SteeringConfig = field(default_factory=SteeringConfig)
    sync: SyncConfig = field(default_factory=SyncConfig)
    simulator: SimulatorConfig = field(default_factory=SimulatorConfig)
