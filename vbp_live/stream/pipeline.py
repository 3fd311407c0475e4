"""The three-stage streaming pipeline: reader thread -> model thread -> writer thread.

Decoding, the model step and rendering/encoding overlap; bounded queues connect them. File
sources keep every frame in order (blocking puts, so the reader waits for the model). Live
sources keep only the newest frame at each hop (a put replaces what is waiting, counted as
dropped), so the output stays current instead of lagging.

Shutdown (improving on supervision's ``process_video``, which can hang when its callback
raises): one stop event, every queue operation waits with a timeout and re-checks it, a failing
stage records its error and sets the event, the writer always closes (finalizes) its sinks, and
the caller's thread joins every stage with a timeout. Ctrl-C in the caller's thread stops the
run the same way.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

from vbp_live.io.live import SourceLostError
from vbp_live.io.sinks import FrameSink
from vbp_live.io.video import FrameRecord, FrameSource
from vbp_live.stream.engine import OverlayEngine, Prediction
from vbp_live.stream.records import PredictionLog
from vbp_live.stream.render import OverlayRenderer
from vbp_live.stream.stats import FPSMonitor, StreamStats

log = logging.getLogger(__name__)

END = object()  # end-of-stream marker travelling through the queues
POLL_S = 0.05


class Stopped(Exception):
    """The stop event was set while a stage was waiting."""


class Channel:
    """A bounded FIFO between two stages that never waits without re-checking ``stop``.

    Args:
        maxsize: capacity.
        drop_oldest: when full, ``put`` discards the oldest item instead of waiting (live mode).
        stop: the pipeline's stop event.
    """

    def __init__(self, maxsize: int, drop_oldest: bool, stop: threading.Event):
        self.maxsize, self.drop_oldest, self.stop = max(1, maxsize), drop_oldest, stop
        self.items: deque = deque()
        self.cond = threading.Condition()

    def put(self, item: object) -> int:
        """Append ``item``; returns how many stale items were dropped. Raises :class:`Stopped`."""
        dropped = 0
        with self.cond:
            while len(self.items) >= self.maxsize:
                if self.drop_oldest:
                    self.items.popleft()
                    dropped += 1
                    continue
                if self.stop.is_set():
                    raise Stopped
                self.cond.wait(POLL_S)
            self.items.append(item)
            self.cond.notify_all()
        return dropped

    def get(self) -> object:
        """Oldest item, waiting as long as needed. Raises :class:`Stopped`."""
        with self.cond:
            while not self.items:
                if self.stop.is_set():
                    raise Stopped
                self.cond.wait(POLL_S)
            item = self.items.popleft()
            self.cond.notify_all()
            return item

    def get_nowait(self) -> object | None:
        """Oldest item, or None when empty."""
        with self.cond:
            if not self.items:
                return None
            item = self.items.popleft()
            self.cond.notify_all()
            return item


@dataclass
class PipelineConfig:
    """Pipeline settings.

    Attributes:
        batch_size: most frames per model step (file sources; what is queued is taken, up to this).
        queue_size: capacity of each queue for file sources (live sources keep 1).
        join_timeout_s: how long to wait for each thread after a stop before giving up on it.
        max_frames: stop after this many frames from the source.
        realtime: pace a file source at its frame rate (as if it were a camera).
    """

    batch_size: int = 8
    queue_size: int = 32
    join_timeout_s: float = 10.0
    max_frames: int | None = None
    realtime: bool = False


class Pipeline:
    """Runs a source through the engine and the renderer into sinks.

    Args:
        source: where frames come from (its ``info.live`` picks file or live behaviour).
        engine: the model step.
        renderer: draws the overlay and HUD.
        sinks: where output frames go (all of them; none is fine for benchmarks).
        config: sizes and limits.
        on_frame: called in the writer thread after each output frame with the stats.
        log: collects every output frame's prediction (and truth) for a CSV.
    """

    def __init__(
        self,
        source: FrameSource,
        engine: OverlayEngine,
        renderer: OverlayRenderer,
        sinks: Sequence[FrameSink] = (),
        config: PipelineConfig | None = None,
        on_frame: Callable[[StreamStats], None] | None = None,
        log: PredictionLog | None = None,
    ):
        self.source, self.engine, self.renderer, self.sinks = source, engine, renderer, list(sinks)
        self.config = config or PipelineConfig()
        self.on_frame, self.log = on_frame, log
        self.live = source.info.live
        self.stop = threading.Event()
        self.stats = StreamStats()
        self.errors: list[tuple[str, BaseException]] = []
        size = 1 if self.live else self.config.queue_size
        self.q_in = Channel(size, self.live, self.stop)
        self.q_out = Channel(size, self.live, self.stop)
        self.threads: list[threading.Thread] = []
        self.lost: SourceLostError | None = None
        self._failing: FrameSink | None = None

    # -- stages -------------------------------------------------------------------------------

    def _stage(self, name: str, fn: Callable[[], None]) -> Callable[[], None]:
        """Wrap a stage: any error is recorded and stops the whole pipeline."""

        def body() -> None:
            try:
                fn()
            except Stopped:
                pass
            except BaseException as e:  # noqa: BLE001  (reported to the caller by run())
                log.debug("stage %s failed", name, exc_info=True)
                self.errors.append((name, e))
                self.stop.set()

        return body

    def _read(self) -> None:
        frames = self.source.frames(self.stop)
        t_start, limit = time.perf_counter(), self.config.max_frames
        try:
            while not self.stop.is_set():
                rec = self._next_record(frames, t_start)
                if rec is None:
                    break
                self.stats.add(dropped=self.q_in.put(rec), frames_in=1)
                self._source_counts()
                if limit is not None and self.stats.frames_in >= limit:
                    self.stats.end_reason = "max frames"
                    break
        finally:
            self._source_counts()
            close = getattr(frames, "close", None)  # generators: run their cleanup now
            if close is not None:
                close()
        self.q_in.put(END)

    def _next_record(self, frames: Iterator[FrameRecord], t_start: float) -> FrameRecord | None:
        """The next frame (paced with ``realtime``); None at the end, on a stop, or when a live source is lost."""
        t0 = time.perf_counter()
        try:
            rec = next(frames, None)
        except SourceLostError as e:  # a lost live source ends the run like an end of stream
            self.lost = e
            return None
        if rec is None:
            return None
        self.stats.record("read", time.perf_counter() - t0)
        if self.config.realtime:
            if self.stop.wait(max(0.0, t_start + rec.time_s - time.perf_counter())):
                return None
            rec.t_capture = time.perf_counter()  # "captured" when a camera would have delivered it
        return rec

    def _source_counts(self) -> None:
        self.stats.corrupt, self.stats.reconnects = self.source.corrupt, self.source.reconnects

    def _next_batch(self) -> tuple[list[FrameRecord], bool]:
        """Block for one frame, then take what is already queued, up to the batch size."""
        first = self.q_in.get()
        if first is END:
            return [], True
        batch, ended = [first], False
        while len(batch) < self.config.batch_size:
            nxt = self.q_in.get_nowait()
            if nxt is None:
                break
            if nxt is END:
                ended = True
                break
            batch.append(nxt)
        return batch, ended

    def _model(self) -> None:
        ended = False
        while not ended:
            batch, ended = self._next_batch()
            if batch:
                self._infer(batch)
        self.q_out.put(END)

    def _infer(self, batch: list[FrameRecord]) -> None:
        t0 = time.perf_counter()
        preds = self.engine.infer([r.image for r in batch], [r.cropped for r in batch])
        dt = time.perf_counter() - t0
        self.stats.add(batches=1, frames_in_model=len(batch))
        self.stats.model_s += dt  # only this thread writes it
        for rec, pred in zip(batch, preds):
            self.stats.record("queue", t0 - rec.t_capture)
            self.stats.record("model", dt)
            self.stats.add(dropped=self.q_out.put((rec, pred)))

    def _write(self) -> None:
        fps = FPSMonitor()
        try:
            while True:
                item = self.q_out.get()
                if item is END:
                    break
                self._emit(*item, fps)
                if any(s.quit_requested for s in self.sinks):
                    self.stats.end_reason = "quit"
                    self.stop.set()
                    break
        finally:
            self._close_sinks()

    def _emit(self, rec: FrameRecord, pred: Prediction, fps: FPSMonitor) -> None:
        t0 = time.perf_counter()
        frame = self.renderer.render(rec, pred, fps.fps or None)
        t1 = time.perf_counter()
        for sink in self.sinks:
            self._failing = sink
            sink.write(frame, rec.index, rec.time_s)
        self._failing = None
        t2 = time.perf_counter()
        fps.tick(t2)
        self.stats.record("render", t1 - t0)
        self.stats.record("write", t2 - t1)
        self.stats.record("end_to_end", t2 - rec.t_capture)
        self.stats.add(frames_out=1)
        if self.log is not None:
            self.log.add(rec, pred)
        if self.on_frame is not None:
            self.on_frame(self.stats)

    def _close_sinks(self) -> None:
        """Finalize every sink (and the log); the one that failed mid-write is aborted instead."""
        for sink in [*self.sinks, self.log]:
            if sink is None:
                continue
            try:
                sink.abort() if sink is self._failing else sink.close()  # type: ignore[union-attr]
            except Exception as e:  # noqa: BLE001
                self.errors.append(("close", e))

    # -- control ------------------------------------------------------------------------------

    def run(self) -> StreamStats:
        """Run to the end of the source, a quit key, Ctrl-C or an error; always returns the stats.

        ``stats.end_reason`` says why it ended and ``stats.error`` carries a failing stage's message.
        """
        for sink in self.sinks:
            sink.attach(self.stop)
        stages = (("reader", self._read), ("model", self._model), ("writer", self._write))
        self.threads = [threading.Thread(target=self._stage(n, f), name=f"vbp-{n}", daemon=True) for n, f in stages]
        self.stats.t_start = time.perf_counter()
        for t in self.threads:
            t.start()
        try:
            self._wait()
        except KeyboardInterrupt:
            self.stats.end_reason = "interrupted"
            self.stop.set()
            self._join_all()
        self.stats.t_end = time.perf_counter()
        self._finish_reason()
        return self.stats

    def _wait(self) -> None:
        """Join the threads while they run; once any error stops the run, join with a deadline."""
        while any(t.is_alive() for t in self.threads):
            for t in self.threads:
                t.join(POLL_S)
            if self.stop.is_set():
                self._join_all()
                return

    def _join_all(self) -> None:
        deadline = time.perf_counter() + self.config.join_timeout_s
        for t in self.threads:
            t.join(max(0.0, deadline - time.perf_counter()))
        stuck = [t.name for t in self.threads if t.is_alive()]
        if stuck:
            self.errors.append(("shutdown", TimeoutError(f"threads did not stop within {self.config.join_timeout_s:.0f} s: {stuck}")))

    def _finish_reason(self) -> None:
        if self.errors:
            stage, e = self.errors[0]
            self.stats.end_reason = f"error in {stage}"
            self.stats.error = f"{stage} stage failed: {type(e).__name__}: {e}"
        elif self.lost is not None:
            self.stats.end_reason, self.stats.error = "source lost", str(self.lost)
        elif not self.stats.end_reason:
            self.stats.end_reason = "end of stream"
