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
own. With ``h264=True`` the center frames are first round-tripped through H.264
(:class:`H264RoundTrip`), so every format carries a dashcam video's compression artifacts.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from vbp_live.core.errors import OutputError
from vbp_live.io import synth_formats as sf
from vbp_live.io.ground_truth import GroundTruthWriter
from vbp_live.io.synth_records import RenderClock, RenderedFrame, iter_records
from vbp_live.io.udacity_bag import UdacityBagWriter
from vbp_live.io.video_writer import h264_encoder
from vbp_live.synth.drive import Drive
from vbp_live.synth.sensor import sample_sensor

log = logging.getLogger(__name__)
FORMATS = ("bag", "mp4", "dump", "simlog", "gt")


class Sink(Protocol):
    """A writer fed frame by frame."""

    def add(self, rec: RenderedFrame) -> None: ...

    def close(self) -> list[Path]: ...

    def abort(self) -> None: ...


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

    def add(self, rec: RenderedFrame) -> None:
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

    def abort(self) -> None:
        """Drop the part being written (finished parts stay: each is a valid bag)."""
        if self.bag is not None:
            self.bag.__exit__(RuntimeError, RuntimeError("aborted"), None)
            self.bag = None


class GroundTruthSink:
    """The ground-truth file (``<out>/ground_truth.npz`` by default)."""

    def __init__(self, drive: Drive, path: str | os.PathLike[str]) -> None:
        self.writer = GroundTruthWriter(path, drive)

    def add(self, rec: RenderedFrame) -> None:
        self.writer.add_packed(rec.masks_packed(), rec.frame.shape[:2])

    def close(self) -> list[Path]:
        return [self.writer.close()]

    def abort(self) -> None:
        """Nothing on disk yet: the file is written in one go by :meth:`close`."""


class H264RoundTrip:
    """Encode frames with H.264 (PyAV's libx264, ``yuv420p``) and decode them again, in order.

    ``tune=zerolatency`` (no B-frames, no look-ahead) gives one decoded frame per frame in, so
    each frame comes back at once with the blocking, ringing, smearing of motion and halved
    chroma resolution of a dashcam video at this CRF. One thread: the same frames give the same
    bytes.

    Args:
        crf: x264 constant rate factor (18 = nearly clean, 35 = heavy artifacts).
        fps: frame rate the rate control assumes.
    """

    def __init__(self, crf: int, fps: float = 20.0) -> None:
        import av

        name = h264_encoder()
        if name is None:
            raise OutputError("h264 round trip: this PyAV has no H.264 encoder (libx264)")
        self.av, self.crf, self.fps = av, crf, Fraction(fps).limit_denominator(100_000)
        self.enc = self.dec = None
        self.name, self.frames = name, 0

    def _open(self, width: int, height: int) -> None:
        if width % 2 or height % 2:
            raise ValueError(f"h264 round trip needs an even frame size, got {width}x{height}")
        self.enc = self.av.CodecContext.create(self.name, "w")
        self.enc.width, self.enc.height, self.enc.pix_fmt = width, height, "yuv420p"
        self.enc.time_base, self.enc.framerate = 1 / self.fps, self.fps
        self.enc.options = {"crf": str(self.crf), "preset": "veryfast", "tune": "zerolatency", "threads": "1"}
        self.dec = self.av.CodecContext.create("h264", "r")
        self.dec.thread_count = 1

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        """The (H, W, 3) uint8 BGR frame after H.264 encoding and decoding."""
        if self.enc is None:
            self._open(frame.shape[1], frame.shape[0])
        vf = self.av.VideoFrame.from_ndarray(cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420), format="yuv420p")
        vf.pts = self.frames
        self.frames += 1
        out = [d for pkt in self.enc.encode(vf) for d in self.dec.decode(pkt)]
        if len(out) != 1:
            raise RuntimeError(f"H.264 round trip returned {len(out)} frames for one (zerolatency expected)")
        return cv2.cvtColor(out[0].to_ndarray(format="yuv420p"), cv2.COLOR_YUV2BGR_I420)

    def close(self) -> None:
        """Release the codecs."""
        self.enc = self.dec = None


def h264_records(records: Iterable[RenderedFrame], crf: int, fps: float) -> Iterator[RenderedFrame]:
    """The records with their center frame round-tripped through H.264 (:class:`H264RoundTrip`), in order."""
    trip = H264RoundTrip(crf, fps)
    try:
        for rec in records:
            yield replace(rec, frame=trip(rec.frame), _jpeg={})
    finally:
        trip.close()


