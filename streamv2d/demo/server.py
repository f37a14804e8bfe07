"""A loopback HTTP server (127.0.0.1 only) serving a folder of videos, with routes that misbehave on
purpose — the failures a real crawl meets — and a count of every request."""
from __future__ import annotations

import os
import socket
import struct
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Optional
from urllib.parse import parse_qs, urlparse


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True     # else small responses wait ~40 ms for delayed ACKs
    server: "_Server"

    def log_message(self, *args) -> None:  # quiet
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.server.count(self.path)
        parts = [p for p in self.path.split("?")[0].split("/") if p]
        route, args = (parts[0], parts[1:]) if parts else ("", [])
        handler = getattr(self, f"_route_{route}", None)
        if handler is None:
            return self._send(404, b"not found", "text/plain")
        try:
            handler(*args)
        except (BrokenPipeError, ConnectionResetError):
            pass

    # -- well-behaved routes ----------------------------------------------------------------------------------
    def _route_videos(self, name: str) -> None:
        data = self.server.read(name)
        if data is None:
            return self._send(404, b"<html><body>404</body></html>", "text/html")
        self._send(200, data, "video/mp4")

    def _route_files(self, name: str) -> None:
        """Any file of the folder (tables, tar shards) with a neutral content type."""
        data = self.server.read(name)
        self._send(200, data, "application/octet-stream") if data is not None else self._send(404, b"", "text/plain")

    def _route_page(self, name: str) -> None:
        """An HTML page embedding a video: what yt-dlp's generic extractor resolves."""
        html = (f"<!DOCTYPE html><html><head><title>{name}</title></head><body>"
                f"<video src=\"/videos/{name}\" controls></video></body></html>").encode()
        self._send(200, html, "text/html; charset=utf-8")

    # -- misbehaving routes ---------------------------------------------------------------------------------------
    def _route_status(self, code: str) -> None:
        self._send(int(code), f"<html><body>error {code}</body></html>".encode(), "text/html")

    def _route_html(self) -> None:
        self._send(200, b"<!DOCTYPE html><html><body>Sorry, this video is unavailable</body></html>", "video/mp4")

    def _route_garbage(self, size: str = "4096") -> None:
        self._send(200, os.urandom(int(size)), "video/mp4")

    def _route_slow(self, seconds: str, name: str) -> None:
        time.sleep(float(seconds))
        self._route_videos(name)

    def _route_trickle(self, interval: str, name: str) -> None:
        """The video, one byte every ``interval`` seconds: each read succeeds, the download never ends."""
        data = self.server.read(name) or b""
        self.send_response(200)
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        for i in range(len(data)):
            self.wfile.write(data[i:i + 1])
            self.wfile.flush()
            time.sleep(float(interval))

    def _route_truncated(self, name: str) -> None:
        data = self.server.read(name) or b""
        self.send_response(200)
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data[: len(data) // 2])
        self.close_connection = True

    def _route_drop(self) -> None:
        self.close_connection = True   # no response at all: a dropped connection

    def _route_big(self, size: str, declared: str = "yes") -> None:
        """``size`` bytes of an mp4 header plus zeros; ``declared=no`` omits Content-Length (chunked)."""
        total = int(size)
        self.send_response(200)
        self.send_header("Content-Type", "video/mp4")
        if declared == "yes":
            self.send_header("Content-Length", str(total))
        else:
            self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        chunk = b"\x00\x00\x00\x18ftypisom" + bytes(65536 - 12)
        sent = 0
        while sent < total:
            piece = chunk[: min(len(chunk), total - sent)]
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece) if declared != "yes" else piece)
            sent += len(piece)
        if declared != "yes":
            self.wfile.write(b"0\r\n\r\n")

    def _route_reset(self, name: str) -> None:
        """Half the video, then a TCP reset (not a clean close): a connection cut mid-body."""
        data = self.server.read(name) or b""
        self.send_response(200)
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[: len(data) // 2])
        self.wfile.flush()
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.rfile.close()          # the socket closes (with RST, lingering 0 s) once its file is closed too,
        self.connection.close()     # before socketserver's shutdown() would send a FIN first
        self.close_connection = True

    def _route_redirect(self) -> None:
        """A redirect to the ``to`` query parameter, whatever its scheme (``file:///etc/hostname``)."""
        target = parse_qs(urlparse(self.path).query).get("to", ["/"])[0]
        self.send_response(302)
        self.send_header("Location", target)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _route_flaky(self, failures: str, name: str) -> None:
        """500 for the first ``failures`` requests of this path, then the video."""
        if self.server.requests[self.path] <= int(failures):
            return self._send(500, b"try again", "text/plain")
        self._route_videos(name)

    def _send(self, code: int, body: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256           # many fetch threads connect at once; the default backlog of 5 drops them

    def __init__(self, directory: str, port: int = 0):
        super().__init__(("127.0.0.1", port), _Handler)
        self.directory = os.path.abspath(directory)
        self.requests: Counter = Counter()
        self._lock = threading.Lock()

    def handle_error(self, request, client_address) -> None:
        """Clients hanging up (the fetcher abandoning an over-cap body, a killed worker) are not errors here."""
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)

    def count(self, path: str) -> None:
        with self._lock:
            self.requests[path] += 1

    def read(self, name: str) -> Optional[bytes]:
        path = os.path.abspath(os.path.join(self.directory, name))
        if not path.startswith(self.directory + os.sep) or not os.path.isfile(path):
            return None
        with open(path, "rb") as f:
            return f.read()


class LoopbackServer:
    """``with LoopbackServer(folder) as server: server.url("videos/a.mp4")`` — serves on 127.0.0.1 only,
    on ``port`` (default: any free port)."""

    def __init__(self, directory: str, port: int = 0):
        self._server = _Server(directory, port)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    @property
    def requests(self) -> Counter:
        """Requests received so far, by path."""
        return self._server.requests

    def total_requests(self) -> int:
        return sum(self._server.requests.values())

    def start(self) -> "LoopbackServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "LoopbackServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
