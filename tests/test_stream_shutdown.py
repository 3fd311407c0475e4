"""Shutdown: a failing stage, Ctrl-C, crashes; finalized playable outputs; flat memory over 1 000 frames."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from stream_util import coded_frame, decode_index, read_video, tiny_checkpoint, write_video

from vbp_live.core.preprocess import CropSpec
from vbp_live.io.frames import FrameSource
from vbp_live.io.sinks import FrameSink, NullSink, VideoFileSink
from vbp_live.io.video import ArraySource
from vbp_live.models import ConvNet
from vbp_live.stream import OverlayEngine, OverlayRenderer, Pipeline, PipelineConfig

DEADLINE_S = 30.0  # a hang guard, not a speed check


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("c") / "t.pt")


@pytest.fixture(scope="module")
def engine(ckpt) -> OverlayEngine:
    return OverlayEngine.from_checkpoint(ckpt, device="cpu")


class Boom(RuntimeError):
    pass


class FailingSource(FrameSource):
    def __init__(self, n_ok: int):
        self.inner = ArraySource(((coded_frame(i), None) for i in range(1000)), fps=10)
        self.info, self.n_ok = self.inner.info, n_ok

    def frames(self, stop=None):
        for rec in self.inner.frames(stop):
            if rec.index == self.n_ok:
                raise Boom("camera fell off")
            yield rec


class FailingEngine(OverlayEngine):
    def __init__(self, base: OverlayEngine, fail_at_call: int):
        self.__dict__.update(base.__dict__)
        self.calls, self.fail_at_call = 0, fail_at_call

    def infer(self, images, cropped=None):
        self.calls += 1
        if self.calls == self.fail_at_call:
            raise Boom("out of memory (pretend)")
        return super().infer(images, cropped)


class FailingSink(FrameSink):
    def __init__(self, fail_at: int):
        self.n, self.fail_at, self.aborted = 0, fail_at, False

    def write(self, frame, index, time_s=None):
        self.n += 1
        if self.n == self.fail_at:
            raise Boom("disk full (pretend)")

    def abort(self):
        self.aborted = True


def run_with_deadline(pipe: Pipeline):
    result = {}
    t = threading.Thread(target=lambda: result.update(stats=pipe.run()), daemon=True)
    t.start()
    t.join(DEADLINE_S)
    assert not t.is_alive(), "the pipeline hung after a stage failed"
    return result["stats"]


@pytest.mark.parametrize("stage", ["reader", "model", "writer"])
def test_a_failing_stage_stops_everything_and_the_video_is_still_finalized(tmp_path, engine, stage):
    out = tmp_path / "out.mp4"
    frames = ((coded_frame(i), None) for i in range(400))
    source = FailingSource(12) if stage == "reader" else ArraySource(frames, fps=10)
    eng = FailingEngine(engine, fail_at_call=4) if stage == "model" else engine
    video = VideoFileSink(out, 10)
    bad = FailingSink(fail_at=9) if stage == "writer" else NullSink()
    config = PipelineConfig(batch_size=3, queue_size=4)
    pipe = Pipeline(source, eng, OverlayRenderer(engine.crop, None), [video, bad], config)
    stats = run_with_deadline(pipe)
    assert stats.end_reason == f"error in {stage}"
    assert "Boom" in stats.error and stage in stats.error
    assert not any(t.is_alive() for t in pipe.threads)
    frames, fps = read_video(out)  # finalized and playable: what was processed before the failure
    assert 0 < len(frames) == video.frames and fps == pytest.approx(10)
    assert [decode_index(f) for f in frames] == list(range(len(frames)))
    if stage == "writer":
        assert bad.aborted


def test_killed_writer_never_leaves_a_finished_looking_file(tmp_path):
    sink = VideoFileSink(tmp_path / "out.mp4", 10)
    for i in range(3):
        sink.write(coded_frame(i), i)
    # a crash now (no close): only the hidden partial file exists, never out.mp4
    assert not (tmp_path / "out.mp4").exists()
    assert [p.name.startswith(".out.partial-") for p in tmp_path.iterdir()] == [True]
    sink.close()
    assert (tmp_path / "out.mp4").exists() and len(list(tmp_path.iterdir())) == 1


def test_ctrl_c_finalizes_a_playable_file_and_exits_130(tmp_path, ckpt):
    src = write_video(tmp_path / "in.mp4", 300, fps=15)
    out = tmp_path / "out.mp4"
    cmd = [sys.executable, "-m", "vbp_live.cli.main", "run", str(src), "-c", str(ckpt), "--out", str(out),
           "--realtime", "--quiet", "--threads", "1", "--stats-json", str(tmp_path / "s.json"),
           "--codec", "mp4v"]  # mp4v grows as it goes (H.264's muxer writes ~256 KB at a time): the probe below
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + DEADLINE_S
    while time.time() < deadline and not any(p.stat().st_size > 20_000 for p in tmp_path.glob(".out.partial-*")):
        time.sleep(0.05)  # wait until frames are being written (paced at 15 fps)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=DEADLINE_S)
    assert proc.returncode == 130, stderr
    assert "interrupted" in stdout + stderr
    frames, fps = read_video(out)
    assert 0 < len(frames) < 300 and fps == pytest.approx(15)
    assert [decode_index(f) for f in frames] == list(range(len(frames)))
    assert not list(tmp_path.glob(".out.partial-*"))


def rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class RssProbe(FrameSink):
    def __init__(self):
        self.samples: dict[int, float] = {}

    def write(self, frame, index, time_s=None):
        if index in (200, 999):
            gc.collect()
            self.samples[index] = rss_mb()


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs /proc to read the resident memory")
def test_memory_stays_flat_over_1000_frames():
    torch_net = ConvNet((1, 16, 32), (4, 4), (1,)).eval()
    crop = CropSpec(top=0.5, bottom=1.0, out_height=16, out_width=32)
    engine = OverlayEngine(torch_net, crop, "cpu")
    rng = np.random.default_rng(0)
    # 96x96 frames: keeping them alive would add 800 x 27 KB = 22 MB between the two probes
    frames = ((rng.integers(0, 255, (96, 96, 3), np.uint8), 0.1) for _ in range(1000))
    probe = RssProbe()
    cfg = PipelineConfig(batch_size=8, queue_size=8)
    stats = Pipeline(ArraySource(frames, fps=30), engine, OverlayRenderer(crop), [probe], cfg).run()
    assert stats.frames_out == 1000
    growth = probe.samples[999] - probe.samples[200]
    print(f"RSS at frame 200: {probe.samples[200]:.1f} MB, at 999: {probe.samples[999]:.1f} MB")
    assert growth < 8.0, f"resident memory grew {growth:.1f} MB between frame 200 and 999"
