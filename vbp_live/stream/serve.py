"""Live view in a browser: ``vbp-live run SOURCE --serve [HOST:]PORT`` (standard library only).

Why it is built this way: the pipeline must never wait for a viewer. The writer thread hands each
rendered frame to :class:`ServeSink` (a reference swap) and each frame's numbers to
:class:`ServedLog` (a few additions under a lock); neither blocks. An encoder thread turns the
newest frame into a JPEG only while someone watches and puts it in a :class:`LatestSlot`. Every
viewer's own handler thread waits there for a newer frame than the one it sent last, so a slow
viewer skips frames (the newest wins, as for ``--show``) and a stalled one blocks only its own
thread until the send timeout drops it.

Routes: ``/`` (the page), ``/live.js``, ``/stream.mjpg`` (MJPEG, ``multipart/x-mixed-replace``),
``/frame.jpg`` (the newest frame), ``/state.json`` (numbers, statistics, timeline) and ``/events``
(the same as server-sent events, new timeline rows only). With a token every route wants it as
``?token=``, an ``Authorization: Bearer`` header or the cookie the page sets: 401 without, 403
when wrong.
"""

from __future__ import annotations

import contextlib
import hmac
import http.server
import ipaddress
import json
import logging
import math
import re
import secrets
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass
from http import HTTPStatus
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import cv2
import numpy as np

from vbp_live.core.errors import UsageError
from vbp_live.io.frames import FrameRecord
from vbp_live.io.sinks import FrameSink
from vbp_live.stream.engine import Prediction
from vbp_live.stream.records import PredictionLog

log = logging.getLogger(__name__)

ASSETS = Path(__file__).resolve().parents[1] / "assets"
DEFAULT_HOST = "127.0.0.1"
LOCAL_NAMES = {"localhost", "localhost.localdomain"}
SEND_TIMEOUT_S = 10.0  # a viewer that takes no data for this long is dropped
REPEAT_S = 0.3  # a frame not followed by a newer one within this is sent again (see _Handler._stream)
EVENT_INTERVAL_S = 0.1  # at most 10 state events per second per viewer
HISTORY_ROWS = 3000  # timeline rows kept (a few minutes at 20 fps)
BOUNDARY = "vbpframe"
CSP = "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self'; frame-ancestors 'none'"


@dataclass(frozen=True)
class Bind:
    """Where to listen: ``host`` and ``port`` (0 = any free port)."""

    host: str
    port: int

    @property
    def loopback(self) -> bool:
        """Only this machine can connect."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


def parse_bind(spec: str) -> Bind:
    """``PORT``, ``HOST:PORT`` or ``[IPv6]:PORT``; the host defaults to 127.0.0.1.

    Raises:
        UsageError: not a port in 0..65535, or an empty host.
    """
    s = spec.strip()
    host, sep, port = s.rpartition(":")
    if not sep:
        host, port = DEFAULT_HOST, s
    host = host.strip("[]") or DEFAULT_HOST
    if not port.isdigit() or int(port) > 65535:
        raise UsageError(f"--serve {spec!r}: expected PORT, HOST:PORT or [IPv6]:PORT with a port in 0..65535")
    return Bind(host, int(port))


def serve_token(bind: Bind, token: str | None) -> str | None:
    """The token to require: the one given, a random one off loopback, else None (loopback needs none)."""
    if token is not None:
        if not token.strip():
            raise UsageError("--serve-token: the token is empty")
        return token
    return None if bind.loopback else secrets.token_urlsafe(18)


class LatestSlot:
    """The newest item with a sequence number; readers wait for one newer than they have (never a queue)."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.seq = 0
        self.item: Any = None
        self.closed = False

    def put(self, item: Any) -> None:
        """Replace the item (never blocks on readers)."""
        with self.cond:
            self.seq += 1
            self.item = item
            self.cond.notify_all()

    def wait_newer(self, seq: int, timeout: float) -> tuple[int, Any] | None:
        """``(seq, item)`` newer than ``seq``; None on timeout or when closed."""
        with self.cond:
            self.cond.wait_for(lambda: self.seq > seq or self.closed, timeout)
            return (self.seq, self.item) if self.seq > seq and not self.closed else None

    def close(self) -> None:
        """Wake every reader for good."""
        with self.cond:
            self.closed = True
            self.cond.notify_all()


