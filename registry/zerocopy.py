"""Blob bodies sent from the file to the socket by the kernel (`sendfile`), not through Python.

A blob GET through `StreamingResponse` costs, per MiB, a read into a new `bytes` (in a worker
thread), and a `transport.write` in the event-loop thread that copies it into the socket:
py-spy of 100 concurrent 16 MiB pulls found 65 % of the loop thread's samples in that write,
and each stream held ~3 MiB of pieces. uvicorn does not implement the ASGI
`http.response.zerocopysend` extension, so pyreg's own protocol class (`registry.http_limits`)
does, for plain-TCP connections:

- `ZeroCopyProtocol` (a mix-in of the protocol) offers the extension in the scope of each
  request on a connection without TLS, and gives each request's cycle the `send` below.
- `ZeroCopyCycle.send` takes `{"type": "http.response.zerocopysend", "file": f, "offset": o,
  "count": n, "more_body": b}` after `http.response.start` (with a Content-Length): it waits
  for what the transport still holds (the headers), then worker threads call `os.sendfile`
  on a duplicate of the socket's descriptor until the kernel's socket buffer is full; the
  loop waits for the socket to be writable again (a writer callback on the duplicate), and
  so on to the end. The loop thread never touches the bytes, a stream holds no buffer, and a
  thread is held only while the kernel takes data (a client that stops reading holds none).
  It then hands uvicorn an empty `http.response.body`, so uvicorn's own bookkeeping (its
  Content-Length check, keep-alive, the next pipelined request) ends the response.

What it relies on in uvicorn's `RequestResponseCycle` (0.47 and later): the attributes
`transport`, `flow`, `scope`, `response_started`, `response_complete`, `chunked_encoding`,
`expected_content_length`, `disconnected`. `supported()` checks they exist on a cycle; where
they do not (another uvicorn), the extension is not offered and blobs go out as streams.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import os
from collections.abc import Mapping
from typing import Any, BinaryIO, Protocol

from starlette.responses import Response
from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

EXTENSION = "http.response.zerocopysend"
#: bytes one thread hop hands the kernel at most (a fast reader does not pin a thread)
_HOP_BYTES = 16 * 1024 * 1024
_THREADS = 32
_NEEDED = (
    "transport",
    "flow",
    "scope",
    "response_started",
    "response_complete",
    "chunked_encoding",
    "expected_content_length",
    "disconnected",
)
_pool: concurrent.futures.ThreadPoolExecutor | None = None


class _Fileno(Protocol):
    def fileno(self) -> int: ...


def _threads() -> concurrent.futures.ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = concurrent.futures.ThreadPoolExecutor(_THREADS, thread_name_prefix="pyreg-send")
    return _pool


def supported(cycle: object) -> bool:
    return all(hasattr(cycle, name) for name in _NEEDED)


def _send_some(sock: int, file: int, offset: int, count: int) -> int:
    """In a worker thread: hand the kernel up to `count` bytes of `file` from `offset`, until
    the socket's buffer is full (0 when it already was). Errors (the client went) raise."""
    sent = 0
    while sent < count:
        try:
            n = os.sendfile(sock, file, offset + sent, min(count - sent, _HOP_BYTES - sent))
        except BlockingIOError:
            return sent
        except InterruptedError:
            continue
        if n == 0:
            raise OSError(errno.EIO, "file ended before its Content-Length")
        sent += n
        if sent >= _HOP_BYTES:
            break
    return sent


async def _writable(loop: asyncio.AbstractEventLoop, fd: int) -> None:
    ready = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_writer(fd, wake)
    try:
        await ready
    finally:
        loop.remove_writer(fd)


