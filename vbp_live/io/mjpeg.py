"""A small MJPEG-over-HTTP server (``multipart/x-mixed-replace``) on loopback: a stand-in camera.

Used by the tests and the streaming benchmark to feed ``vbp-live run http://...`` a real
network stream: each connection gets a list of JPEG parts sent ``1/fps`` apart, then closes;
connections beyond the planned ones get ``503`` (the camera is gone). Send times are recorded,
so a benchmark can measure latency from the moment a frame left the "camera".
"""

from __future__ import annotations

import http.server
import socketserver
import threading
import time
from collections.abc import Callable, Sequence


class MjpegServer:
    """Serve planned MJPEG streams from a background thread (a context manager).

    Args:
        plans: per connection, a function returning the JPEG byte strings to send.
        fps: parts per second.
        host: address to bind (loopback by default).
    """

    def __init__(self, plans: Sequence[Callable[[], list[bytes]]], fps: float = 30.0, host: str = "127.0.0.1"):
        self.plans, self.fps, self.connections = list(plans), fps, 0
        self.sent_at: list[float] = []  # perf_counter() of every part sent, all connections in order
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                server.serve(self)

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True

        self.httpd = Server((host, 0), Handler)
        self.url = f"http://{host}:{self.httpd.server_address[1]}/video.mjpg"
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="mjpeg-server", daemon=True)

    def serve(self, h: http.server.BaseHTTPRequestHandler) -> None:
        """Send one connection's planned parts (or 503 when no plan is left)."""
        n = self.connections
        self.connections += 1
        if n >= len(self.plans):
            h.send_error(503, "camera gone")
            return
        h.send_response(200)
        h.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        h.end_headers()
        t0 = time.perf_counter()
        try:
            for k, part in enumerate(self.plans[n]()):
                delay = t0 + k / self.fps - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                h.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(part))
                h.wfile.write(part + b"\r\n")
                h.wfile.flush()
                self.sent_at.append(time.perf_counter())
        except (BrokenPipeError, ConnectionResetError):
            pass

    def __enter__(self) -> MjpegServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