class LiveState:
    """The numbers a viewer sees: the latest frame's steering, run statistics and the timeline rows."""

    def __init__(self, name: str = "") -> None:
        self.lock = threading.Lock()
        self.name = name
        self.rows: deque[dict[str, Any]] = deque(maxlen=HISTORY_ROWS)
        self.count = 0  # rows ever added (row n has "n": n)
        self.first_index: int | None = None
        self.err_n, self.err_sq, self.err_abs, self.err_max = 0, 0.0, 0.0, 0.0
        self.latency_ms: deque[float] = deque(maxlen=300)
        self.times: deque[float] = deque(maxlen=30)
        self.t_start = time.perf_counter()
        self.t_end: float | None = None
        self.final: dict[str, Any] | None = None
        self.status = "waiting for frames"
        self.changed = LatestSlot()

    def add(self, row: tuple[int, float, float, float | None, float | None], latency_s: float) -> None:
        """One frame's ``(index, time_s, pred_deg, true_deg, error_deg)`` as the CSV has it."""
        index, t, pred, true, err = row
        now = time.perf_counter()
        with self.lock:
            self.count += 1
            self.rows.append({"n": self.count, "index": index, "time_s": t, "pred_deg": pred,
                              "true_deg": true, "error_deg": err})
            if self.first_index is None:
                self.first_index = index
            if err is not None:
                self.err_n, self.err_sq, self.err_abs = self.err_n + 1, self.err_sq + err * err, self.err_abs + abs(err)
                self.err_max = max(self.err_max, abs(err))
            self.latency_ms.append(latency_s * 1000.0)
            self.times.append(now)
            self.status = "running"
        self.changed.put(self.count)

    def end(self, status: str = "ended", final: dict[str, Any] | None = None) -> None:
        """The run is over (the page keeps the last frame and says so).

        Args:
            status: what the page says.
            final: the pipeline's own statistics (``StreamStats.to_dict()``), shown as they are.
        """
        with self.lock:
            self.status = status
            self.t_end = self.t_end or time.perf_counter()
            self.final = final if final is not None else self.final
        self.changed.put(self.count)

    def stats(self) -> dict[str, Any]:
        """Run statistics so far (call with the lock held)."""
        last = self.rows[-1] if self.rows else None
        span = (last["index"] - self.first_index + 1) if last else 0
        lat = np.asarray(self.latency_ms, np.float64)
        t = self.times
        return {
            "frames": self.count, "skipped": max(0, span - self.count),
            "fps": (len(t) - 1) / (t[-1] - t[0]) if len(t) > 1 and t[-1] > t[0] else 0.0,
            "elapsed_s": (self.t_end or time.perf_counter()) - self.t_start,
            "latency_p50_ms": float(np.percentile(lat, 50)) if lat.size else None,
            "latency_p95_ms": float(np.percentile(lat, 95)) if lat.size else None,
            "frames_with_truth": self.err_n,
            "rmse_deg": math.sqrt(self.err_sq / self.err_n) if self.err_n else None,
            "mae_deg": self.err_abs / self.err_n if self.err_n else None,
            "max_abs_error_deg": self.err_max if self.err_n else None,
        }

    def snapshot(self, since: int = 0) -> dict[str, Any]:
        """Plain data for JSON: the latest row, statistics, status and the timeline rows after row ``since``."""
        with self.lock:
            rows = [r for r in self.rows if r["n"] > since]
            return {"source": self.name, "status": self.status, "latest": self.rows[-1] if self.rows else None,
                    "stats": self.stats(), "final": self.final, "count": self.count, "rows": rows}


