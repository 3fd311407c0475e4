"""A synthetic driving world with ground truth (layer 1: numpy + OpenCV only).

Public API::

    from vbp_live.synth import DriveConfig, simulate_drive, render_frames

    drive = simulate_drive(DriveConfig(seed=3, frames=400))   # deterministic for the config
    drive = simulate_drive(DriveConfig(seed=3, randomize=1.0))  # randomized camera, lanes, paint, surface, light
    drive.world, drive.camera                                  # its WorldParams, the camera as mounted
    drive.frame_times_ns     # (N,) int64 epoch ns of the center-camera frames (20 Hz, jittered)
    drive.steering           # (N,) steering WHEEL angle at each frame, rad, positive = left
    drive.speed              # (N,) m/s (stops and slow traffic give stretches below 5 m/s)
    drive.steer_times_ns     # (M,) ~50 Hz steering-report stamps (jittered, rare drops)
    drive.steer_angle, drive.steer_speed, drive.steer_cmd, drive.steer_torque   # (M,)
    for frame_bgr, masks in render_frames(drive):             # (480, 640, 3) uint8, GroundTruthMasks
        masks.lane, masks.hmark, masks.shadow, masks.car, masks.road   # (480, 640) bool

The steering label is the measured wheel angle of a pure-pursuit driver aiming at the ego lane
center ``DriveConfig.vehicle.lookahead_m`` (12 m) ahead of the rear axle, with steering ratio
14.8 and wheelbase 2.85 m; :func:`pure_pursuit_swa` recomputes the command from the road
geometry. The look-ahead point lies inside the NetSVF crop band (rows 0.55-0.81), so the label
is a function of what the network sees (plus a small actuator lag and noise).

Writers are I/O (layer 3) and live outside this package:

- :mod:`vbp_live.io.synth_writers`: ``write_outputs(drive, out_dir, formats, ...)`` renders once and
  writes any of ``bag`` (Udacity-layout ROS1 bag(s); ``split``, ``raw``, ``swap_2016_10_25``,
  ``side_cameras``), ``mp4``, ``dump`` (``center/<ns>.jpg``, ``camera.csv``, ``steering.csv``,
  ``interpolated.csv``), ``simlog`` (simulator ``driving_log.csv`` + ``IMG/``) and ``gt``;
  ``write_bag(drive, out_dir, ...)`` for bags alone.
- :mod:`vbp_live.io.udacity_bag`: ``UdacityBagWriter`` / ``write_udacity_bag`` for any frames and
  steering samples (``SteeringSamples``), e.g. deliberately faulty bags in tests.
- :mod:`vbp_live.io.ground_truth`: ``load_ground_truth(path)`` -> per-frame arrays and ``masks(i)``.

The CLI is ``vbp-live synth --out DIR --seed S --frames N [--randomize R] --format bag,mp4,dump,simlog,gt``.
"""

from vbp_live.synth.camera import Camera
from vbp_live.synth.drive import DEFAULT_START_NS, Drive, DriveConfig, simulate_drive
from vbp_live.synth.render import MASK_NAMES, GroundTruthMasks, Renderer, render_frames
from vbp_live.synth.vehicle import VehicleParams, pure_pursuit_swa
from vbp_live.synth.world import DEFAULT_WORLD, WorldParams, sample_world

__all__ = [
    "Camera",
    "DEFAULT_START_NS",
    "DEFAULT_WORLD",
    "Drive",
    "DriveConfig",
    "GroundTruthMasks",
    "MASK_NAMES",
    "Renderer",
    "VehicleParams",
    "WorldParams",
    "pure_pursuit_swa",
    "render_frames",
    "sample_world",
    "simulate_drive",
]
