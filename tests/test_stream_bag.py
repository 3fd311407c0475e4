"""Udacity bag playback (vbp_live.recordings' bag reader + core sync): ground truth, error text, corrupt images."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from stream_util import tiny_checkpoint

from vbp_live.core.hud import HudInfo, HudStyle, angle_text, hud_lines
from vbp_live.io.frames import SourceError
from vbp_live.io.sinks import FrameSink
from vbp_live.io.sources import open_source
from vbp_live.io.udacity_bag import SteeringSamples, write_udacity_bag
from vbp_live.stream import OverlayEngine, OverlayRenderer, Pipeline, PipelineConfig
from vbp_live.stream.records import PredictionLog
from vbp_live.synth import DriveConfig, render_frames, simulate_drive


class Keep(FrameSink):
    def __init__(self):
        self.frames = {}

    def write(self, frame, index, time_s=None):
        self.frames[index] = frame


@pytest.fixture(scope="module")
def drive():
    return simulate_drive(DriveConfig(seed=2, frames=16, start_stopped=False))


@pytest.fixture(scope="module")
def bag(drive, tmp_path_factory):
    """A Udacity-layout bag of the drive; frame 6 is recorded as broken JPEG bytes."""
    path = tmp_path_factory.mktemp("bag") / "drive.bag"
    images = ((int(t), b"\xff\xd8\xff\xe0broken" if k == 6 else img)
              for k, ((img, _), t) in enumerate(zip(render_frames(drive), drive.frame_times_ns, strict=True)))
    steering = SteeringSamples(drive.steer_times_ns, drive.steer_angle, drive.steer_speed)
    write_udacity_bag(path, images, steering)
    return path


def test_bag_playback_shows_truth_and_error(bag, drive, tmp_path):
    engine = OverlayEngine.from_checkpoint(tiny_checkpoint(tmp_path / "t.pt"), device="cpu")
    source = open_source(str(bag))
    assert source.info.fps == pytest.approx(20.0, rel=0.05) and (source.info.width, source.info.height) == (640, 480)
    assert open_source(str(bag), fps=7.5).info.fps == 7.5  # --fps overrides the camera stamps' rate
    renderer, keep, log = OverlayRenderer(engine.crop, HudStyle()), Keep(), PredictionLog()
    stats = Pipeline(source, engine, renderer, [keep], PipelineConfig(batch_size=4), log=log).run()
    assert stats.error is None and stats.corrupt == 1 and stats.frames_out == 15
    assert 6 not in keep.frames
    with_truth = [r for r in log.rows if r[3] is not None]
    assert len(with_truth) >= 13  # only frames outside the steering reports' time span lack truth
    for i, _, pred, true, err in with_truth:
        assert true == pytest.approx(math.degrees(drive.steering[i]), abs=0.05)  # interpolated 50 Hz reports
        assert err == pytest.approx(true - pred)
    # what the HUD draws for such a frame: the pipeline's frame equals a render of the same record
    # with its truth, and differs from one without truth where the "true" and "error" lines are
    i, t_s, _, true_deg, err_deg = with_truth[0]
    rec = next(r for r in open_source(str(bag)).frames() if r.index == i)
    pred = engine.infer([rec.image])[0]
    shown = keep.frames[i]
    fresh = OverlayRenderer(engine.crop, HudStyle(glyph=False))
    with_t, without_t = fresh.render(rec, pred, fps=None), fresh.render(replace(rec, truth_rad=None), pred, fps=None)
    rows = np.flatnonzero((with_t != without_t).any(axis=(1, 2)))
    assert rows.size and rows.max() < 0.25 * shown.shape[0]  # the text panel at the top
    assert (shown[rows.min():rows.max() + 1, :150] == with_t[rows.min():rows.max() + 1, :150]).mean() > 0.98
    lines = [t for t, _ in hud_lines(HudInfo(i, t_s, pred.steering_rad, rec.truth_rad), HudStyle())]
    assert lines[2] == f"error {angle_text(err_deg)}" and lines[1] == f"true  {angle_text(true_deg)}"


# ---------------------------------------------------------------- bags of other cars and robots

def test_real_bags_without_udacity_topics_or_steering_play_with_camera_topic(shared_data, tmp_path):
    """ctu-vras/qoi_image_transport's real bags: a Spot robot's camera, as raw rgb8 and as QOI, no steering."""
    bags = shared_data / "rosbag1"
    with pytest.raises(SourceError, match=r"qoi_raw.bag: no camera frames.*--camera-topic.*/spot/camera/hand_color"):
        open_source(str(bags / "qoi_raw.bag"))  # names the flag and the topics that are there
    frames = []
    for name, topic in (("qoi_raw.bag", "/spot/camera/hand_color/image"),
                        ("qoi_compressed.bag", "/spot/camera/hand_color/image/qoi")):
        source = open_source(str(bags / name), camera_topics=["/nope", topic])  # the first topic with messages
        assert (source.info.width, source.info.height, source.info.total) == (640, 480, 1)
        assert any("no steering reports" in w for w in source.warnings)
        (rec,) = list(source.frames())
        assert rec.truth_rad is None or math.isnan(rec.truth_rad)  # no truth, nothing made up
        frames.append(rec.image)
    np.testing.assert_array_equal(frames[0], frames[1])  # the same picture, raw and QOI


def test_camera_topic_is_refused_for_sources_that_are_not_bags(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    with pytest.raises(SourceError, match="--camera-topic applies to ROS1 bags only"):
        open_source(str(folder), camera_topics=["/cam"])