class LiveServer:
    """The HTTP server behind ``--serve``: a context manager that starts and stops its threads.

    Args:
        bind: address and port.
        token: required on every request when set.
        name: the source's name, shown on the page.
        quality: JPEG quality of the stream.
    """

    def __init__(self, bind: Bind, token: str | None = None, name: str = "", quality: int = 80):
        self.bind, self.token, self.quality = bind, token, quality
        self.state = LiveState(name)
        self.frames = LatestSlot()  # (index, jpeg bytes)
        self.raw: tuple[np.ndarray, int, int] | None = None  # (frame, index, offer count)
        self.offered = 0
        self.new_raw = threading.Event()
        self.viewers = 0
        self.conns: set[socket.socket] = set()
        self.lock = threading.Lock()
        self.closing = threading.Event()
        self.httpd = _make_httpd(bind, self)
        self.threads = [threading.Thread(target=self.httpd.serve_forever, args=(0.2,), name="vbp-serve", daemon=True),
                        threading.Thread(target=self._encode_loop, name="vbp-serve-jpeg", daemon=True)]

    @property
    def url(self) -> str:
        """The page's address (with the token, if one is required)."""
        host, port = self.httpd.server_address[:2]
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{port}/" + (f"?token={self.token}" if self.token else "")

    def start(self) -> LiveServer:
        """Listen and encode in background threads."""
        for t in self.threads:
            t.start()
        log.info("serving the live view at %s", self.url)
        return self

    def sink(self) -> ServeSink:
        """The frame sink that feeds this server."""
        return ServeSink(self)

    def offer(self, frame: np.ndarray, index: int) -> None:
        """Writer thread: the newest rendered frame (kept by reference, encoded only while someone watches)."""
        self.offered += 1
        self.raw = (frame, index, self.offered)
        self.new_raw.set()

    def _encode_loop(self) -> None:
        """Encoder thread: the newest frame as a JPEG into the slot, while anyone watches."""
        done = 0
        while not self.closing.is_set():
            if not self.new_raw.wait(0.2):
                continue
            self.new_raw.clear()
            raw = self.raw
            if raw is None or raw[2] == done or not self.viewers:
                continue
            try:
                self.frames.put((raw[1], self.encode(raw[0])))
            except Exception:  # noqa: BLE001  (the run goes on; viewers keep the previous frame)
                log.exception("live view: frame %d could not be encoded", raw[1])
            done = raw[2]

    def encode(self, frame: np.ndarray) -> bytes:
        """JPEG bytes of a BGR frame."""
        ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            raise RuntimeError("OpenCV could not encode a JPEG")
        return buf.tobytes()

    def watch(self, conn: socket.socket, delta: int) -> None:
        """A stream viewer arrives (+1) or leaves (-1)."""
        with self.lock:
            self.viewers += delta
            (self.conns.add if delta > 0 else self.conns.discard)(conn)
        if delta > 0:
            self.new_raw.set()  # encode the current frame for the newcomer

    def close(self) -> None:
        """Stop serving: wake every viewer, cut stalled connections, stop the threads."""
        self.closing.set()
        self.frames.close()
        self.state.changed.close()
        with self.lock:
            conns = list(self.conns)
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
        self.httpd.shutdown()
        self.httpd.server_close()
        for t in self.threads:
            t.join(5.0)

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


class ServeSink(FrameSink):
    """Hands rendered frames to a :class:`LiveServer` (never waits for a viewer)."""

    def __init__(self, server: LiveServer):
        self.server = server

    def write(self, frame: np.ndarray, index: int, time_s: float | None = None) -> None:
        """Offer the newest frame (a reference: rendered frames are not changed after they are written)."""
        self.server.offer(frame, index)

    def close(self) -> None:
        """The run ended: the page keeps the last frame and shows the final numbers."""
        self.server.state.end()


class ServedLog(PredictionLog):
    """The per-frame prediction log (and CSV, if a path is given) that also shows each row on the page.

    Without a CSV only the latest row is kept, so a camera served for days does not grow in memory.

    Args:
        path: the CSV file, or None.
        server: the server whose page shows the rows.
    """

    def __init__(self, path: Any, server: LiveServer):
        super().__init__(path)
        self.server = server

    def add(self, rec: FrameRecord, pred: Prediction) -> None:
        """Record the row, then publish exactly the CSV's numbers with the end-to-end latency."""
        super().add(rec, pred)
        self.server.state.add(self.rows[-1], time.perf_counter() - rec.t_capture)
        if self.path is None:
            del self.rows[:-1]


# -- HTTP -------------------------------------------------------------------------------------------


def _make_httpd(bind: Bind, server: LiveServer) -> http.server.ThreadingHTTPServer:
    class Handler(_Handler):
        live = server

    class Server(http.server.ThreadingHTTPServer):
        daemon_threads = True
        block_on_close = False
        allow_reuse_address = True
        address_family = socket.AF_INET6 if ":" in bind.host else socket.AF_INET

    try:
        return Server((bind.host, bind.port), Handler)
    except OSError as e:
        raise UsageError(f"--serve {bind.host}:{bind.port}: cannot listen there ({e.strerror or e})") from e


