"""``vbp-live run --serve``: the live view in a real headless Chromium, a stalled viewer, the token.

The browser tests run the real CLI in a subprocess and a real Chromium (Playwright with Debian's
``/usr/bin/chromium``); they skip with a reason where either is missing.
"""

from __future__ import annotations

import base64
import csv
import json
import queue
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest
from stream_util import CROP, decode_index, read_video, tiny_checkpoint, write_video

from vbp_live.core.errors import UsageError
from vbp_live.core.preprocess import mask_to_frame
from vbp_live.stream.engine import OverlayEngine
from vbp_live.stream.serve import Bind, LiveServer, parse_bind, serve_token

CHROMIUM = Path("/usr/bin/chromium")
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run"]
TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("c") / "t.pt")


class CliRun:
    """The CLI in a subprocess; its stdout is drained by a thread (``lines``); ``url`` once it serves."""

    def __init__(self, args: list[str], cwd: Path):
        self.proc = subprocess.Popen([sys.executable, "-m", "vbp_live.cli.main", *args], cwd=cwd, text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.lines: queue.Queue[str] = queue.Queue()
        self.all: list[str] = []
        threading.Thread(target=self._drain, daemon=True).start()
        self.url = self._wait_for("live view: ").split("live view: ", 1)[1].strip()

    def _drain(self) -> None:
        for line in self.proc.stdout:
            self.all.append(line)
            self.lines.put(line)
        self.lines.put("")

    def _wait_for(self, text: str, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.lines.get(timeout=deadline - time.monotonic())
            if text in line:
                return line
            assert line, f"the run ended before printing {text!r}:\n{''.join(self.all)}"
        raise AssertionError(f"no {text!r} within {timeout} s:\n{''.join(self.all)}")

    def finish(self, timeout: float = 60.0) -> int:
        rc = self.proc.wait(timeout)
        time.sleep(0.1)
        return rc

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def _browser(p):
    if not CHROMIUM.is_file():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt install chromium)")
    return p.chromium.launch(executable_path=str(CHROMIUM), args=BROWSER_ARGS)


CANVAS_JS = """() => {
  const img = document.getElementById('live');
  const c = document.createElement('canvas');
  c.width = img.naturalWidth; c.height = img.naturalHeight;
  c.getContext('2d').drawImage(img, 0, 0);
  return c.toDataURL('image/png');
}"""
NUMBERS_JS = """() => ({index: document.getElementById('index').textContent,
  pred: document.getElementById('pred').dataset.deg, predText: document.getElementById('pred').textContent,
  status: document.getElementById('status').textContent,
  frames: document.getElementById('stat-frames') && document.getElementById('stat-frames').textContent,
  framesOut: document.getElementById('final-frames_out') && document.getElementById('final-frames_out').textContent})"""


def _canvas_pixels(page) -> np.ndarray:
    """The image on the page as the page's own canvas reads it (BGR)."""
    url = page.evaluate(CANVAS_JS)
    png = base64.b64decode(url.split(",", 1)[1])
    return cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)


def _redness(img: np.ndarray) -> np.ndarray:
    b, g, r = (img[..., k].astype(np.float32) for k in range(3))
    return r - (g + b) / 2  # (H, W)


def _check_red_where_mask(shown: np.ndarray, source: np.ndarray, engine: OverlayEngine) -> None:
    """The served frame is redder than its source where VisualBackProp's mask is high, not where it is low."""
    h, w = source.shape[:2]
    if shown.shape[:2] != (h, w):
        shown = cv2.resize(shown, (w, h), interpolation=cv2.INTER_AREA)
    mask = mask_to_frame(engine.infer([source])[0].mask, CROP, source.shape)  # (H, W)
    y0, y1, x0, x1 = CROP.box(h, w)
    inner = np.zeros((h, w), bool)
    inner[y0 + 6:y1 - 6, x0 + 6:x1 - 6] = True  # away from a band outline
    gain = _redness(shown) - _redness(source)  # (H, W)
    high, low = inner & (mask >= 0.5), inner & (mask <= 0.02)
    assert high.sum() > 20 and low.sum() > 20
    assert gain[high].mean() > 40, gain[high].mean()
    assert gain[high].mean() > gain[low].mean() + 30
    assert np.abs(shown[:y0 - 6].astype(int) - source[:y0 - 6]).mean() < 8  # above the band: untouched


