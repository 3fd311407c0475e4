"""A real OpenCV window under Xvfb: red overlay pixels on screen where the mask is; q, space and s keys."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from stream_util import CROP, H, W, coded_frame, tiny_checkpoint

from vbp_live.core.hud import HudStyle
from vbp_live.core.overlay import MaskStyle
from vbp_live.io.sinks import WindowSink
from vbp_live.io.video import ArraySource
from vbp_live.stream import OverlayEngine, OverlayRenderer, Pipeline, PipelineConfig

TITLE = "vbp-live window test"
PAPER = MaskStyle(mode="paper")  # red in proportion to the mask: "none where it is empty" holds (the default
# look tints weak values too; tests/test_overlay_render.py covers it)
WAIT_S = 20.0  # hang guard


@pytest.fixture(scope="module")
def xvfb():
    """A private X server (Xvfb); skips with a reason where Xvfb or xwd is missing."""
    missing = [t for t in ("Xvfb", "xwd") if shutil.which(t) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} for a real window (apt-get install xvfb x11-apps)")
    display = next(n for n in range(90, 140)
                   if not Path(f"/tmp/.X11-unix/X{n}").exists() and not Path(f"/tmp/.X{n}-lock").exists())
    proc = subprocess.Popen(["Xvfb", f":{display}", "-screen", "0", "800x600x24", "-nolisten", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 10
    while not Path(f"/tmp/.X11-unix/X{display}").exists():
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            pytest.skip(f"Xvfb :{display} did not start")
        time.sleep(0.05)
    old = os.environ.get("DISPLAY")
    os.environ["DISPLAY"] = f":{display}"
    yield f":{display}"
    if old is None:
        os.environ.pop("DISPLAY", None)
    else:
        os.environ["DISPLAY"] = old
    proc.terminate()
    proc.wait(5)


def screenshot(display: str) -> np.ndarray:
    """The whole X screen as a BGR image, via ``xwd -root`` (ZPixmap, LSB first, 24 or 32 bits per pixel)."""
    raw = subprocess.run(["xwd", "-root", "-silent", "-display", display], capture_output=True, check=True).stdout
    head = struct.unpack(">25I", raw[:100])
    header_size, width, height, bits, bpl, ncolors = head[0], head[4], head[5], head[11], head[12], head[19]
    assert head[2] == 2 and head[7] == 0 and bits in (24, 32), f"unexpected xwd format {head[:12]}"
    px = np.frombuffer(raw, np.uint8, bpl * height, header_size + 12 * ncolors).reshape(height, bpl)
    n = bits // 8
    return px[:, : width * n].reshape(height, width, n)[:, :, :3].copy()  # B, G, R (, pad)


def xdo(display: str, *args: str) -> str:
    env = {**os.environ, "DISPLAY": display}
    return subprocess.run(["xdotool", *args], capture_output=True, text=True, env=env, timeout=10).stdout.strip()


def wait_for(cond, what: str) -> None:
    deadline = time.time() + WAIT_S
    while not cond():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_window_shows_red_overlay_where_the_mask_is_and_obeys_keys(xvfb, tmp_path):
    engine = OverlayEngine.from_checkpoint(tiny_checkpoint(tmp_path / "t.pt"), device="cpu")
    frame = coded_frame(3)
    renderer = OverlayRenderer(engine.crop, HudStyle(), mask_style=PAPER)
    window = WindowSink(TITLE, snapshot_dir=tmp_path)
    source = ArraySource(((frame, 0.05) for _ in range(100_000)), fps=20, name="still")
    pipe = Pipeline(source, engine, renderer, [window], PipelineConfig(batch_size=2, queue_size=2, realtime=True))
    result: dict = {}
    runner = threading.Thread(target=lambda: result.update(stats=pipe.run()), daemon=True)
    runner.start()
    try:
        wait_for(lambda: pipe.stats.frames_out >= 8, "frames on screen")
        band = expected_band(frame, engine)
        # frames handed to the window are not yet painted: poll the screen until the band shows up
        wait_for(lambda: band_location(screenshot(xvfb), band)[0] < 0.01, "the overlay band on screen")
        check_red_where_mask(screenshot(xvfb), frame, engine)
        if shutil.which("xdotool"):
            press_keys(xvfb, pipe, window)
        else:  # the keys need xdotool (apt-get install xdotool); quit the way q would
            window.quit_requested = True
        runner.join(WAIT_S)
    finally:
        pipe.stop.set()
        runner.join(WAIT_S)
    assert not runner.is_alive()
    assert result["stats"].end_reason == "quit" and result["stats"].error is None


def press_keys(display: str, pipe: Pipeline, window: WindowSink) -> None:
    """Real key presses into the window: s saves a snapshot, space pauses and resumes, q quits."""
    win = xdo(display, "search", "--sync", "--name", TITLE).splitlines()[0]
    xdo(display, "windowfocus", "--sync", win)
    xdo(display, "key", "s")
    wait_for(lambda: window.snapshots, "the snapshot")
    snap = cv2.imread(str(window.snapshots[0]))
    assert snap.shape == (H, W, 3) and window.snapshots[0].name.startswith("vbp_snapshot_")
    xdo(display, "key", "space")
    wait_for(lambda: window.paused, "the pause")
    n, written = window.shown, pipe.stats.frames_out
    time.sleep(1.0)
    assert window.shown == n, "space must pause the display"
    assert pipe.stats.frames_out <= written + 4, "a paused window holds up a file source (bounded queues)"
    xdo(display, "key", "space")
    wait_for(lambda: window.shown > n + 3, "resume after the second space")
    xdo(display, "key", "q")


def expected_band(frame: np.ndarray, engine: OverlayEngine) -> np.ndarray:
    """The crop band of the expected render (below the HUD: identical in every displayed frame)."""
    pred = engine.infer([frame])[0]
    y0, y1, _, _ = CROP.box(H, W)
    record = type("R", (), {"image": frame, "cropped": False})()
    expected = OverlayRenderer(engine.crop, None, mask_style=PAPER).overlay(record, pred.mask)
    return np.ascontiguousarray(expected[y0:y1])


def band_location(shot: np.ndarray, band: np.ndarray) -> tuple[float, tuple[int, int]]:
    """Best normalized squared difference of ``band`` on the screen shot, and where (x, y)."""
    score, _, loc, _ = cv2.minMaxLoc(cv2.matchTemplate(shot, band, cv2.TM_SQDIFF_NORMED))
    return score, loc


def check_red_where_mask(shot: np.ndarray, frame: np.ndarray, engine: OverlayEngine) -> None:
    """Find the crop band of the expected render on screen; red exactly where the mask is strong."""
    from vbp_live.core.preprocess import mask_to_frame

    pred = engine.infer([frame])[0]
    y0, y1, x0, x1 = CROP.box(H, W)
    score, (bx, by) = band_location(shot, expected_band(frame, engine))
    assert score < 0.01, f"the overlay band is not on screen (best match {score:.3f})"
    on_screen = shot[by:by + (y1 - y0), bx:bx + W].astype(int)
    mask = mask_to_frame(pred.mask, CROP, frame.shape)[y0:y1]
    redness = on_screen[..., 2] - on_screen[..., :2].max(axis=2)
    assert (mask > 0.5).sum() > 50
    assert (redness[mask > 0.5] > 60).mean() > 0.9, "strong-mask pixels must be red on screen"
    assert (redness[mask < 0.02] > 60).mean() < 0.05, "no red where the mask is empty"
    above = shot[by - y0 + 60:by, bx:bx + W].astype(int)  # the upper frame under the HUD rows: no overlay
    assert ((above[..., 2] - above[..., :2].max(axis=2)) > 60).mean() < 0.01