class _Handler(http.server.BaseHTTPRequestHandler):
    """One request (a viewer's stream or event connection lives as long as the viewer watches)."""

    live: LiveServer
    timeout = SEND_TIMEOUT_S
    server_version = "vbp-live"
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt: str, *args: object) -> None:
        log.debug("%s %s", self.address_string(), re.sub(r"token=[^&\s]*", "token=***", fmt % args))

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        url = urlsplit(self.path)
        route = {"/": self._page, "/index.html": self._page, "/live.js": self._script, "/frame.jpg": self._frame,
                 "/state.json": self._state, "/stream.mjpg": self._stream, "/events": self._events}.get(url.path)
        if route is None:
            self._plain(HTTPStatus.NOT_FOUND, "not found")
        elif self._authorized(parse_qs(url.query).get("token", [None])[0]):
            try:
                route()
            except (ConnectionError, TimeoutError, OSError) as e:
                log.debug("viewer %s left: %s", self.address_string(), e)
                self.close_connection = True

    def _authorized(self, query_token: str | None) -> bool:
        """Check the token (query, bearer header or cookie); answer 401/403 and return False when it fails."""
        want = self.live.token
        if want is None:
            return self._local_host()
        auth = self.headers.get("Authorization", "")
        cookie = SimpleCookie(self.headers.get("Cookie", ""))
        given = query_token or (auth[7:] if auth.startswith("Bearer ") else None) or (
            cookie["vbp_token"].value if "vbp_token" in cookie else None)
        if given is None:
            self._plain(HTTPStatus.UNAUTHORIZED, "token required: open the address vbp-live printed (...?token=...)")
            return False
        if not hmac.compare_digest(given.encode(), want.encode()):
            self._plain(HTTPStatus.FORBIDDEN, "wrong token")
            return False
        return True

    def _local_host(self) -> bool:
        """Without a token (loopback only) the Host header must name this machine: a web page elsewhere
        cannot reach the stream by pointing its own domain name at 127.0.0.1 (DNS rebinding)."""
        host = urlsplit("//" + self.headers.get("Host", "")).hostname or ""
        if host in LOCAL_NAMES or Bind(host, 0).loopback:
            return True
        self._plain(HTTPStatus.FORBIDDEN, f"Host {host!r} is not this machine: use http://127.0.0.1:PORT/")
        return False

    def _headers(self, status: int, ctype: str, length: int | None = None, page: bool = False) -> None:
        """Status and headers; ``length`` None streams until the connection closes; the page sets the cookie."""
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        if page:
            self.send_header("Content-Security-Policy", CSP)
            if self.live.token:
                self.send_header("Set-Cookie", f"vbp_token={self.live.token}; HttpOnly; SameSite=Strict; Path=/")
        if length is None:
            self.send_header("Connection", "close")
            self.close_connection = True
        else:
            self.send_header("Content-Length", str(length))
        self.end_headers()

    def _body(self, status: int, ctype: str, body: bytes, page: bool = False) -> None:
        self._headers(status, ctype, len(body), page)
        self.wfile.write(body)

    def _plain(self, status: int, text: str) -> None:
        self._body(status, "text/plain; charset=utf-8", (text + "\n").encode())

    def _page(self) -> None:
        self._body(HTTPStatus.OK, "text/html; charset=utf-8", (ASSETS / "live.html").read_bytes(), page=True)

    def _script(self) -> None:
        self._body(HTTPStatus.OK, "text/javascript; charset=utf-8", (ASSETS / "live.js").read_bytes())

    def _frame(self) -> None:
        raw = self.live.raw
        if raw is None:
            self._plain(HTTPStatus.SERVICE_UNAVAILABLE, "no frame yet")
            return
        self._body(HTTPStatus.OK, "image/jpeg", self.live.encode(raw[0]))

    def _state(self) -> None:
        self._body(HTTPStatus.OK, "application/json", json.dumps(self.live.state.snapshot()).encode())

    def _stream(self) -> None:
        """MJPEG. Chromium shows a part only once the next one arrives, so a frame is sent once more when
        no newer one follows within ``REPEAT_S`` (the last frame of a run, a paused camera)."""
        self._headers(HTTPStatus.OK, f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        self.wfile.write(f"--{BOUNDARY}\r\n".encode())
        self.live.watch(self.connection, +1)
        try:
            seq, last, repeated = 0, None, True
            while not self.live.closing.is_set():
                got = self.live.frames.wait_newer(seq, REPEAT_S)
                if got is None:
                    if not repeated and last is not None:
                        self._part(*last)
                        repeated = True
                    continue
                seq, last, repeated = got[0], got[1], False
                self._part(*last)
        finally:
            self.live.watch(self.connection, -1)

    def _part(self, index: int, jpg: bytes) -> None:
        head = f"Content-Type: image/jpeg\r\nContent-Length: {len(jpg)}\r\nX-Frame-Index: {index}\r\n\r\n"
        self.wfile.write(head.encode() + jpg + f"\r\n--{BOUNDARY}\r\n".encode())

    def _events(self) -> None:
        """Server-sent events: the state on every change (at most 10 a second), new timeline rows only."""
        self._headers(HTTPStatus.OK, "text/event-stream")
        state, seq, sent = self.live.state, -1, 0
        while not self.live.closing.is_set():
            got = state.changed.wait_newer(seq, 5.0)
            if got is None:
                self.wfile.write(b": keep-alive\n\n")
                continue
            seq = got[0]
            snap = state.snapshot(since=sent)
            sent = snap["count"]
            self.wfile.write(f"data: {json.dumps(snap)}\n\n".encode())
            time.sleep(EVENT_INTERVAL_S)