@pytest.mark.slow
def test_browser_shows_the_live_overlay_and_the_csv_numbers(tmp_path, ckpt):
    sync_api = pytest.importorskip("playwright.sync_api")
    video = write_video(tmp_path / "drive.mp4", 30, fps=10)
    sources, _ = read_video(video)
    log_csv = tmp_path / "p.csv"
    engine = OverlayEngine.from_checkpoint(ckpt, device="cpu", method="vbp")
    run = None
    try:
        with sync_api.sync_playwright() as p:
            browser = _browser(p)  # before the run starts: its frames come in real time
            run = CliRun(["run", str(video), "-c", str(ckpt), "--serve", "127.0.0.1:0", "--serve-token", TOKEN,
                          "--realtime", "--no-hud", "--csv", str(log_csv), "--serve-linger", "600", "-q"], tmp_path)
            base = run.url.split("?")[0]
            refused = browser.new_page()
            assert refused.goto(base).status == 401
            assert refused.goto(base + "stream.mjpg?token=wrong").status == 403
            pages = [browser.new_page(), browser.new_page()]  # two viewers at once
            for page in pages:
                assert page.goto(run.url).status == 200
                page.wait_for_function("() => document.getElementById('live').naturalWidth > 0", timeout=30000)
            seen, numbers = [], []
            while True:
                for page in pages:
                    shown = _canvas_pixels(page)
                    seen.append((decode_index(shown), shown))
                    numbers.append(page.evaluate(NUMBERS_JS))
                if "ended: " in numbers[-1]["status"] or len(seen) > 400:
                    break
                time.sleep(0.15)
            pages[0].wait_for_function("() => document.getElementById('status').textContent.includes('ended: ')")
            final = pages[0].evaluate(NUMBERS_JS)
            pages[0].wait_for_timeout(1000)
            last_shown = decode_index(_canvas_pixels(pages[0]))
            browser.close()
    finally:
        if run is not None:
            run.kill()
    indices = [i for i, _ in seen]
    assert len(set(indices)) >= 3, f"the image did not update: {indices}"
    for i, shown in seen[::max(1, len(seen) // 6)]:
        _check_red_where_mask(shown, sources[i], engine)
    rows = {int(r["index"]): r for r in csv.DictReader(log_csv.open())}
    assert sorted(rows) == list(range(30))
    shown_numbers = [n for n in numbers if n["index"] not in ("", "–")]
    assert len({n["index"] for n in shown_numbers}) >= 3
    for n in [*shown_numbers, final]:
        pred = float(rows[int(n["index"])]["pred_deg"])
        assert float(n["pred"]) == pytest.approx(pred, abs=1e-4)
        assert n["predText"] == f"{abs(float(n['pred'])):.1f}°" + (" L" if pred > 0 else " R" if pred < 0 else "")
    assert int(final["index"]) == 29 and final["frames"] == "30" and "ended: end of stream" in final["status"]
    assert final["framesOut"] == "30"  # the pipeline's own statistics once the run has ended
    assert last_shown == 29  # the run's last frame stays on the page


def _noise_video(path: Path, n: int, size: tuple[int, int] = (640, 480)) -> Path:
    """Noise frames (MJPG keeps them noisy): their JPEGs overflow the socket buffers of a viewer that never reads."""
    rng = np.random.default_rng(0)
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 20.0, size)
    for _ in range(n):
        w.write(rng.integers(0, 256, (size[1], size[0], 3), np.uint8))
    w.release()
    frames, _ = read_video(path)
    jpeg_bytes = sum(len(cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, 80])[1]) for f in frames)
    assert jpeg_bytes > 6 << 20  # more than the kernel buffers of a stalled viewer (4 MiB send + 4 KiB receive)
    return path


@pytest.mark.slow
def test_a_stalled_viewer_does_not_hold_up_the_pipeline(tmp_path, ckpt):
    video = _noise_video(tmp_path / "noise.avi", 40)
    stats_json = tmp_path / "s.json"
    run = CliRun(["run", str(video), "-c", str(ckpt), "--serve", "127.0.0.1:0", "--realtime", "--batch", "1",
                  "--stats-json", str(stats_json), "-q"], tmp_path)
    host, port = run.url.split("//")[1].rstrip("/").split(":")
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # fills after a frame or two
    stalled.connect((host, int(port)))
    stalled.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")  # ... and never reads
    gone = socket.create_connection((host, int(port)))
    gone.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert gone.recv(1000).startswith(b"HTTP/1.1 200")
    gone.close()  # a viewer that disconnects
    try:
        assert run.finish(60) == 0, "".join(run.all)
        assert stalled.recv(12) == b"HTTP/1.1 200"  # it was a viewer of the stream, not refused
    finally:
        stalled.close()
        run.kill()
    stats = json.loads(stats_json.read_text())
    assert (stats["frames_in"], stats["frames_out"], stats["dropped"]) == (40, 40, 0)
    assert "ended: end of stream" in "".join(run.all)


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read(2000)
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_token_refused_without_and_accepted_with():
    with LiveServer(Bind("127.0.0.1", 0), token=TOKEN) as server:
        base = server.url.split("?")[0]
        server.sink().write(np.zeros((24, 32, 3), np.uint8), 0)
        for route in ("", "live.js", "state.json", "frame.jpg", "stream.mjpg", "events"):
            assert _get(base + route)[0] == 401, route
            assert _get(base + route + "?token=nope")[0] == 403, route
        assert _get(base + "?token=" + TOKEN)[0] == 200
        assert _get(base + "frame.jpg?token=" + TOKEN)[0] == 200
        assert _get(base + "state.json", {"Authorization": f"Bearer {TOKEN}"})[0] == 200
        assert _get(base + "state.json", {"Cookie": f"vbp_token={TOKEN}"})[0] == 200


def test_loopback_needs_no_token_and_elsewhere_gets_a_random_one():
    assert parse_bind("8080") == Bind("127.0.0.1", 8080)
    assert parse_bind("0.0.0.0:0") == Bind("0.0.0.0", 0)
    assert parse_bind("[::1]:9000") == Bind("::1", 9000)
    assert serve_token(parse_bind("8080"), None) is None
    first, second = serve_token(Bind("0.0.0.0", 0), None), serve_token(Bind("192.168.1.5", 0), None)
    assert first and second and first != second and len(first) >= 20
    assert serve_token(Bind("0.0.0.0", 0), "mine") == "mine"
    for bad in ("http", "70000", "host:"):
        with pytest.raises(UsageError, match="--serve"):
            parse_bind(bad)
    with LiveServer(Bind("127.0.0.1", 0)) as server:
        assert _get(server.url + "state.json")[0] == 200
        port = server.httpd.server_address[1]
        assert _get(server.url + "state.json", {"Host": f"localhost:{port}"})[0] == 200
        assert _get(server.url + "state.json", {"Host": f"evil.example:{port}"})[0] == 403  # DNS rebinding
