"""A registry seen through two origins on loopback: `front` (the registry the client was
given) and `foreign` (another host:port, as object storage or a CDN would be).

    with SplitOrigin("127.0.0.1:5000") as split:
        ...push/pull/list against split.front...
    split.foreign_seen  # [(method, path, Authorization header or None), ...]

`front` forwards everything to the registry but sends the client elsewhere, as a distributed
(or hostile) registry may: upload `Location`s and `Link: rel=next` URLs point at `foreign`, and
blob GETs are answered with a 307 to `foreign`. `foreign` records what the client sent it, and
forwards to the registry with the credentials `front` last saw for that kind of request (as a
presigned URL carries its own), so the whole flow still works.
"""

from __future__ import annotations

import http.client
import re
import threading
from http.server import BaseHTTPRequestHandler
from types import TracebackType

from tests.support.loopback_http import LoopbackHTTPServer

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade"}
_BLOB_GET = re.compile(r"^/v2/.+/blobs/sha256:[0-9a-f]{64}$")

Seen = tuple[str, str, str | None]


class SplitOrigin:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.front_seen: list[Seen] = []
        self.foreign_seen: list[Seen] = []
        self._auth: dict[str, str] = {}  # "read"/"write" -> the last Authorization front saw
        self._lock = threading.Lock()
        self._front = LoopbackHTTPServer(self._handler(foreign=False))
        self._foreign = LoopbackHTTPServer(self._handler(foreign=True))

    @property
    def front(self) -> str:
        return f"127.0.0.1:{self._front.port}"

    @property
    def foreign(self) -> str:
        return f"127.0.0.1:{self._foreign.port}"

    def __enter__(self) -> SplitOrigin:
        self._front.start()
        self._foreign.start()
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._front.stop()
        self._foreign.stop()

    def _handler(self, *, foreign: bool) -> type[BaseHTTPRequestHandler]:
        split = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _relay(self) -> None:
                auth = self.headers.get("Authorization")
                kind = "read" if self.command in ("GET", "HEAD") else "write"
                with split._lock:
                    (split.foreign_seen if foreign else split.front_seen).append(
                        (self.command, self.path, auth)
                    )
                    if not foreign and auth:
                        split._auth[kind] = auth
                    granted = split._auth.get(kind)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if not foreign and self.command == "GET" and _BLOB_GET.match(self.path):
                    self._answer(307, {"Location": f"http://{split.foreign}{self.path}"}, b"")
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                if foreign and granted:
                    headers["Authorization"] = granted
                conn = http.client.HTTPConnection(split.upstream, timeout=30)
                conn.request(self.command, self.path, body=body, headers=headers)
                upstream = conn.getresponse()
                data = upstream.read()
                out = {
                    k: v
                    for k, v in upstream.getheaders()
                    if k.lower() not in _HOP_BY_HOP and k.lower() != "content-length"
                }
                conn.close()
                if not foreign:
                    for key, value in out.items():
                        if key.lower() == "location" and "/blobs/uploads/" in value:
                            out[key] = self._foreign_url(value)
                        elif key.lower() == "link":
                            out[key] = re.sub(
                                r"<(?:https?://[^/>]+)?(/[^>]*)>",
                                rf"<http://{split.foreign}\1>",
                                value,
                            )
                self._answer(upstream.status, out, data)

            def _foreign_url(self, location: str) -> str:
                path = re.sub(r"^https?://[^/]+", "", location)
                return f"http://{split.foreign}{path}"

            def _answer(self, status: int, headers: dict[str, str], data: bytes) -> None:
                self.send_response_only(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _relay

        return Handler
