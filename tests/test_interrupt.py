"""Ctrl-C and SIGTERM at random moments: a real ``vbp-live run`` always exits 130/143 with finished outputs.

Twenty runs (video file, image folder, Udacity bag, MJPEG stream in turn; SIGINT and SIGTERM
alternating; seeded delays) must each exit with 128 + the signal, leave a video that decodes and
holds exactly the frames listed in the CSV, and nothing else. ``scripts/interrupt_check.py``
runs more of them and prints the table (docs/reliability.md). In process: a signal only sets the
pipeline's stop event (the handlers are restored after), a stage stuck past the deadline is named
and left alone, and a killed run's temporary file is removed by the next write beside it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from interrupts import make_inputs, plan, run_trial, table
from stream_util import H, W, coded_frame, tiny_checkpoint

from vbp_live.io.atomic import temp_beside
from vbp_live.io.frames import FrameRecord, FrameSource, VideoInfo
from vbp_live.stream import OverlayEngine, OverlayRenderer, Pipeline, PipelineConfig

N_RUNS = 20


@pytest.mark.slow
def test_random_sigint_and_sigterm_always_finish_the_outputs(tmp_path):
    inputs = make_inputs(tmp_path / "inputs")
    with ThreadPoolExecutor(3) as pool:
        trials = list(pool.map(lambda a: run_trial(a[0] + 1, *a[1], inputs, tmp_path / f"run{a[0] + 1}"),
                               enumerate(plan(N_RUNS, seed=15))))
    assert {t.sig for t in trials} == {"SIGINT", "SIGTERM"} and len(trials) >= 20
    assert all(t.ok for t in trials), table(trials) + "\n" + "\n".join(t.output for t in trials if not t.ok)
    assert sum(bool(t.frames) for t in trials) >= N_RUNS // 2  # most signals landed after frames were written


def test_a_killed_runs_temporary_file_is_removed_by_the_next_run(tmp_path):
    target = tmp_path / "out.mp4"
    code = f"from vbp_live.io.atomic import temp_beside; print(temp_beside({str(target)!r}, 'partial'))"
    dead = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert dead and (tmp_path / dead.rsplit("/", 1)[1]).exists()  # as if the process had been killed
    mine = temp_beside(target, "partial")
    assert [p.name for p in tmp_path.iterdir()] == [mine.name]  # the dead process's file is gone, not mine


class Blocking(FrameSource):
    """Yields a few frames, then blocks in a "decoder" that ignores the stop event until released."""

    def __init__(self, release: threading.Event):
        self.info = VideoInfo(name="<blocking>", width=W, height=H, fps=10.0, total=None)
        self.release = release

    def frames(self, stop=None):
        for i in range(3):
            yield FrameRecord(i, i / 10, coded_frame(i))
        self.release.wait(30)


@pytest.fixture(scope="module")
def engine(tmp_path_factory) -> OverlayEngine:
    return OverlayEngine.from_checkpoint(tiny_checkpoint(tmp_path_factory.mktemp("c") / "t.pt"), device="cpu")


def test_sigterm_in_process_sets_the_stop_event_and_restores_the_handlers(engine):
    before = signal.getsignal(signal.SIGTERM)
    release = threading.Event()
    pipe = Pipeline(Blocking(release), engine, OverlayRenderer(engine.crop, None), [], PipelineConfig(batch_size=1))
    timer = threading.Timer(0.5, lambda: (os.kill(os.getpid(), signal.SIGTERM), time.sleep(0.2), release.set()))
    timer.start()
    stats = pipe.run()  # on pytest's main thread: the pipeline's own handler takes the signal
    timer.join()
    assert (stats.end_reason, stats.signal, stats.stuck) == ("interrupted", "SIGTERM", [])
    assert not any(t.is_alive() for t in pipe.threads)
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_stage_stuck_past_the_deadline_is_named_and_left_alone(engine):
    release = threading.Event()
    cfg = PipelineConfig(batch_size=1, join_timeout_s=0.5)
    pipe = Pipeline(Blocking(release), engine, OverlayRenderer(engine.crop, None), [], cfg)
    threading.Timer(0.5, pipe.stop.set).start()
    stats = pipe.run()
    try:
        assert stats.stuck == ["vbp-reader"] and "did not stop" in stats.error
        assert pipe.threads[0].is_alive()  # still inside its "decoder": nothing it uses was released
    finally:
        release.set()
        pipe.threads[0].join(10)
