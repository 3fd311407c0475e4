"""Live sources: a real MJPEG stream over loopback HTTP, corrupt parts, reconnects, stale-frame dropping."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from stream_util import MjpegServer, coded_frame, decode_index, jpeg, read_video, tiny_checkpoint

from vbp_live.io.live import LiveSource, ReconnectPolicy, is_live_spec
from vbp_live.io.sinks import FrameSink, VideoFileSink
from vbp_live.stream import OverlayEngine, OverlayRenderer, Pipeline, PipelineConfig
from vbp_live.stream.records import PredictionLog

FAST = ReconnectPolicy(first_delay_s=0.05, max_delay_s=0.2, give_up_s=1.0, timeout_ms=2000)


@pytest.fixture(scope="module")
def engine(tmp_path_factory) -> OverlayEngine:
    return OverlayEngine.from_checkpoint(tiny_checkpoint(tmp_path_factory.mktemp("c") / "t.pt"), device="cpu")


class Collect(FrameSink):
    """Keeps the index coded in every output frame; optionally slow (a slow display)."""

    def __init__(self, delay_s: float = 0.0):
        self.delay_s, self.indices = delay_s, []

    def write(self, frame: np.ndarray, index: int, time_s: float | None = None) -> None:
        self.indices.append(decode_index(frame))
        time.sleep(self.delay_s)


def broken(data: bytes) -> bytes:
    """A part cut after its first 40 bytes (JPEG headers, no image data): it cannot decode.

    (FFmpeg conceals milder damage, e.g. a JPEG cut in half still yields a frame.)
    """
    return data[:40]


def parts(n: int, start: int = 0, corrupt: tuple[int, ...] = ()) -> list[bytes]:
    out = []
    for i in range(start, start + n):
        data = jpeg(coded_frame(i))
        out.append(broken(data) if i in corrupt else data)
    return out


def run_live(url: str, engine: OverlayEngine, *sinks: FrameSink):
    log = PredictionLog()
    pipe = Pipeline(LiveSource(url, policy=FAST), engine, OverlayRenderer(engine.crop, None), sinks, PipelineConfig(),
                    log=log)
    return pipe.run(), log, pipe


def test_live_specs_are_recognized():
    assert all(map(is_live_spec, ["0", "http://h:8080/v.mjpg", "rtsp://cam/1", "videotestsrc ! appsink"]))
    assert not any(map(is_live_spec, ["drive.mp4", "frames/", "data/x.bag"]))


def test_mjpeg_stream_skips_a_corrupt_part_and_ends_when_the_camera_never_returns(engine):
    with MjpegServer([lambda: parts(30, corrupt=(12,))], fps=30) as server:
        sink = Collect()
        stats, log, pipe = run_live(server.url, engine, sink)
    assert stats.end_reason == "source lost"
    assert "not back after" in stats.error and server.url in stats.error
    assert stats.corrupt == 1
    # every good part is read (the reader never drops); how many are shown depends on the machine's load
    assert stats.frames_in == 29 and 12 not in sink.indices
    assert max(sink.indices) > 12  # the stream goes on after the corrupt part
    assert sink.indices == sorted(sink.indices)  # newest-first dropping never reorders
    assert stats.frames_in == stats.frames_out + stats.dropped
    assert not any(t.is_alive() for t in pipe.threads)


def test_stream_that_drops_is_reconnected(engine):
    plans = [lambda: parts(15), lambda: parts(15, start=100)]
    with MjpegServer(plans, fps=30) as server:
        sink = Collect()
        stats, _, _ = run_live(server.url, engine, sink)
    assert stats.reconnects == 1 and server.connections >= 2
    assert any(i < 15 for i in sink.indices) and any(i >= 100 for i in sink.indices)
    assert stats.end_reason == "source lost"


def test_slow_consumer_drops_stale_frames_and_keeps_the_newest(engine, tmp_path):
    video = VideoFileSink(tmp_path / "live.mp4", fps=30, hold_time=True)
    with MjpegServer([lambda: parts(60)], fps=60) as server:
        sink = Collect(delay_s=0.1)  # a display that manages 10 frames/s
        stats, log, _ = run_live(server.url, engine, video, sink)
    assert stats.dropped > 20
    assert stats.frames_in == stats.frames_out + stats.dropped
    assert sink.indices == sorted(set(sink.indices))
    assert sink.indices[-1] >= 55  # the last frames shown are the newest ones, not a backlog
    # the recording keeps real time: shown frames are held until the next one, at 30 fps
    frames, fps = read_video(tmp_path / "live.mp4")
    span = log.rows[-1][1] - log.rows[0][1]
    assert fps == 30 and abs(len(frames) - (round(span * 30) + 1)) <= 1 and len(frames) > stats.frames_out
    coded = [decode_index(f) for f in frames]
    assert coded == sorted(coded) and set(coded) == set(sink.indices)


def test_gstreamer_pipeline_without_gstreamer_support_is_a_clear_error():
    import re

    import cv2

    from vbp_live.io.frames import SourceError
    from vbp_live.io.sources import open_source

    if re.search(r"GStreamer:\s+YES", cv2.getBuildInformation()):
        pytest.skip("this OpenCV has GStreamer")
    with pytest.raises(SourceError, match="no GStreamer support"):
        open_source("videotestsrc ! videoconvert ! appsink")


def test_unreachable_stream_is_a_clear_error():
    from vbp_live.io.frames import SourceError

    with pytest.raises(SourceError, match="cannot open"):
        LiveSource("http://127.0.0.1:9/none.mjpg", policy=FAST)


def test_stop_event_interrupts_reconnect_backoff():
    with MjpegServer([lambda: parts(5)], fps=30) as server:
        src = LiveSource(server.url, policy=ReconnectPolicy(first_delay_s=5, give_up_s=60, timeout_ms=2000))
        stop = threading.Event()
        got = []
        t = threading.Thread(target=lambda: got.extend(r.index for r in src.frames(stop)))
        t.start()
        time.sleep(1.0)  # the stream ended; the source now waits 5 s before reconnecting
        stop.set()
        t.join(3.0)
        assert not t.is_alive() and len(got) == 5
