"""A real webhook receiver on loopback: records every POST (headers and body), answers with
`status` (settable while it runs), and can go down and come back on the same port.

    receiver = WebhookReceiver().start()
    receiver.url                       # http://127.0.0.1:<port>/events
    receiver.events()                  # every event of every envelope received, in order
    receiver.stop(); ...; receiver.start()   # down for a while, then back
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.support.loopback_http import LoopbackHTTPServer
from tests.support.server import free_port


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes


class WebhookReceiver:
    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.port = free_port()
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._server: LoopbackHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/events"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver._lock:
                    receiver.received.append(Received(dict(self.headers.items()), body))
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

    def start(self) -> WebhookReceiver:
        self._server = LoopbackHTTPServer(self._handler(), port=self.port)
        self._server.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def events(self) -> list[dict[str, Any]]:
        with self._lock:
            bodies = [r.body for r in self.received]
        return [event for body in bodies for event in json.loads(body)["events"]]

    def wait_for(self, predicate: Any, timeout: float = 60.0) -> list[dict[str, Any]]:
        """Poll until `predicate(events)` is true; the events then (or at the timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            events = self.events()
            if predicate(events) or time.monotonic() > deadline:
                return events
            time.sleep(0.1)
