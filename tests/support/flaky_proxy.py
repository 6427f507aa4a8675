"""A recording HTTP proxy on loopback that can cut blob downloads short.

    with FlakyProxy("127.0.0.1:5000", cut_after=1000, cuts=1) as proxy:
        ...pull from proxy.host...
    proxy.requests  # [(method, path, Range header or None), ...]

The first `cuts` GET responses whose path matches `cut_path` get their headers (with the
full Content-Length) and only `cut_after` body bytes, then the connection is closed: what a
client sees when a network drops mid-layer. With `rate`, matching GET bodies trickle out at
that many bytes per second (set it to None to lift it), so a test can kill a pulling process
mid-layer.
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler
from types import TracebackType

from tests.support.loopback_http import LoopbackHTTPServer

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade"}


class FlakyProxy:
    def __init__(
        self,
        upstream: str,
        *,
        cut_after: int = 0,
        cuts: int = 0,
        cut_path: str = "/blobs/sha",
        rate: int | None = None,
    ) -> None:
        self.upstream = upstream
        self.rate = rate  # bytes per second for matching GETs; None = full speed
        self.cut_after = cut_after
        self.cuts_left = cuts
        self.cut_path = cut_path
        self.requests: list[tuple[str, str, str | None]] = []
        self._lock = threading.Lock()
        self._http = LoopbackHTTPServer(self._handler())

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self._http.port}"

    def __enter__(self) -> FlakyProxy:
        self._http.start()
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._http.stop()

    def _should_cut(self, method: str, path: str) -> bool:
        with self._lock:
            if method == "GET" and self.cut_path in path and self.cuts_left > 0:
                self.cuts_left -= 1
                return True
            return False

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _forward(self) -> None:
                with proxy._lock:
                    proxy.requests.append((self.command, self.path, self.headers.get("Range")))
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                conn = http.client.HTTPConnection(proxy.upstream, timeout=30)
                conn.request(self.command, self.path, body=body, headers=headers)
                upstream = conn.getresponse()
                data = upstream.read()
                cut = proxy._should_cut(self.command, self.path)
                self.send_response_only(upstream.status, upstream.reason)
                for key, value in upstream.getheaders():
                    if key.lower() not in _HOP_BY_HOP and key.lower() != "content-length":
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                conn.close()
                if self.command == "HEAD":
                    return
                if cut:
                    self.wfile.write(data[: proxy.cut_after])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if proxy.rate and self.command == "GET" and proxy.cut_path in self.path:
                    step = max(1, proxy.rate // 20)
                    for start in range(0, len(data), step):
                        self.wfile.write(data[start : start + step])
                        self.wfile.flush()
                        time.sleep(0.05)
                    return
                self.wfile.write(data)

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

        return Handler
