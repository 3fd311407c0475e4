"""Rendered frames on their way to the writers: :class:`RenderedFrame` and the render loop.

:func:`iter_records` renders a drive in order, in this process or in a pool of worker
processes (``workers > 1``). Workers also do the per-frame CPU work the writers need (JPEG
encoding, mask compression), so a 2-core machine renders and encodes about twice as fast.
Every frame is a pure function of ``(drive, index)``, so the output is identical for any
number of workers.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from vbp_live.io.ground_truth import pack_masks, unpack_masks
from vbp_live.io.udacity_bag import encode_jpeg
from vbp_live.synth.drive import Drive
from vbp_live.synth.render import GroundTruthMasks, Renderer

SIDE_OFFSETS_M = {"left": 0.5, "right": -0.5}


@dataclass
class RenderedFrame:
    """One rendered frame; JPEG bytes and packed masks are computed once, on first use."""

    index: int
    stamp_ns: int
    frame: np.ndarray
    side: dict[str, np.ndarray] = field(default_factory=dict)  # "left"/"right" camera frames
    jpeg_quality: int = 90
    _masks: GroundTruthMasks | None = None
    _masks_z: bytes | None = None
    _jpeg: dict[str, bytes] = field(default_factory=dict)

    @property
    def masks(self) -> GroundTruthMasks:
        """The ground-truth masks of the center frame."""
        if self._masks is None:
            assert self._masks_z is not None
            self._masks = unpack_masks(self._masks_z, self.frame.shape[:2])
        return self._masks

    def masks_packed(self) -> bytes:
        """The masks as stored in the ground-truth file."""
        if self._masks_z is None:
            self._masks_z = pack_masks(self.masks)
        return self._masks_z

    def jpeg(self, camera: str = "center") -> bytes:
        """JPEG bytes of a camera's frame."""
        if camera not in self._jpeg:
            img = self.frame if camera == "center" else self.side[camera]
            self._jpeg[camera] = encode_jpeg(img, self.jpeg_quality)
        return self._jpeg[camera]


class _FrameMaker:
    """Renders complete records for one drive (center + optional side cameras)."""

    def __init__(self, drive: Drive, side_cameras: bool, jpeg_quality: int) -> None:
        cam = drive.camera  # as mounted in this drive (randomized worlds move it)
        self.drive, self.quality = drive, jpeg_quality
        self.main = Renderer(drive)
        sides = SIDE_OFFSETS_M if side_cameras else {}
        self.sides = {n: Renderer(drive, replace(cam, lateral_m=cam.lateral_m + off)) for n, off in sides.items()}

    def __call__(self, i: int) -> tuple[RenderedFrame, tuple[float, float]]:
        t0, c0 = time.perf_counter(), time.process_time()
        frame, masks = self.main.render(i)
        side = {n: r.render(i)[0] for n, r in self.sides.items()}
        dt = (time.perf_counter() - t0, time.process_time() - c0)
        return RenderedFrame(i, int(self.drive.frame_times_ns[i]), frame, side, self.quality, _masks=masks), dt


_WORKER: _FrameMaker | None = None
_JPEG = True


def _init_worker(drive: Drive, side_cameras: bool, jpeg_quality: int, jpeg: bool) -> None:
    global _WORKER, _JPEG
    cv2.setNumThreads(1)  # one process per core already
    _WORKER, _JPEG = _FrameMaker(drive, side_cameras, jpeg_quality), jpeg


def _work(i: int) -> tuple[RenderedFrame, tuple[float, float]]:
    assert _WORKER is not None
    rec, dt = _WORKER(i)
    rec.masks_packed()  # compress and encode in the worker, ship bytes instead of bool masks
    for cam in ("center", *rec.side) if _JPEG else ():
        rec.jpeg(cam)
    rec._masks = None
    return rec, dt


@dataclass
class RenderClock:
    """Render time summed over workers: wall seconds and CPU seconds (the latter is less
    sensitive to other jobs on the machine), and frames done."""

    render_s: float = 0.0
    cpu_s: float = 0.0
    frames: int = 0

    def tick(self, dt: tuple[float, float]) -> None:
        """Count one frame that took ``(wall, cpu)`` seconds."""
        self.render_s += dt[0]
        self.cpu_s += dt[1]
        self.frames += 1


def iter_records(drive: Drive, side_cameras: bool = False, jpeg_quality: int = 90, workers: int = 1,
                 clock: RenderClock | None = None, jpeg: bool = True) -> Iterator[RenderedFrame]:
    """Render every frame of ``drive`` in order.

    Args:
        drive: the drive.
        side_cameras: also render left/right cameras (+-0.5 m).
        jpeg_quality: JPEG quality of :meth:`RenderedFrame.jpeg`.
        workers: processes that render (1 = in this process).
        clock: accumulates render time.
        jpeg: workers encode JPEGs up front (when a writer will need them).
    """
    clock = clock if clock is not None else RenderClock()
    if workers <= 1:
        make = _FrameMaker(drive, side_cameras, jpeg_quality)
        for i in range(drive.n_frames):
            rec, dt = make(i)
            clock.tick(dt)
            yield rec
        return
    with mp.get_context("spawn").Pool(workers, _init_worker, (drive, side_cameras, jpeg_quality, jpeg)) as pool:
        for rec, dt in pool.imap(_work, range(drive.n_frames), chunksize=4):
            clock.tick(dt)
            yield rec
