"""File sources through the real pipeline: every frame, in order, at the source's fps; corrupt frames skipped."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from stream_util import CROP, H, W, coded_frame, decode_index, read_video, tiny_checkpoint, write_video

from vbp_live.core.overlay import MaskStyle
from vbp_live.io.dataset import DatasetWriter
from vbp_live.io.frames import SourceError
from vbp_live.io.sinks import FramesDirSink, VideoFileSink
from vbp_live.io.sources import open_source
from vbp_live.io.video import ImageFolderSource, VideoFileSource
from vbp_live.stream import OverlayEngine, OverlayRenderer, Pipeline, PipelineConfig
from vbp_live.stream.records import PredictionLog

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def engine(tmp_path_factory) -> OverlayEngine:
    ckpt = tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt")
    return OverlayEngine.from_checkpoint(ckpt, device="cpu")


def run(source, engine, sinks, hud=False, renderer=None, **cfg):
    from vbp_live.core.hud import HudStyle

    renderer = renderer or OverlayRenderer(engine.crop, HudStyle() if hud else None)
    log = PredictionLog()
    stats = Pipeline(source, engine, renderer, sinks, PipelineConfig(**cfg), log=log).run()
    return stats, log


def test_video_file_keeps_every_frame_in_order_at_source_fps(tmp_path, engine):
    src_path = write_video(tmp_path / "in.mp4", 45, fps=15.0)
    out = tmp_path / "out.mp4"
    source = VideoFileSource(src_path)
    # a tiny queue and uneven batches force back-pressure between the three threads
    stats, log = run(source, engine, [VideoFileSink(out, source.info.fps)], batch_size=4, queue_size=2)
    assert stats.end_reason == "end of stream" and stats.error is None
    assert (stats.frames_in, stats.frames_out, stats.dropped, stats.corrupt) == (45, 45, 0, 0)
    assert stats.batches < 45  # frames really were batched
    frames, fps = read_video(out)
    assert fps == pytest.approx(15.0)
    assert [decode_index(f) for f in frames] == list(range(45))
    assert [r[0] for r in log.rows] == list(range(45))
    assert not list(tmp_path.glob(".out.partial-*")), "the temporary file must be renamed away"


def test_overlay_is_red_inside_the_crop_band_only(tmp_path, engine):
    src_path = write_video(tmp_path / "in.mp4", 6)
    out_dir = tmp_path / "frames"
    paper = OverlayRenderer(engine.crop, None, mask_style=MaskStyle(mode="paper"), outline=False)  # the formula below
    stats, _ = run(VideoFileSource(src_path), engine, [FramesDirSink(out_dir)], renderer=paper)
    assert stats.frames_out == 6
    shot = cv2.imread(str(out_dir / "000003.png"))
    src = VideoFileSource(src_path)
    orig = [r.image for r in src.frames()][3]
    pred = engine.infer([orig])[0]
    y0, y1, x0, x1 = CROP.box(H, W)
    np.testing.assert_array_equal(shot[:y0], orig[:y0])  # above the band: untouched
    # the mask, resized back through the crop onto the frame, blended towards pure red (BGR 0,0,255)
    m = cv2.resize(pred.mask, (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)[..., None] * 0.7
    want = np.clip(orig[y0:y1] * (1 - m) + np.array([0, 0, 255]) * m + 0.5, 0, 255)
    assert np.abs(shot[y0:y1].astype(float) - want).max() <= 1.0
    redness = shot[y0:y1, :, 2].astype(int) - shot[y0:y1, :, :2].max(axis=2)
    assert (redness[m[..., 0] > 0.5] > 60).mean() > 0.9  # red where the mask is strong
    assert (redness[m[..., 0] < 0.05] > 60).mean() < 0.05


def test_image_folder_skips_and_counts_a_corrupt_jpeg(tmp_path, engine):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(10):
        cv2.imwrite(str(folder / f"f{i}.jpg"), coded_frame(i))
    good = (folder / "f4.jpg").read_bytes()
    (folder / "f4.jpg").write_bytes(good[:200] + b"\x00" * 300)  # a cut, zero-filled JPEG
    out_dir = tmp_path / "frames"
    source = open_source(str(folder), fps=10)
    assert isinstance(source, ImageFolderSource) and source.info.fps == 10
    stats, log = run(source, engine, [FramesDirSink(out_dir)], batch_size=3)
    assert (stats.frames_in, stats.frames_out, stats.corrupt) == (9, 9, 1)
    assert [r[0] for r in log.rows] == [0, 1, 2, 3, 5, 6, 7, 8, 9]
    assert sorted(p.name for p in out_dir.iterdir()) == [f"{i:06d}.png" for i in (0, 1, 2, 3, 5, 6, 7, 8, 9)]
    assert [decode_index(cv2.imread(str(out_dir / f"{i:06d}.png"))) for i in (3, 5)] == [3, 5]


def test_corrupt_frame_mid_video_is_skipped_and_counted(tmp_path, engine):
    path = write_video(tmp_path / "in.avi", 20, fourcc="MJPG")
    data = bytearray(path.read_bytes())
    starts = [i for i in range(len(data) - 1) if data[i] == 0xFF and data[i + 1] == 0xD8]
    s = starts[8]
    data[s + 200:s + 1200] = b"\x00" * 1000  # destroy frame 8's entropy data
    path.write_bytes(bytes(data))
    stats, log = run(VideoFileSource(path), engine, [], batch_size=4)
    assert stats.corrupt == 1 and stats.frames_out == 19
    assert [r[0] for r in log.rows] == [i for i in range(20) if i != 8]


def test_prepared_dataset_overlays_on_the_crop_with_truth(tmp_path, engine):
    w = DatasetWriter(tmp_path / "ds", (125, 160), CROP)
    truth = [0.05 * i - 0.2 for i in range(8)]
    for i, t in enumerate(truth):
        frame = cv2.cvtColor(cv2.resize(coded_frame(i)[H // 2:], (160, 125)), cv2.COLOR_BGR2GRAY)
        w.append(frame, timestamp_ns=1_000_000_000 + i * 50_000_000, steering_rad=t, speed_mps=10.0, source="t")
    w.finalize(["test"] * 8)
    out = tmp_path / "out.mp4"
    source = open_source(str(tmp_path / "ds"))
    assert source.info.fps == pytest.approx(20.0)
    assert open_source(str(tmp_path / "ds"), fps=8.0).info.fps == 8.0  # --fps overrides the stamps' rate
    stats, log = run(source, engine, [VideoFileSink(out, source.info.fps)], hud=True)
    assert stats.frames_out == 8
    frames, fps = read_video(out)
    assert frames[0].shape == (126, 160, 3) and fps == pytest.approx(20.0)  # the crop (padded to even rows)
    for (_, _, pred, true, err), t in zip(log.rows, truth, strict=True):
        assert true == pytest.approx(math.degrees(t), abs=1e-3)
        assert err == pytest.approx(true - pred)  # error = actual - predicted


def test_missing_and_unreadable_sources_name_the_file(tmp_path):
    with pytest.raises(SourceError, match="no such file"):
        open_source(str(tmp_path / "nope.mp4"))
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all")
    with pytest.raises(SourceError, match="bad.mp4"):
        open_source(str(bad))
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="no images"):
        open_source(str(tmp_path / "empty"))


@pytest.mark.parametrize("kind", ["truncated video", "missing camera"])
def test_opening_errors_are_our_one_line_only(tmp_path, kind):
    """OpenCV's and FFmpeg's own lines ("moov atom not found", cap_v4l warnings) do not precede ours."""
    if kind == "truncated video":
        data = write_video(tmp_path / "whole.mp4", 10).read_bytes()
        (tmp_path / "broken.mp4").write_bytes(data[: len(data) // 2])  # mp4v puts its moov atom at the end
        source = "broken.mp4"
    else:
        source = "9"  # a camera index with no camera behind it
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    env.pop("OPENCV_FFMPEG_LOGLEVEL", None)
    env.pop("OPENCV_LOG_LEVEL", None)
    r = subprocess.run([sys.executable, "-m", "vbp_live.cli.main", "run", source, "--no-output", "-q"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 1
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"vbp-live run: error: {source}: "), r.stderr


def test_a_dataset_prepared_with_another_crop_runs_with_a_warning(tmp_path, engine, caplog):
    """Same network input size, another band of the frame: the run warns and goes on (it once crashed)."""
    from vbp_live.core.preprocess import CropSpec
    from vbp_live.stream.session import RunOptions, run_source

    other = CropSpec(top=0.4, bottom=0.9, out_height=CROP.out_height, out_width=CROP.out_width)
    w = DatasetWriter(tmp_path / "ds", (125, 160), other)
    for i in range(4):
        frame = cv2.cvtColor(cv2.resize(coded_frame(i)[H // 2:], (160, 125)), cv2.COLOR_BGR2GRAY)
        w.append(frame, timestamp_ns=1_000_000_000 + i * 50_000_000, steering_rad=0.0, speed_mps=10.0, source="t")
    w.finalize(["test"] * 4)
    source = open_source(str(tmp_path / "ds"))
    with caplog.at_level("WARNING", logger="vbp_live.stream.session"):
        result = run_source(source, engine, RunOptions(), [VideoFileSink(tmp_path / "o.mp4", 20.0)], progress=False)
    assert result.stats.frames_out == 4
    assert any("was prepared with crop" in r.getMessage() for r in caplog.records)


def test_a_dataset_cut_from_the_same_band_runs_without_a_warning(tmp_path, engine, caplog):
    """Crops that differ only in their reference horizon cut the same band: no warning."""
    from dataclasses import replace

    from vbp_live.stream.session import RunOptions, run_source

    assert engine.crop.horizon is None
    w = DatasetWriter(tmp_path / "ds", (CROP.out_height, CROP.out_width), replace(engine.crop, horizon=0.47))
    for i in range(4):
        w.append(np.full((CROP.out_height, CROP.out_width), 60 + 20 * i, np.uint8),
                 timestamp_ns=1_000_000_000 + i * 50_000_000, steering_rad=0.0, speed_mps=10.0, source="t")
    w.finalize(["test"] * 4)
    with caplog.at_level("WARNING", logger="vbp_live.stream.session"):
        result = run_source(open_source(str(tmp_path / "ds")), engine, RunOptions(),
                            [VideoFileSink(tmp_path / "o.mp4", 20.0)], progress=False)
    assert result.stats.frames_out == 4
    assert not any("was prepared with crop" in r.getMessage() for r in caplog.records)


def test_a_truncated_file_says_how_many_declared_frames_are_missing(tmp_path, engine):
    full = write_video(tmp_path / "full.avi", 300, fps=15.0, fourcc="MJPG")
    cut = tmp_path / "cut.avi"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 30])  # the header still declares 300 frames
    source = VideoFileSource(cut)
    assert source.info.total == 300
    stats, log = run(source, engine, [])
    assert 0 < stats.frames_out == len(log.rows) < 300
    assert (stats.declared, stats.missing, stats.corrupt) == (300, 300 - stats.frames_in, 0)
    assert stats.end_reason == f"end of stream ({stats.missing} of 300 declared frames missing: the file ends early)"
    assert f"{stats.missing} missing" in stats.summary() and stats.to_dict()["missing"] == stats.missing
