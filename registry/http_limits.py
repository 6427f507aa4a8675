"""uvicorn's httptools protocol with the limits it lacks: header size, request-line size, and
a deadline for headers to arrive.

httptools buffers a header however long it grows (a 116 MiB header once grew the server by
178 MiB), and a connection that sends nothing, or half a header, was kept forever (uvicorn arms
its keep-alive timer only after a response). h11's `h11_max_incomplete_event_size` caps size
but answers a bare 400 and has no header deadline either; so this subclass counts the bytes
of each request head before the parser sees them, and answers in the spec's JSON:

- more than `max_header_size` bytes before the end of the headers: 431, connection closed;
- a request line longer than `max_url_size` (plus the method and version): 414, closed;
- headers not complete `header_timeout` seconds after the connection opened or the request
  began: 408 if some bytes came (nothing otherwise), closed.

Idle keep-alive connections are closed by uvicorn's own `timeout_keep_alive` (set from
`keep_alive_timeout` by `pyreg serve`). Selected with `uvicorn.run(http=PROTOCOL)`; the limits
come from the settings `pyreg serve` serialised into the environment for every worker.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
from typing import Any

from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from registry import errors
from registry.settings import SETTINGS_ENV, Settings
from registry.zerocopy import ZeroCopyProtocol

#: the import string `pyreg serve` hands to uvicorn (so spawned workers find the class)
PROTOCOL = "registry.http_limits:LimitedHttpToolsProtocol"
# "GET " ... " HTTP/1.1\r\n" around the URL: a method up to 16 bytes fits in this slack
_LINE_SLACK = 32

_REASONS = {408: b"Request Timeout", 414: b"URI Too Long", 431: b"Request Header Fields Too Large"}


@functools.cache
def _settings() -> Settings:
    raw = os.environ.get(SETTINGS_ENV)
    return Settings.from_json(raw) if raw else Settings()


def error_response(error: errors.RegistryError) -> bytes:
    """A complete HTTP/1.1 response carrying `error` as the spec's JSON, closing the
    connection (the request head was not read to its end, so it cannot be reused)."""
    body = json.dumps(error.to_json()).encode()
    head = [
        b"HTTP/1.1 %d %s" % (error.status, _REASONS.get(error.status, b"Error")),
        b"content-type: application/json",
        b"content-length: %d" % len(body),
        b"connection: close",
        b"docker-distribution-api-version: registry/2.0",
    ]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


class LimitedHttpToolsProtocol(ZeroCopyProtocol, HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        settings = _settings()
        self._max_header = settings.max_header_size
        self._max_line = settings.max_url_size + _LINE_SLACK
        self._header_timeout = settings.header_timeout
        self._awaiting_head = True  # bytes now are a request head (line and headers)
        self._head_bytes = 0
        self._line_done = False
        self._refused = False
        self._head_timer: asyncio.TimerHandle | None = None

    # -- the head deadline -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self._header_timeout, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if self._head_bytes:
            self._refuse(errors.REQUEST_TIMEOUT())
        else:
            self.transport.close()  # never said anything: nothing to answer

    # -- counting the head -------------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._head_timer is None:
            self._arm_head_timer()  # a request on a kept-alive connection has begun

    def on_headers_complete(self) -> None:
        self._awaiting_head = False
        self._cancel_head_timer()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        # what follows is the next request's head (its deadline starts with its first byte)
        self._awaiting_head = True
        self._head_bytes = 0
        self._line_done = False

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if not self._awaiting_head:
            super().data_received(data)
            return
        if not self._line_done:
            end = data.find(b"\n")
            line_bytes = self._head_bytes + (len(data) if end < 0 else end)
            if line_bytes > self._max_line:
                self._refuse(errors.URI_TOO_LONG())
                return
            self._line_done = end >= 0
        room = self._max_header - self._head_bytes
        if len(data) <= room:
            self._head_bytes += len(data)
            super().data_received(data)
            return
        # Past the cap unless the head ends within it: feed what fits, then look.
        self._head_bytes = self._max_header
        super().data_received(data[:room])
        if self._awaiting_head and not self._refused:
            self._refuse(errors.HEADERS_TOO_LARGE())
            return
        if not self.transport.is_closing():
            self.data_received(data[room:])

    # -- the body ----------------------------------------------------------------------------

    def on_body(self, body: bytes) -> None:
        """uvicorn's `on_body`, handing the bytes the parser made to the app as they are.

        uvicorn appends each piece to a bytearray and `receive()` copies that into bytes
        again: two copies of every byte on the event loop, the bottleneck of a large push
        (profile in docs/performance.md). Here a piece arriving into an empty buffer is kept
        as is (`receive()`'s `bytes(body)` returns a bytes object itself, uncopied); a piece
        arriving while the app has not taken the last one is joined as uvicorn does. Reading
        pauses above uvicorn's HIGH_WATER_LIMIT (64 KiB) as before: a socket read (256 KiB
        with uvloop) then is one receive, so the join is rare.

        Relies on uvicorn's RequestResponseCycle (`body`, `message_event`, `response_complete`,
        `receive()` returning `bytes(body)` and resetting it) and FlowControl, as in uvicorn
        0.47-0.54; tests/registry/test_http_limits.py fails when they change."""
        cycle = self.cycle
        if (self.parser.should_upgrade() and self._should_upgrade()) or cycle.response_complete:
            return
        held: bytes | bytearray = cycle.body
        if not held:
            held = body  # read as bytes(body): no copy
        else:  # the app has not taken the last piece: uvicorn's bytearray, one piece for it
            if isinstance(held, bytes):
                held = bytearray(held)
            held += body
        cycle.body = held  # type: ignore[assignment]
        if len(held) > HIGH_WATER_LIMIT:
            self.flow.pause_reading()
        cycle.message_event.set()

    def _refuse(self, error: errors.RegistryError) -> None:
        self._refused = True
        self._cancel_head_timer()
        self.logger.warning("refused a request head: %s", error.message)
        if not self.transport.is_closing():
            self.transport.write(error_response(error))
            self.transport.close()
