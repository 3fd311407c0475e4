"""Write a synthetic drive as the recordings people already have, all from one render pass.

Formats (``FORMATS``):

- ``bag``: Udacity-layout ROS1 bag(s) (:mod:`vbp_live.io.udacity_bag`), optionally split into
  several files and/or with the 2016-10-25 naming and swapped left/center topics.
- ``mp4``: a dashcam-style video (OpenCV ``mp4v``, 20 fps) of the center camera.
- ``dump``: a bag-dump folder as udacity-driving-reader writes it: ``center/<stamp_ns>.jpg``,
  ``camera.csv``, ``steering.csv``, ``interpolated.csv``.
- ``simlog``: a Udacity-simulator ``driving_log.csv`` with ``IMG/`` (320x160 frames).
- ``gt``: the ground truth (:mod:`vbp_live.io.ground_truth`).

Each format is a *sink* (``add(record)``, ``close()``); :func:`write_outputs` renders every frame
once and feeds all chosen sinks. The one-format helpers (:func:`write_bag`, ...) render on their
own.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Protocol

import numpy as np

from vbp_live.io.ground_truth import GroundTruthWriter
from vbp_live.io.udacity_bag import UdacityBagWriter, encode_jpeg
from vbp_live.synth.drive import Drive
from vbp_live.synth.render import GroundTruthMasks, Renderer

log = logging.getLogger(__name__)
FORMATS = ("bag", "mp4", "dump", "simlog", "gt")


@dataclass
class FrameRecord:
    """One rendered frame on its way to the sinks (the JPEG is encoded once, on first use)."""

    index: int
    stamp_ns: int
    frame: np.ndarray
    masks: GroundTruthMasks
    side: dict[str, np.ndarray] = field(default_factory=dict)  # "left"/"right" camera frames
    jpeg_quality: int = 90
    _jpeg: dict[str, bytes] = field(default_factory=dict)

    def jpeg(self, camera: str = "center") -> bytes:
        """JPEG bytes of a camera's frame."""
        if camera not in self._jpeg:
            img = self.frame if camera == "center" else self.side[camera]
            self._jpeg[camera] = encode_jpeg(img, self.jpeg_quality)
        return self._jpeg[camera]


class Sink(Protocol):
    """A writer fed frame by frame."""

    def add(self, rec: FrameRecord) -> None: ...

    def close(self) -> list[Path]: ...


