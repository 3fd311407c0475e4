"""Pass 2: decode and preprocess kept frames in a thread pool, write them in order.

The main thread reads payloads (I/O + deserialization) and keeps at most
``4 x threads`` frames in flight, so memory stays bounded for any recording size. Workers
decode (OpenCV releases the GIL) and apply THE crop function. Results are written in scan
order; a frame whose image cannot be decoded is skipped and recorded with its reason.

Ctrl-C and SIGTERM only set an event here (:func:`~vbp_live.core.signals.stop_on_signals`): the
loop stops submitting, the pool finishes the frames in flight, and only then is
:class:`~vbp_live.core.signals.Interrupted` raised. An exception raised by a signal handler in the
middle of the pool's own locking (``submit``, ``Future.result``) could leave a lock held and hang the
pool's shutdown forever.
"""

from __future__ import annotations

import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from data_prep.config import PrepConfig
from data_prep.plan import Plan
from vbp_live.core.preprocess import CropSpec, preprocess_frame
from vbp_live.core.signals import Interrupted, StopRequest, stop_on_signals
from vbp_live.io.dataset import DatasetWriter
from vbp_live.recordings.base import Recording
from vbp_live.recordings.images import MAX_PIXELS, ImageError, Payload, decode_payload

WorkResult = tuple[np.ndarray | None, float, float, ImageError | None]


def process_one(payload: Payload, spec: CropSpec, gray: bool, max_pixels: int = MAX_PIXELS) -> WorkResult:
    """Decode + preprocess one payload: ``(frame, decode_s, preprocess_s, error)``."""
    t0 = time.perf_counter()
    try:
        img = decode_payload(payload, gray, max_pixels)
    except ImageError as e:
        return None, time.perf_counter() - t0, 0.0, e
    t1 = time.perf_counter()
    try:
        out = preprocess_frame(img, spec)  # (out_height, out_width[, 3]) uint8
    except ValueError as e:
        return None, t1 - t0, time.perf_counter() - t1, ImageError(f"cannot crop a {img.shape} image: {e}")
    return out, t1 - t0, time.perf_counter() - t1, None


class FrameWriter:
    """Runs pass 2 for one plan into one writer, resuming where the writer left off.

    Frames are processed in ordinal order, each either written or rejected, so how far a
    previous run got follows from the writer's row count plus the rejected list alone.
    """

    def __init__(self, recording: Recording, plan: Plan, writer: DatasetWriter, cfg: PrepConfig):
        self.recording, self.plan, self.writer, self.cfg = recording, plan, writer, cfg
        self.wanted = plan.wanted()
        self.wanted_ords = np.flatnonzero(self.wanted)
        self.pos = plan.by_ordinal()
        state = writer.resumed_state or {}
        self.rejected: list[list[Any]] = [list(r) for r in state.get("rejected", [])]
        self.resumed_at = len(writer) + len(self.rejected)
        self.decoded = 0
        self.timings = {"read": 0.0, "decode": 0.0, "preprocess": 0.0, "write": 0.0}
        self._specs: dict[str, CropSpec] = {}  # file name -> its band (crop.source_horizons)

    @property
    def done(self) -> int:
        """Kept frames handled so far (written or rejected)."""
        return len(self.writer) + len(self.rejected)

    def run(self, progress: bool = True) -> None:
        """Process every remaining kept frame.

        Raises:
            Interrupted: a stop signal arrived; every frame stored so far stays stored (the caller
                checkpoints), the frames in flight were finished and dropped.
        """
        done = self.done
        start = int(self.wanted_ords[done]) if done < len(self.wanted_ords) else len(self.wanted)
        spec = self.cfg.crop.spec()  # the band of every file, unless crop.source_horizons gives some their own
        gray = spec.grayscale and self.cfg.decode.mode == "gray"
        threads = self.cfg.decode.threads
        old_cv = cv2.getNumThreads()
        cv2.setNumThreads(1)  # parallelism comes from the pool; no nested OpenCV threads
        try:
            with stop_on_signals(what="stopping after the frames in flight (progress is kept)") as stop, \
                    tqdm(total=len(self.wanted_ords), initial=done, unit="frame", desc="prep",
                         disable=not progress) as bar, ThreadPoolExecutor(threads, thread_name_prefix="prep") as pool:
                finished = self._loop(pool, start, spec, gray, 4 * threads, bar, stop)
        finally:
            cv2.setNumThreads(old_cv)
        if not finished:  # a signal arrived with frames left; a signal after the last frame loses nothing
            raise Interrupted(stop.signum)

    def _loop(self, pool: ThreadPoolExecutor, start: int, spec: CropSpec, gray: bool, inflight: int, bar: tqdm,
              stop: StopRequest) -> bool:
        """Submit and store frames until the recording ends (True) or a stop signal arrives (False)."""
        pending: deque[tuple[int, Future]] = deque()
        items = iter(self.recording.payloads(self.wanted, start))
        while not stop.event.is_set():
            t = time.perf_counter()
            item = next(items, None)
            self.timings["read"] += time.perf_counter() - t
            if item is not None:
                pending.append((item[0], pool.submit(process_one, item[1], self._spec(item[0], spec), gray,
                                                         self.cfg.decode.max_pixels)))
            while pending and (item is None or len(pending) >= inflight):
                ordinal, fut = pending.popleft()
                self._store(ordinal, fut.result())
                bar.update(1)
            if item is None:
                return True
        return False

    def _spec(self, ordinal: int, spec: CropSpec) -> CropSpec:
        """The band for the frame at ``ordinal``: its file's own (crop.source_horizons) or ``spec``."""
        if not self.cfg.crop.source_horizons:
            return spec
        name = self.plan.names[self.plan.source[self.pos[ordinal]]]
        if name not in self._specs:
            self._specs[name] = self.cfg.crop.spec_for(name)
        return self._specs[name]

    def _store(self, ordinal: int, res: WorkResult) -> None:
        frame, dt_dec, dt_pre, err = res
        self.timings["decode"] += dt_dec
        self.timings["preprocess"] += dt_pre
        t = time.perf_counter()
        if err is not None:
            self.rejected.append([int(ordinal), err.reason, str(err)])
        else:
            i, p = self.pos[ordinal], self.plan
            self.writer.append(frame, int(p.t[i]), float(p.steering[i]), float(p.speed[i]), p.names[p.source[i]])
            self.decoded += 1
        if self.done % self.cfg.output.checkpoint_every == 0:
            self.checkpoint()
        self.timings["write"] += time.perf_counter() - t

    def checkpoint(self) -> None:
        """Durable resume point (no-op for a writer made without a resume key)."""
        if self.writer.resume_key is not None:
            self.writer.checkpoint({"rejected": self.rejected})
