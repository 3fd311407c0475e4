"""The video writer: H.264 mp4 (yuv420p, even size, +faststart) by default, OpenCV fallbacks, atomic
finishing, and a real headless browser that plays the H.264 file."""

from __future__ import annotations

import functools
import http.server
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from vbp_live.io.sinks import FrameSink, SinkError, VideoFileSink
from vbp_live.io.video_writer import EncoderBase, h264_encoder, resolve_codec, write_video

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]

needs_h264 = pytest.mark.skipif(h264_encoder() is None, reason="PyAV has no H.264 encoder here")


def frames(n: int, w: int = 161, h: int = 121) -> list[np.ndarray]:
    """Moving-bar BGR frames with odd sizes (the writer must pad them to even)."""
    out = []
    for i in range(n):
        img = np.full((h, w, 3), 40, np.uint8)
        x = (i * 7) % (w - 10)
        img[:, x:x + 10] = (0, 0, 255)
        out.append(img)
    return out


def probe(path: Path) -> dict:
    """Codec facts of the first video stream, read by PyAV (FFmpeg)."""
    with av.open(str(path)) as f:
        s = f.streams.video[0]
        n = sum(1 for _ in f.decode(video=0))
        return {"codec": s.codec_context.name, "pix_fmt": s.codec_context.pix_fmt, "size": (s.width, s.height),
                "rate": float(s.average_rate), "decoded": n}


@needs_h264
def test_sink_writes_browser_ready_h264(tmp_path: Path) -> None:
    out = tmp_path / "o.mp4"
    with VideoFileSink(out, 16.678) as sink:
        for i, f in enumerate(frames(12)):
            sink.write(f, i)
    info = probe(out)
    assert info == {"codec": "h264", "pix_fmt": "yuv420p", "size": (162, 122), "rate": pytest.approx(16.678, abs=1e-3),
                    "decoded": 12}
    data = out.read_bytes()
    assert 0 <= data.find(b"moov") < data.find(b"mdat"), "+faststart: the index comes before the media data"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.mp4"], "no temporary file is left"


@pytest.mark.parametrize(("name", "codec", "used", "ffmpeg_name"),
                         [("o.avi", "auto", "mjpg", "mjpeg"), ("o.mp4", "mp4v", "mp4v", "mpeg4")])
def test_opencv_fallbacks(tmp_path: Path, name: str, codec: str, used: str, ffmpeg_name: str) -> None:
    out = tmp_path / name
    assert write_video(out, frames(5), 10.0, codec=codec) == (out, 5, used)
    info = probe(out)
    assert (info["codec"], info["decoded"], info["size"]) == (ffmpeg_name, 5, (162, 122))
    cap = cv2.VideoCapture(str(out))
    assert sum(1 for _ in iter(lambda: cap.read()[0], False)) == 5, "OpenCV reads it back too"
    cap.release()


def test_bad_codec_choices_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(SinkError, match="unknown codec 'xvid'"):
        VideoFileSink(tmp_path / "o.mp4", 10, codec="xvid")
    with pytest.raises(SinkError, match="not .avi"):
        VideoFileSink(tmp_path / "o.avi", 10, codec="h264")
    assert list(tmp_path.iterdir()) == []


def test_failed_write_leaves_no_file(tmp_path: Path) -> None:
    def broken() -> Iterator[np.ndarray]:
        yield from frames(3)
        raise RuntimeError("decoder died")

    with pytest.raises(RuntimeError, match="decoder died"):
        write_video(tmp_path / "o.mp4", broken(), 10.0)
    assert list(tmp_path.iterdir()) == []


def test_auto_is_h264_for_mp4_mjpg_for_avi() -> None:
    assert resolve_codec("a.avi") == "mjpg"
    assert resolve_codec("a.mp4") == ("h264" if h264_encoder() else "mp4v")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """An HTTP server on 127.0.0.1 serving ``tmp_path`` (URL base, folder)."""
    handler = functools.partial(_QuietHandler, directory=str(tmp_path))
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}", tmp_path
    finally:
        srv.shutdown()
        srv.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.slow
@needs_h264
@pytest.mark.skipif(not Path(CHROMIUM).is_file() or shutil.which("chromium") is None, reason="no Debian chromium")
def test_headless_browser_plays_the_h264_mp4(served: tuple[str, Path]) -> None:
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    base, folder = served
    write_video(folder / "overlay.mp4", frames(40, 320, 240), 20.0)
    (folder / "index.html").write_text('<video id="v" muted playsinline src="overlay.mp4"></video>')
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(f"{base}/index.html")
            can = page.evaluate("""document.createElement('video').canPlayType('video/mp4; codecs="avc1.64001f"')""")
            assert can in ("probably", "maybe"), f"this chromium cannot play H.264 (canPlayType: {can!r})"
            page.wait_for_function("(v => v.readyState >= 2 || v.error)(document.getElementById('v'))",
                                   timeout=20_000)
            state = page.evaluate("(v => [v.readyState, v.videoWidth, v.videoHeight, v.error && v.error.code])"
                                  "(document.getElementById('v'))")
            assert state[3] is None and state[0] >= 2 and state[1:3] == [320, 240], state
            page.evaluate("document.getElementById('v').play()")
            page.wait_for_function("document.getElementById('v').currentTime > 0.2", timeout=20_000)
        finally:
            browser.close()


@needs_h264
def test_explain_writes_its_figures_as_an_h264_video(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from stream_util import coded_frame, tiny_checkpoint

    from vbp_live.cli.main import main

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"f{i}.png"), coded_frame(i))
    video = tmp_path / "explain.mp4"
    assert main(["explain", str(folder), "--checkpoint", str(tiny_checkpoint(tmp_path / "t.pt")), "--frames", "3",
                 "--methods", "vbp", "--out", str(tmp_path / "o"), "--video", str(video), "--video-fps", "4"]) == 0
    first = cv2.imread(str(tmp_path / "o" / "f0_explain.png"))
    info = probe(video)
    assert (info["codec"], info["pix_fmt"], info["decoded"]) == ("h264", "yuv420p", 3)
    assert info["size"] == (first.shape[1] + first.shape[1] % 2, first.shape[0] + first.shape[0] % 2)
    assert f"wrote {video} (3 figures at 4 fps, h264)" in capsys.readouterr().out


def test_sink_and_encoder_bases_are_abstract():
    """A sink or encoder without ``write`` cannot be made (rather than failing on its first frame)."""
    class NoWrite(FrameSink):
        pass

    for base in (FrameSink, EncoderBase, NoWrite):
        with pytest.raises(TypeError, match="abstract"):
            base()