def bag_names(drive: Drive, split: int, swap_2016_10_25: bool, prefix: str | None = None) -> list[str]:
    """File names of the bag parts: ``<prefix>.bag`` or rosbag's split naming ``<prefix>_<k>.bag``.

    With ``swap_2016_10_25`` the prefix is ``2016-10-25-HH-MM-SS`` (time of day of the first
    stamp, UTC), the naming that tells readers to swap the left and center topics back.
    """
    if prefix is None:
        if swap_2016_10_25:
            t = _dt.datetime.fromtimestamp(int(drive.frame_times_ns[0]) // 10**9, _dt.timezone.utc)
            prefix = "2016-10-25-" + t.strftime("%H-%M-%S")
        else:
            prefix = f"synth_seed{drive.config.seed}"
    if split <= 1:
        return [f"{prefix}.bag"]
    return [f"{prefix}_{k}.bag" for k in range(split)]


class BagSink:
    """Udacity-layout bag(s): frames and ~50 Hz steering reports interleaved in stamp order.

    With ``split = K`` the drive is cut into K files at frame boundaries (equal frame counts);
    each steering report goes to the part whose time span holds it.
    """

    def __init__(self, drive: Drive, out_dir: str | os.PathLike[str], *, split: int = 1, raw: bool = False,
                 swap_2016_10_25: bool = False, side_cameras: bool = False, overwrite: bool = False,
                 prefix: str | None = None) -> None:
        if split < 1 or split > drive.n_frames:
            raise ValueError(f"split must be in 1..{drive.n_frames} (frames), got {split}")
        self.drive, self.out_dir = drive, Path(out_dir)
        self.paths = [self.out_dir / n for n in bag_names(drive, split, swap_2016_10_25, prefix)]
        self.kw = dict(raw=raw, swap_left_center=swap_2016_10_25, overwrite=overwrite)
        self.side = side_cameras
        self.first_frame = [round(k * drive.n_frames / split) for k in range(split)]
        self.next_steer = 0
        self.part = -1
        self.bag: UdacityBagWriter | None = None
        self.written: list[Path] = []

    def _open_part(self, k: int) -> None:
        self._close_part()
        self.part, self.bag = k, UdacityBagWriter(self.paths[k], **self.kw).__enter__()

    def _close_part(self) -> None:
        if self.bag is not None:
            self.bag.__exit__(None, None, None)
            self.written.append(self.bag.path)
            self.bag = None

    def _steering_until(self, stamp_ns: int | None) -> None:
        d, k = self.drive, self.next_steer
        assert self.bag is not None
        while k < len(d.steer_times_ns) and (stamp_ns is None or d.steer_times_ns[k] <= stamp_ns):
            self.bag.write_steering(int(d.steer_times_ns[k]), float(d.steer_angle[k]), float(d.steer_speed[k]),
                                    cmd=float(d.steer_cmd[k]), torque=float(d.steer_torque[k]))
            k += 1
        self.next_steer = k

    def add(self, rec: FrameRecord) -> None:
        """Write the steering reports up to this frame, then the frame (and side cameras)."""
        if self.part + 1 < len(self.first_frame) and rec.index >= self.first_frame[self.part + 1]:
            if self.bag is not None:
                self._steering_until(rec.stamp_ns - 1)
            self._open_part(self.part + 1)
        self._steering_until(rec.stamp_ns)
        assert self.bag is not None
        for cam in ("left", "center", "right") if self.side else ("center",):
            img = rec.frame if cam == "center" else rec.side[cam]
            self.bag.write_image(rec.stamp_ns, img if self.kw["raw"] else rec.jpeg(cam), cam)

    def close(self) -> list[Path]:
        """Write the remaining steering reports and finish the last part."""
        if self.bag is not None:
            self._steering_until(None)
        self._close_part()
        return self.written


class GroundTruthSink:
    """The ground-truth file (``<out>/ground_truth.npz`` by default)."""

    def __init__(self, drive: Drive, path: str | os.PathLike[str]) -> None:
        self.writer = GroundTruthWriter(path, drive)

    def add(self, rec: FrameRecord) -> None:
        self.writer.add(rec.masks)

    def close(self) -> list[Path]:
        return [self.writer.close()]


@dataclass
class WriteStats:
    """What :func:`write_outputs` did and how long the parts took (seconds)."""

    frames: int = 0
    render_s: float = 0.0
    write_s: float = 0.0
    paths: list[Path] = field(default_factory=list)

    @property
    def render_fps(self) -> float:
        """Frames rendered per second of render time (all cameras of a frame count as one)."""
        return self.frames / self.render_s if self.render_s > 0 else float("nan")


def iter_records(drive: Drive, side_cameras: bool = False, jpeg_quality: int = 90,
                 stats: WriteStats | None = None) -> Iterator[FrameRecord]:
    """Render the drive frame by frame (center camera + optional left/right cameras)."""
    from dataclasses import replace

    cam = drive.config.camera
    main = Renderer(drive)
    sides = {n: Renderer(drive, replace(cam, lateral_m=off, hood=cam.hood)) for n, off in (("left", 0.5), ("right", -0.5))} if side_cameras else {}
    for i in range(drive.n_frames):
        t0 = time.perf_counter()
        frame, masks = main.render(i)
        side = {n: r.render(i)[0] for n, r in sides.items()}
        if stats is not None:
            stats.render_s += time.perf_counter() - t0
        yield FrameRecord(i, int(drive.frame_times_ns[i]), frame, masks, side, jpeg_quality)


def make_sinks(drive: Drive, out_dir: str | os.PathLike[str], formats: Iterable[str], *, split: int = 1,
               raw: bool = False, swap_2016_10_25: bool = False, side_cameras: bool = False,
               overwrite: bool = False) -> list[Sink]:
    """Build the sinks for ``formats`` (a subset of :data:`FORMATS`) under ``out_dir``."""
    out = Path(out_dir)
    formats = list(formats)
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise ValueError(f"unknown output format(s) {unknown}; choose from {list(FORMATS)}")
    from vbp_live.io import synth_formats as sf

    table: dict[str, Callable[[], Sink]] = {
        "bag": lambda: BagSink(drive, out, split=split, raw=raw, swap_2016_10_25=swap_2016_10_25,
                               side_cameras=side_cameras, overwrite=overwrite),
        "mp4": lambda: sf.VideoSink(out / f"synth_seed{drive.config.seed}.mp4", drive.config.fps),
        "dump": lambda: sf.DumpSink(drive, out / "dump", side_cameras=side_cameras),
        "simlog": lambda: sf.SimLogSink(drive, out / "simlog", side_cameras=side_cameras),
        "gt": lambda: GroundTruthSink(drive, out / "ground_truth.npz"),
    }
    return [table[f]() for f in formats]


def write_outputs(drive: Drive, out_dir: str | os.PathLike[str], formats: Iterable[str] = FORMATS, *,
                  split: int = 1, raw: bool = False, swap_2016_10_25: bool = False, side_cameras: bool = False,
                  overwrite: bool = False, jpeg_quality: int = 90,
                  progress: Callable[[Iterator[FrameRecord]], Iterable[FrameRecord]] | None = None) -> WriteStats:
    """Render ``drive`` once and write every chosen format under ``out_dir``.

    Args:
        drive: from :func:`vbp_live.synth.simulate_drive`.
        out_dir: output folder (created).
        formats: subset of :data:`FORMATS`.
        split, raw, swap_2016_10_25: bag options (see :class:`BagSink`).
        side_cameras: also render left/right cameras (+-0.5 m) for bag, dump and simlog.
        overwrite: replace existing bag files.
        progress: wraps the record iterator (e.g. ``tqdm``).

    Returns:
        :class:`WriteStats` with the written paths and the measured render time.
    """
    stats = WriteStats()
    sinks = make_sinks(drive, out_dir, formats, split=split, raw=raw, swap_2016_10_25=swap_2016_10_25,
                       side_cameras=side_cameras, overwrite=overwrite)
    records: Iterable[FrameRecord] = iter_records(drive, side_cameras, jpeg_quality, stats)
    if progress is not None:
        records = progress(records)  # type: ignore[arg-type]
    for rec in records:
        t0 = time.perf_counter()
        for sink in sinks:
            sink.add(rec)
        stats.write_s += time.perf_counter() - t0
        stats.frames += 1
    for sink in sinks:
        stats.paths += sink.close()
    log.info("wrote %d frames: render %.1f fps", stats.frames, stats.render_fps)
    return stats


def write_bag(drive: Drive, out_dir: str | os.PathLike[str], *, split: int = 1, raw: bool = False,
              swap_2016_10_25: bool = False, side_cameras: bool = False, overwrite: bool = False) -> list[Path]:
    """Render ``drive`` and write Udacity-layout bag(s) into ``out_dir``; returns their paths."""
    return write_outputs(drive, out_dir, ["bag"], split=split, raw=raw, swap_2016_10_25=swap_2016_10_25,
                         side_cameras=side_cameras, overwrite=overwrite).paths


def write_ground_truth_file(drive: Drive, path: str | os.PathLike[str]) -> Path:
    """Render ``drive`` and write only its ground-truth file."""
    sink = GroundTruthSink(drive, path)
    for rec in iter_records(drive):
        sink.add(rec)
    return sink.close()[0]