def drive_h264_crf(drive: Drive) -> int:
    """The drive's random CRF for ``h264=True``: 18 at ``randomize`` 0, up to 35 at 1 (its sensor stream)."""
    return sample_sensor(drive.config.seed, getattr(drive.config, "randomize", 0.0)).h264_crf


@dataclass
class WriteStats:
    """What :func:`write_outputs` did and how long it took (seconds).

    ``render_s`` sums the render time of all workers; ``wall_s`` is the whole run.
    """

    frames: int = 0
    workers: int = 1
    render_s: float = 0.0
    render_cpu_s: float = 0.0
    wall_s: float = 0.0
    paths: list[Path] = field(default_factory=list)

    @property
    def render_fps(self) -> float:
        """Frames one process renders per second (all cameras of a frame count as one)."""
        return self.frames / self.render_s if self.render_s > 0 else float("nan")

    @property
    def total_fps(self) -> float:
        """Frames per second of the whole run: render, encode and write."""
        return self.frames / self.wall_s if self.wall_s > 0 else float("nan")


def make_sinks(drive: Drive, out_dir: str | os.PathLike[str], formats: Iterable[str], *, split: int = 1,
               raw: bool = False, swap_2016_10_25: bool = False, side_cameras: bool = False,
               overwrite: bool = False) -> list[Sink]:
    """Build the sinks for ``formats`` (a subset of :data:`FORMATS`) under ``out_dir``."""
    out = Path(out_dir)
    formats = list(formats)
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise ValueError(f"unknown output format(s) {unknown}; choose from {list(FORMATS)}")
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
                  overwrite: bool = False, jpeg_quality: int = 90, workers: int = 1, h264: bool = False,
                  progress: Callable[[Iterator[RenderedFrame]], Iterable[RenderedFrame]] | None = None) -> WriteStats:
    """Render ``drive`` once and write every chosen format under ``out_dir``.

    Args:
        drive: from :func:`vbp_live.synth.simulate_drive`.
        out_dir: output folder (created).
        formats: subset of :data:`FORMATS`.
        split, raw, swap_2016_10_25: bag options (see :class:`BagSink`).
        side_cameras: also render left/right cameras (+-0.5 m) for bag, dump and simlog.
        overwrite: replace existing bag files.
        jpeg_quality: JPEG quality of compressed images.
        workers: render processes (1 = this process); the output is the same for any number.
        h264: round-trip the center frames through H.264 at the drive's CRF (:func:`drive_h264_crf`)
            before every writer (side cameras stay as rendered); one encode + decode per frame, in this process.
        progress: wraps the record iterator (e.g. ``tqdm``).

    Returns:
        :class:`WriteStats` with the written paths and the measured render time.
    """
    t_start = time.perf_counter()
    stats, clock = WriteStats(workers=max(1, workers)), RenderClock()
    sinks = make_sinks(drive, out_dir, formats, split=split, raw=raw, swap_2016_10_25=swap_2016_10_25,
                       side_cameras=side_cameras, overwrite=overwrite)
    jpeg = (("bag" in formats and not raw) or "dump" in formats) and not h264  # workers' JPEGs would be stale
    records: Iterable[RenderedFrame] = iter_records(drive, side_cameras, jpeg_quality, workers, clock, jpeg)
    if h264:
        records = h264_records(records, drive_h264_crf(drive), drive.config.fps)
    if progress is not None:
        records = progress(records)  # type: ignore[arg-type]
    try:
        for rec in records:
            for sink in sinks:
                sink.add(rec)
            stats.frames += 1
    except BaseException:
        for sink in sinks:
            sink.abort()  # no temp files left behind; files already complete stay valid
        raise
    for sink in sinks:
        stats.paths += sink.close()
    stats.render_s, stats.render_cpu_s = clock.render_s, clock.cpu_s
    stats.wall_s = time.perf_counter() - t_start
    log.info("wrote %d frames: render %.1f fps per process, %.1f fps overall", stats.frames, stats.render_fps,
             stats.total_fps)
    return stats


def write_bag(drive: Drive, out_dir: str | os.PathLike[str], *, split: int = 1, raw: bool = False,
              swap_2016_10_25: bool = False, side_cameras: bool = False, overwrite: bool = False) -> list[Path]:
    """Render ``drive`` and write Udacity-layout bag(s) into ``out_dir``; returns their paths."""
    return write_outputs(drive, out_dir, ["bag"], split=split, raw=raw, swap_2016_10_25=swap_2016_10_25,
                         side_cameras=side_cameras, overwrite=overwrite).paths

