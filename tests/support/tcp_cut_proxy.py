"""A raw TCP proxy on 127.0.0.1 that resets a connection mid-response, to test resumption.

    async with TcpCutProxy("127.0.0.1", upstream_port, cut_after=3 * 1024 * 1024) as proxy:
        url = f"http://127.0.0.1:{proxy.port}"   # talk to the upstream through this
        ...
    assert proxy.cuts == 1

Unlike `flaky_proxy.py` (an HTTP proxy that understands requests), this forwards bytes only, so
any protocol passes untouched, signatures and keep-alive included. The first `cuts_wanted`
connections whose upstream-to-client traffic exceeds `cut_after` bytes are reset (RST) at that
point, as a dropped network path would; later connections pass. It runs in the test's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType

_PIECE = 64 * 1024


class TcpCutProxy:
    def __init__(
        self, upstream_host: str, upstream_port: int, cut_after: int, cuts_wanted: int = 1
    ) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.cut_after = cut_after
        self.cuts_wanted = cuts_wanted
        self.cuts = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> TcpCutProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        up_r, up_w = await asyncio.open_connection(*self.upstream)
        up = asyncio.create_task(self._pump(client_r, up_w, None))
        down = asyncio.create_task(self._pump(up_r, client_w, (client_w, up_w)))
        self._tasks.update((up, down))
        try:
            await asyncio.wait((up, down), return_when=asyncio.ALL_COMPLETED)
        finally:
            for task in (up, down):
                task.cancel()
            for writer in (client_w, up_w):
                writer.close()
            self._tasks.difference_update((up, down))

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        cut: tuple[asyncio.StreamWriter, asyncio.StreamWriter] | None,
    ) -> None:
        sent = 0
        try:
            while data := await reader.read(_PIECE):
                over = sent + len(data) > self.cut_after
                if cut is not None and over and self.cuts < self.cuts_wanted:
                    writer.write(data[: self.cut_after - sent])
                    await writer.drain()
                    self.cuts += 1
                    for w in cut:
                        w.transport.abort()  # RST, not a clean FIN
                    return
                writer.write(data)
                await writer.drain()
                sent += len(data)
            if writer.can_write_eof():
                writer.write_eof()
        except (ConnectionError, OSError):
            for w in (writer,):
                w.transport.abort()