async def send_file(transport: asyncio.BaseTransport, file: int, offset: int, count: int) -> None:
    """All `count` bytes of `file` from `offset` to the transport's socket, after whatever the
    transport still holds. Raises OSError when the connection fails."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        raise OSError(errno.ENOTSOCK, "transport has no socket")
    write_buffer = getattr(transport, "get_write_buffer_size", lambda: 0)
    # The headers (or the tail of an earlier response) go first. Rarely anything is left
    # (they are small and the socket's buffer was empty), and the transport offers no event.
    while write_buffer():  # noqa: ASYNC110
        await asyncio.sleep(0.001)
    loop = asyncio.get_running_loop()
    # Descriptors of its own: a writer callback the loop allows (not on a transport's), and
    # ones a thread may go on using after a cancelled request's caller closed the originals.
    fds = (os.dup(sock.fileno()), os.dup(file))
    hop: concurrent.futures.Future[int] | None = None
    try:
        while count > 0:
            hop = _threads().submit(_send_some, fds[0], fds[1], offset, count)
            sent = await asyncio.wrap_future(hop)
            offset += sent
            count -= sent
            if count > 0 and sent < _HOP_BYTES:
                await _writable(loop, fds[0])
    finally:
        if hop is not None and not hop.done():  # cancelled while a thread sends: it closes
            hop.add_done_callback(lambda _: _close(fds))
        else:
            _close(fds)


def _close(fds: tuple[int, ...]) -> None:
    for fd in fds:
        os.close(fd)


class ZeroCopyCycle(RequestResponseCycle):
    async def send(self, message: Any) -> None:
        if message["type"] != EXTENSION:
            await super().send(message)
            return
        if not self.response_started or self.response_complete or self.chunked_encoding:
            raise RuntimeError(f"{EXTENSION} needs a started response with a Content-Length")
        count = int(message.get("count", 0))
        if count > self.expected_content_length:
            raise RuntimeError("Response content longer than Content-Length")
        if self.flow.write_paused and not self.disconnected:
            await self.flow.drain()
        if not self.disconnected and count:
            file: _Fileno = message["file"]
            try:
                await send_file(self.transport, file.fileno(), int(message.get("offset", 0)), count)
            except OSError:
                # the client went (or the file failed): nothing more can go on this
                # connection; uvicorn learns of it from connection_lost as with any write
                self.transport.abort()
        self.expected_content_length -= count
        await super().send(
            {
                "type": "http.response.body",
                "body": b"",
                "more_body": message.get("more_body", False),
            }
        )


class ZeroCopyProtocol:
    """Mixed into the httptools protocol (before it in the bases)."""

    transport: asyncio.Transport
    scope: Any
    cycle: Any

    def _zerocopy_possible(self) -> bool:
        transport = self.transport
        return (
            transport is not None
            and transport.get_extra_info("sslcontext") is None
            and transport.get_extra_info("socket") is not None
        )

    def on_message_begin(self) -> None:
        super().on_message_begin()  # type: ignore[misc]
        if self._zerocopy_possible():
            self.scope["extensions"] = {**self.scope.get("extensions", {}), EXTENSION: {}}

    def on_headers_complete(self) -> None:
        super().on_headers_complete()  # type: ignore[misc]
        cycle = self.cycle
        if type(cycle) is RequestResponseCycle:
            if supported(cycle):
                cycle.__class__ = ZeroCopyCycle
            else:  # not the uvicorn this was written for: plain streams
                cycle.scope.get("extensions", {}).pop(EXTENSION, None)


class FileResponse(Response):
    """`length` bytes of an open file from `offset`, sent with the extension; the file is
    closed when the response ends (sent, failed or cancelled). Only for scopes that offer
    the extension (`offered`)."""

    def __init__(
        self,
        file: BinaryIO,
        offset: int,
        length: int,
        status_code: int,
        headers: Mapping[str, str],
        media_type: str,
    ) -> None:
        super().__init__(None, status_code, headers, media_type)
        self.file = file
        self.offset = offset
        self.length = length

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": self.status_code,
                    "headers": self.raw_headers,
                }
            )
            await send(
                {
                    "type": EXTENSION,
                    "file": self.file,
                    "offset": self.offset,
                    "count": self.length,
                    "more_body": False,
                }
            )
        finally:
            self.file.close()


def offered(scope: Scope) -> bool:
    return EXTENSION in scope.get("extensions", {})
