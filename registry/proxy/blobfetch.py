"""One upstream GET of a blob, written to storage (verified) and streamed to every client that
asked for it before its first byte went out.

The bytes pass through `UploadStore.put_monolithic` (temp object, digest and size verified,
published atomically, linked); subscribers get each piece as it goes by. The last piece is
held back until verification succeeded: a client never receives a complete body whose digest
is wrong, it sees a cut connection instead. Clients arriving after the first piece went out
wait for the fetch to finish and read the stored blob.

A slow subscriber slows the fetch (bounded queues, no unbounded buffering); one that does not
read for `STALL_TIMEOUT` seconds is dropped so it cannot hold the others.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterable, AsyncIterator

QUEUE_PIECES = 8
STALL_TIMEOUT = 120.0


class FetchFailed(Exception):
    """The upstream fetch failed after the response to this client had started."""


_Item = bytes | BaseException | None  # a piece, the failure, or the end


class BlobFetch:
    def __init__(self) -> None:
        #: the upstream's answer is known: its size (None: not announced) or its failure
        self.ready: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        #: the blob is in storage (result True), or the fetch failed (exception)
        self.done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        #: set when another replica fetched the blob: read it from storage
        self.from_storage = False
        self._subscribers: list[asyncio.Queue[_Item]] = []
        self._started = False  # a piece went out: late subscribers would miss it
        self._held: bytes | None = None  # the last piece, sent once the digest is verified

    # -- subscribers ----------------------------------------------------------------------------

    def subscribe(self) -> asyncio.Queue[_Item] | None:
        """A queue of the whole body, or None when it is too late (wait for `done`)."""
        if self._started or self.done.done():
            return None
        queue: asyncio.Queue[_Item] = asyncio.Queue(maxsize=QUEUE_PIECES)
        self._subscribers.append(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[_Item]) -> None:
        if queue in self._subscribers:
            self._subscribers.remove(queue)
        while not queue.empty():  # unblock a put waiting on this queue
            queue.get_nowait()

    async def body(self, queue: asyncio.Queue[_Item]) -> AsyncIterator[bytes]:
        """The response body of one subscriber."""
        try:
            while True:
                item = await queue.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise FetchFailed(str(item)) from None
                yield item
        finally:
            self.unsubscribe(queue)

    async def _send(self, item: _Item) -> None:
        self._started = True
        for queue in list(self._subscribers):
            try:
                await asyncio.wait_for(queue.put(item), STALL_TIMEOUT)
            except TimeoutError:
                self.unsubscribe(queue)

    def _fail_all(self, exc: BaseException) -> None:
        for queue in list(self._subscribers):
            while not queue.empty():
                queue.get_nowait()
            queue.put_nowait(exc)
        self._subscribers.clear()

    # -- the fetch side -------------------------------------------------------------------------

    async def tee(self, pieces: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
        """Pass `pieces` on to the storage writer; subscribers get all but the last now."""
        held: bytes | None = None
        async for piece in pieces:
            if not piece:
                continue
            if held is not None:
                await self._send(held)
            held = piece
            yield piece
        self._held = held

    async def succeeded(self) -> None:
        """Storage verified and published the blob: release the last piece, end the bodies."""
        if self._held is not None:
            await self._send(self._held)
        await self._send(None)
        self._subscribers.clear()
        if not self.ready.done():
            self.ready.set_result(None)
        if not self.done.done():
            self.done.set_result(True)

    def stored_elsewhere(self) -> None:
        """Another replica put the blob in storage: everyone reads it from there."""
        self.from_storage = True
        if not self.ready.done():
            self.ready.set_result(None)
        self._send_nowait_end()
        self.done.set_result(True)

    def _send_nowait_end(self) -> None:
        for queue in self._subscribers:
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(None)
        self._subscribers.clear()

    def failed(self, exc: BaseException) -> None:
        if not self.ready.done():
            self.ready.set_exception(exc)
            self.ready.exception()  # retrieved even when nobody waits any more
        self._fail_all(exc)
        if not self.done.done():
            self.done.set_exception(exc)
            self.done.exception()
