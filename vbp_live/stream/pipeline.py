"""The three-stage streaming pipeline: reader thread -> model thread -> writer thread.

Decoding, the model step and rendering/encoding overlap; bounded queues connect them. File
sources keep every frame in order (blocking puts, so the reader waits for the model). Live
sources keep only the newest frame at each hop (a put replaces what is waiting, counted as
dropped), so the output stays current instead of lagging.

Shutdown (improving on supervision's ``process_video``, which can hang when its callback
raises): one stop event, every queue operation waits with a timeout and re-checks it, a failing
stage records its error and sets the event, and the writer always closes (finalizes) its sinks.
Ctrl-C and SIGTERM only set that event (no ``KeyboardInterrupt`` ever lands inside
``Thread.join``, which on Python 3.11 can mark a live thread as stopped), and the caller's thread
waits for every stage before anything (the capture, the writer) is released.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from vbp_live.core.signals import StopRequest, signal_name, stop_on_signals
from vbp_live.io.frames import FrameRecord, FrameSource
from vbp_live.io.live import SourceLostError
from vbp_live.io.sinks import FrameSink
from vbp_live.stream.channel import END, POLL_S, Channel, Stopped
from vbp_live.stream.display import Display
from vbp_live.stream.engine import OverlayEngine, Prediction
from vbp_live.stream.records import PredictionLog
from vbp_live.stream.render import OverlayRenderer
from vbp_live.stream.stats import FPSMonitor, StreamStats

log = logging.getLogger(__name__)

@dataclass
class PipelineConfig:
    """Pipeline settings.

    Attributes:
        batch_size: most frames per model step (file sources; what is queued is taken, up to this).
        queue_size: capacity of each queue for file sources (live sources keep 1).
        join_timeout_s: how long to wait for the threads after a stop before giving up on them (a stage
            stuck in a blocking call; what it holds is then never released, see ``Pipeline.stuck``).
        max_frames: stop after this many frames from the source.
        realtime: pace a file source at its frame rate (as if it were a camera).
    """

    batch_size: int = 8
    queue_size: int = 32
    join_timeout_s: float = 30.0
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
        self.source, self.engine, self.renderer = source, engine, renderer
        self.sinks = [s for s in sinks if not s.needs_main_thread]  # driven by the writer thread
        self.config = config or PipelineConfig()
        self.on_frame, self.log = on_frame, log
        self.live = source.info.live
        self.stop = threading.Event()
        self.stats = StreamStats()
        self.errors: list[tuple[str, BaseException]] = []
        size = 1 if self.live else self.config.queue_size
        self.q_in = Channel(size, self.live, self.stop)
        self.q_out = Channel(size, self.live, self.stop)
        ui = [s for s in sinks if s.needs_main_thread]
        self.display = Display(ui, self.stop, self.live) if ui else None
        self.threads: list[threading.Thread] = []
        self.lost: SourceLostError | None = None
        self.signals: StopRequest | None = None
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
                    self._count_missing()
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

    def _count_missing(self) -> None:
        """At the source's own end: frames its header declared that it never delivered (a truncated file)."""
        total = self.source.info.total
        if self.stop.is_set() or self.lost is not None or self.source.info.live or not total:
            return
        self._source_counts()
        self.stats.declared = total
        self.stats.missing = max(0, total - self.stats.frames_in - self.stats.corrupt)
        if self.stats.missing:
            log.warning("%s: declared %d frames, but only %d could be read (%d skipped): %d missing",
                        self.source.info.name, total, self.stats.frames_in, self.stats.corrupt, self.stats.missing)

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
        for rec, pred in zip(batch, preds, strict=True):
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
        if self.display is not None:
            self.display.offer(frame, rec.index, rec.time_s)
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
        """Run to the end of the source, a quit key, Ctrl-C/SIGTERM or an error; always returns the stats.

        ``stats.end_reason`` says why it ended, ``stats.signal`` which signal interrupted it and
        ``stats.error`` carries a failing stage's message. Every stage has ended when this returns,
        unless one was stuck past ``join_timeout_s`` (then ``stats.stuck`` names it, and nothing it
        uses may be released).
        """
        for sink in [*self.sinks, *(self.display.sinks if self.display else [])]:
            sink.attach(self.stop)
        stages = (("reader", self._read), ("model", self._model), ("writer", self._write))
        self.threads = [threading.Thread(target=self._stage(n, f), name=f"vbp-{n}", daemon=True) for n, f in stages]
        self.stats.t_start = time.perf_counter()
        with stop_on_signals(self.stop, "stopping: finishing the outputs with the frames processed") as req:
            self.signals = req
            for t in self.threads:
                t.start()
            try:
                self._wait()
            finally:
                self._close_display()
        self.stats.t_end = time.perf_counter()
        self._finish_reason()
        return self.stats

    def _wait(self) -> None:
        """Drive the windows (or just wait) while the stages run; after a stop, wait for every stage."""
        while alive := [t for t in self.threads if t.is_alive()]:
            if self.stop.is_set():
                self._join_all()
                return
            if self.display is None:
                alive[0].join(POLL_S)  # a signal only sets the stop event: nothing is raised in here
            else:
                self._display_step()
        if self.display is not None:
            self.display.drain()  # the last frames the writer handed over

    def _display_step(self) -> None:
        try:
            self.display.step(POLL_S)
        except Exception as e:  # noqa: BLE001  (a window failing stops the run like any stage)
            self.errors.append(("display", e))
            self.stop.set()
        if self.display.quit_requested and not self.stop.is_set():
            self.stats.end_reason = "quit"
            self.stop.set()

    def _close_display(self) -> None:
        if self.display is not None:
            try:
                self.display.close()
            except Exception as e:  # noqa: BLE001
                self.errors.append(("display", e))

    def _join_all(self) -> None:
        """Wait for every stage (the writer finalizes its sinks meanwhile), up to ``join_timeout_s``."""
        deadline = time.perf_counter() + self.config.join_timeout_s
        while (alive := [t for t in self.threads if t.is_alive()]) and time.perf_counter() < deadline:
            alive[0].join(POLL_S)
        self.stats.stuck = [t.name for t in self.threads if t.is_alive()]
        if self.stats.stuck:
            stuck_error = TimeoutError(f"threads did not stop within {self.config.join_timeout_s:.0f} s: "
                                       f"{self.stats.stuck}")
            self.errors.append(("shutdown", stuck_error))

    def _finish_reason(self) -> None:
        if self.signals is not None and self.signals.signum is not None:
            self.stats.end_reason, self.stats.signal = "interrupted", signal_name(self.signals.signum)
            if self.errors:
                stage, e = self.errors[0]
                self.stats.error = f"{stage} stage failed: {type(e).__name__}: {e}"
        elif self.errors:
            stage, e = self.errors[0]
            self.stats.end_reason = f"error in {stage}"
            self.stats.error = f"{stage} stage failed: {type(e).__name__}: {e}"
        elif self.lost is not None:
            self.stats.end_reason, self.stats.error = "source lost", str(self.lost)
        elif not self.stats.end_reason:
            self.stats.end_reason = "end of stream"
            if self.stats.missing:
                self.stats.end_reason += (f" ({self.stats.missing} of {self.stats.declared} declared frames missing:"
                                          " the file ends early)")
