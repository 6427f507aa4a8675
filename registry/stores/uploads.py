"""Blob upload sessions whose state lives in storage, never in process memory.

A session is `_uploads/<uuid>/state.json` plus a multipart upload of the backend. Each request's
bytes become parts; any process on the same storage can continue a session (a restarted server,
another replica). When the backend has a minimum part size (S3: 5 MiB), bytes are coalesced
into bounded buffers and a remainder smaller than that minimum is kept as a small `tail`
object, folded into the next request's first part.

The backend's multipart upload is created with the first appended bytes, not at `POST`: a
closing `PUT` that carries the whole blob into an empty session (the usual small-blob push)
streams it to the session's data key, verified in-stream, and never opens a multipart upload
(`multipart_id` stays "" in the state).

On commit the parts are assembled inside the session, verified against the digest and only
then moved to the content store. Hashing needs the whole content; when one request carried all
of it from offset 0 the hash was computed in-stream and is recorded in the state, so commit
skips re-reading (hashlib objects cannot be persisted between requests).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import asdict, dataclass, field
from typing import Any

from ocispec.digest import ALGORITHMS, Digest, DigestMismatch, Verifier
from registry import errors
from registry.stores import paths
from registry.stores.blobs import BlobStore
from storage_backends.base import (
    DeletePrefix,
    NotFound,
    Part,
    Put,
    StorageBackend,
    StorageError,
    StorageUnavailable,
)

#: the tail's part number at commit (S3 allows 1..10000, gaps included)
TAIL_PART_NUMBER = 10000

#: coalescing buffer for backends with a minimum part size; bounds memory per request
DEFAULT_BUFFER_SIZE = 16 * 1024 * 1024


@dataclass(slots=True)
class InStreamHash:
    algorithm: str
    hex: str
    size: int


@dataclass(slots=True)
class UploadState:
    id: str
    name: str
    algorithm: str
    multipart_id: str  # "" until the first appended bytes create the backend's upload
    started: float
    updated: float
    offset: int = 0
    parts: list[Part] = field(default_factory=list)
    tail: str | None = None  # storage key of bytes not yet in a part
    hashed: InStreamHash | None = None

    def to_json(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def from_json(cls, data: bytes) -> UploadState:
        obj: dict[str, Any] = json.loads(data)
        obj["parts"] = [Part(**p) for p in obj["parts"]]
        hashed = obj.get("hashed")
        obj["hashed"] = InStreamHash(**hashed) if hashed else None
        return cls(**obj)


#: running hashes kept per process (a sha256 state is ~0.2 KiB)
MAX_RUNNING_HASHES = 10_000

#: pieces a body is coalesced into before it is hashed and handed to storage
PIECE_SIZE = 1024 * 1024

#: a whole blob of at most this many bytes (Content-Length) is read into memory, hashed in the
#: event loop (~0.1 ms) and written straight to its place: no temp object, no move. (An empty
#: blob takes the streamed path: an empty object is created in place, its entry not fsync'd.)
SMALL_BODY = 256 * 1024


def _body_or_storage(exc: StorageError, counter: _Counter, length: int | None) -> Exception:
    """What a storage error while a body streamed is: the storage's fault (an outage: 503,
    whatever arrived), else the client's when the body's size was not the one announced."""
    if not isinstance(exc, StorageUnavailable) and length is not None and counter.size != length:
        return errors.SIZE_INVALID(f"Content-Length {length} but {counter.size} bytes arrived")
    return exc


#: pieces of a body the reader may hold ahead of storage (memory per request: about this many
#: PIECE_SIZE pieces, plus the one being filled and what uvicorn buffers)
READ_AHEAD = 2


class _Counter:
    """Counts (and optionally hashes) the bytes of a request body as they stream past.

    The body arrives in pieces of up to a few hundred KiB (uvicorn's receive messages). They
    are collected, not copied, until PIECE_SIZE bytes are there; one worker-thread hop then
    joins them into one buffer and hashes it (both release the GIL), and storage writes it.
    The event loop (the bottleneck of a large push: it reads the socket and runs uvicorn's
    parser) does no copy and no sha256 of its own. A body larger than one piece is read by a
    task of its own, up to READ_AHEAD pieces ahead, so receiving goes on while a piece is
    hashed and written (profile and numbers in docs/performance.md)."""

    def __init__(
        self, chunks: AsyncIterable[bytes], algorithm: str | None, running: Any = None
    ) -> None:
        self._chunks = chunks
        self.size = 0
        # `running`: the hash of the session's earlier bytes, continued (a hashlib object)
        self.hash = (
            running if running is not None else hashlib.new(algorithm) if algorithm else None
        )

    async def __aiter__(self) -> AsyncIterator[bytes]:
        chunks = aiter(self._chunks)
        first, filled = await self._collect(chunks)
        if not filled:
            # the whole body in less than a piece (every small blob): no task, no thread hop
            if first:
                yield self._joined(first)
            return
        queue: asyncio.Queue[list[bytes] | BaseException | None] = asyncio.Queue(READ_AHEAD)
        reader = asyncio.create_task(self._read_ahead(chunks, queue))
        try:
            parts: list[bytes] | BaseException | None = first
            while parts is not None:
                if isinstance(parts, BaseException):
                    raise parts
                if parts:
                    yield await asyncio.to_thread(self._joined, parts)
                parts = await queue.get()
        finally:
            if not reader.done():
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader

    async def _collect(self, chunks: AsyncIterator[bytes]) -> tuple[list[bytes], bool]:
        """The next piece's chunks; True when it is full (more may follow)."""
        parts: list[bytes] = []
        collected = 0
        async for chunk in chunks:
            if not chunk:
                continue
            self.size += len(chunk)
            parts.append(chunk)
            collected += len(chunk)
            if collected >= PIECE_SIZE:
                return parts, True
        return parts, False

    async def _read_ahead(
        self,
        chunks: AsyncIterator[bytes],
        queue: asyncio.Queue[list[bytes] | BaseException | None],
    ) -> None:
        try:
            filled = True
            while filled:
                parts, filled = await self._collect(chunks)
                await queue.put(parts)
            await queue.put(None)
        except Exception as exc:  # the body's end (a disconnect) is the consumer's to raise
            await queue.put(exc)

    def _joined(self, parts: list[bytes]) -> bytes:
        # (a join of a MiB or more copies without the GIL, like sha256)
        piece = parts[0] if len(parts) == 1 else b"".join(parts)
        if self.hash is not None:
            self.hash.update(piece)
        return piece


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _read_whole(chunks: AsyncIterable[bytes], length: int) -> bytes:
    """A body of `length` bytes (small: the caller bounds it), SIZE_INVALID when it is not."""
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        if len(body) > length:
            break
    if len(body) != length:
        raise errors.SIZE_INVALID(f"Content-Length {length} but {len(body)} bytes arrived")
    return bytes(body)


def _valid_upload_id(upload_id: str) -> bool:
    try:
        return str(uuid.UUID(upload_id)) == upload_id
    except ValueError:
        return False


class UploadStore:
    def __init__(
        self,
        backend: StorageBackend,
        blobs: BlobStore,
        buffer_size: int = DEFAULT_BUFFER_SIZE,
    ) -> None:
        self._backend = backend
        self._blobs = blobs
        self._buffer_size = max(buffer_size, backend.min_part_size)
        # Per process: the hash of each session's bytes so far, by (id, offset), so a PATCH
        # that lands in the process that took the previous one goes on hashing in-stream and
        # the commit need not read the assembled blob back (hashlib objects cannot be stored).
        self._running: dict[tuple[str, int], Any] = {}

    # -- session lifecycle -------------------------------------------------------------------

    async def start(self, name: str, algorithm: str = "sha256") -> UploadState:
        if algorithm not in ALGORITHMS:
            raise errors.DIGEST_INVALID(f"unsupported digest algorithm {algorithm!r}")
        upload_id = str(uuid.uuid4())  # unguessable: the id is the capability
        now = time.time()
        # No multipart upload yet: a small blob arrives whole in the closing PUT and needs none.
        state = UploadState(upload_id, name, algorithm, "", now, now)
        # Not made durable (no fsync): a session without bytes holds nothing acknowledged. A
        # power cut may take it; the client's next request then gets BLOB_UPLOAD_UNKNOWN, as
        # for an expired session, and starts over. The first PATCH saves it durably.
        state_op = Put(paths.upload_state(upload_id), state.to_json(), durable=False)
        await self._backend.batch([state_op])
        return state

    async def load(self, name: str, upload_id: str) -> UploadState:
        unknown = errors.BLOB_UPLOAD_UNKNOWN(detail={"uuid": upload_id})
        if not _valid_upload_id(upload_id):
            raise unknown
        try:
            state = UploadState.from_json(await self._backend.get(paths.upload_state(upload_id)))
        except NotFound:
            raise unknown from None
        except (ValueError, TypeError, KeyError):
            raise unknown from None
        if state.name != name:
            raise unknown
        return state

    async def cancel(self, name: str, upload_id: str) -> None:
        state = await self.load(name, upload_id)
        await self._discard(state)

    async def _save(self, state: UploadState) -> None:
        state.updated = time.time()
        await self._backend.put(paths.upload_state(state.id), state.to_json())

    async def _discard(self, state: UploadState) -> None:
        await self._abort_multipart(state)
        await self._backend.delete_prefix(paths.upload_dir(state.id))

    async def _abort_multipart(self, state: UploadState) -> None:
        if state.multipart_id:
            await self._backend.multipart_abort(paths.upload_data(state.id), state.multipart_id)

    async def _ensure_multipart(self, state: UploadState) -> None:
        """The backend's upload, created with the first bytes. A request that dies before
        saving the state leaves it without a session pointing at it: swept by age."""
        if not state.multipart_id:
            state.multipart_id = await self._backend.multipart_create(paths.upload_data(state.id))

    # -- appending bytes ---------------------------------------------------------------------

    async def append(
        self,
        state: UploadState,
        chunks: AsyncIterable[bytes],
        start: int | None = None,
        length: int | None = None,
        save: bool = True,
    ) -> UploadState:
        """Append a request body at the session's offset.

        `save=False` when the same request commits right after (a closing PUT with the last
        bytes): the state is used from memory, and a commit that fails leaves the stored state
        at the previous offset, so the client's retry of the PUT rewrites the same part.

        `start` (from Content-Range) must equal the current offset, else 416 BLOB_UPLOAD_INVALID;
        `length` (Content-Length) must equal what arrived, else SIZE_INVALID and nothing is kept.
        """
        if start is not None and start != state.offset:
            raise errors.BLOB_UPLOAD_RANGE_INVALID(
                f"chunk starts at {start}, the upload is at offset {state.offset}"
            )
        await self._ensure_multipart(state)
        running = None
        if state.offset > 0 and state.hashed is not None and state.hashed.size == state.offset:
            kept = self._running.pop((state.id, state.offset), None)
            # Only the hash of the very bytes the stored state vouches for: a request racing
            # on the session in another process may have replaced them since.
            if kept is not None and kept.hexdigest() == state.hashed.hex:
                running = kept
        counter = _Counter(chunks, state.algorithm if state.offset == 0 else None, running)
        try:
            if self._backend.min_part_size > 0:
                new_parts, new_tail = await self._append_coalesced(state, counter)
            else:
                new_parts, new_tail = await self._append_streamed(state, counter, length)
        except StorageError as exc:
            raise _body_or_storage(exc, counter, length) from None
        if length is not None and counter.size != length:
            raise errors.SIZE_INVALID(f"Content-Length {length} but {counter.size} bytes arrived")
        old_tail = state.tail
        was_empty = state.offset == 0
        state.parts.extend(new_parts)
        state.tail = new_tail
        state.offset += counter.size
        if counter.hash is not None and (was_empty or running is not None):
            state.hashed = InStreamHash(state.algorithm, counter.hash.hexdigest(), state.offset)
            self._keep_running(state.id, state.offset, counter.hash)
        if not save:
            return state  # an old tail stays with the stored state; the commit removes both
        await self._save(state)
        if old_tail and old_tail != new_tail:
            await self._backend.delete(old_tail)
        return state

    def _keep_running(self, upload_id: str, offset: int, running: Any) -> None:
        if len(self._running) >= MAX_RUNNING_HASHES:
            self._running.pop(next(iter(self._running)))  # the oldest: sessions get abandoned
        self._running[(upload_id, offset)] = running

    async def _append_streamed(
        self, state: UploadState, counter: _Counter, length: int | None
    ) -> tuple[list[Part], str | None]:
        # No minimum part size: the whole request body streams into one part.
        number = len(state.parts) + 1
        part = await self._backend.multipart_upload_part(
            paths.upload_data(state.id), state.multipart_id, number, counter, size=length
        )
        return ([part] if part.size > 0 else []), None

    async def _append_coalesced(
        self, state: UploadState, counter: _Counter
    ) -> tuple[list[Part], str | None]:
        backend = self._backend
        data_path = paths.upload_data(state.id)
        parts: list[Part] = []
        buf = bytearray()

        async def flush(data: bytes) -> None:
            number = len(state.parts) + len(parts) + 1
            parts.append(
                await backend.multipart_upload_part(
                    data_path, state.multipart_id, number, _once(data), size=len(data)
                )
            )

        async def source() -> AsyncIterator[bytes]:
            if state.tail:
                async for piece in backend.stream(state.tail):
                    yield piece
            async for piece in counter:
                yield piece

        async for piece in source():
            buf += piece
            while len(buf) >= self._buffer_size:
                await flush(bytes(buf[: self._buffer_size]))
                del buf[: self._buffer_size]
        if len(buf) >= backend.min_part_size:
            await flush(bytes(buf))
            return parts, None
        if not buf:
            return parts, None
        # A fresh key per tail, so a crash between writing it and saving the state never
        # leaves the state pointing at the wrong bytes.
        tail = paths.upload_tail(state.id, uuid.uuid4().hex)
        await backend.put(tail, bytes(buf))
        return parts, tail

    # -- completing --------------------------------------------------------------------------

    async def commit(self, state: UploadState, digest: Digest) -> Digest:
        """Assemble, verify and publish the blob, link it into the session's repository.

        Idempotent: a commit killed after joining the parts (the multipart upload is gone, the
        joined data is in the session) is finished by the next PUT; one killed after
        publishing answers BLOB_UPLOAD_UNKNOWN (the session's data went to the content store).
        """
        backend = self._backend
        data_path = paths.upload_data(state.id)
        self._running.pop((state.id, state.offset), None)
        if await backend.exists(data_path):
            # A commit died after the join (multipart complete is atomic: the data is whole),
            # or a whole-blob PUT after writing it.
            await self._abort_multipart(state)
        else:
            try:
                await self._join(state, data_path)
            except NotFound:
                # The multipart upload (or tail) is gone: an earlier commit joined it and
                # published, or is doing so right now. Nothing is left to finish here.
                if not await backend.exists(data_path):
                    await backend.delete_prefix(paths.upload_dir(state.id))
                    raise errors.BLOB_UPLOAD_UNKNOWN(detail={"uuid": state.id}) from None
        hashed = state.hashed
        if hashed and hashed.algorithm == digest.algorithm and hashed.size == state.offset:
            actual = Digest(digest.algorithm, hashed.hex)
        else:
            verifier = Verifier(algorithm=digest.algorithm)
            async for piece in backend.stream(data_path):
                verifier.update(piece)
            actual = verifier.digest
        if actual != digest:
            await backend.delete_prefix(paths.upload_dir(state.id))
            raise errors.DIGEST_INVALID(detail={"expected": str(digest), "actual": str(actual)})
        await self._publish(data_path, digest)
        await self._blobs.link(state.name, digest)
        await backend.delete_prefix(paths.upload_dir(state.id))
        return digest

    @staticmethod
    def is_empty(state: UploadState) -> bool:
        """No bytes yet: a closing PUT's body is then the whole blob (`commit_whole`)."""
        return state.offset == 0 and not state.parts and state.tail is None

    # -- small blobs, whole in memory ----------------------------------------------------------

    async def _commit_small(
        self, state: UploadState, digest: Digest, chunks: AsyncIterable[bytes], length: int
    ) -> Digest:
        """`commit_whole` of a body of at most SMALL_BODY bytes: read, hashed, then written to
        its place from memory and the session dropped, in one storage plan
        (`BlobStore.put_verified`: mark, look-up, bytes, link, the session's removal).

        A crash at any step leaves the stored session as it was (offset 0), so the client's
        retry of the PUT repeats the steps: the look-up then finds the bytes, the link is
        rewritten. Nothing is written before the bytes are verified."""
        data = await _read_whole(chunks, length)  # SIZE_INVALID: nothing kept, session stays
        actual = Digest(digest.algorithm, hashlib.new(digest.algorithm, data).hexdigest())
        if actual != digest:
            await self._discard(state)  # as commit does for a wrong digest: the session goes
            raise errors.DIGEST_INVALID(detail={"expected": str(digest), "actual": str(actual)})
        state.offset = len(data)
        await self._abort_multipart(state)  # only an old server's eager upload
        done = DeletePrefix(paths.upload_dir(state.id))  # after the link: a crash keeps it
        await self._blobs.put_verified(state.name, digest, data, then=[done])
        return digest

    async def _put_small(
        self, name: str, digest: Digest, chunks: AsyncIterable[bytes], length: int
    ) -> Digest:
        """`put_monolithic` of a body of at most SMALL_BODY bytes: no session, no temp object,
        one storage plan (mark, look-up, bytes, link)."""
        data = await _read_whole(chunks, length)
        actual = Digest(digest.algorithm, hashlib.new(digest.algorithm, data).hexdigest())
        if actual != digest:
            raise errors.DIGEST_INVALID(detail={"expected": str(digest), "actual": str(actual)})
        await self._blobs.put_verified(name, digest, data)
        return digest

    async def commit_whole(
        self,
        state: UploadState,
        digest: Digest,
        chunks: AsyncIterable[bytes],
        start: int | None = None,
        length: int | None = None,
    ) -> Digest:
        """A closing PUT carrying the whole blob into an empty session: stream it to the
        session's data key (hashed on the way), verify, publish, link.

        Storage calls: the data's write (3 hops on the filesystem), touch, exists, move, link,
        cleanup — against append + commit's 8 for the part, the join and the look-ups. Crash
        safety is commit's: data written but not published is found by the next PUT's commit
        (`exists(data_path)`) and re-hashed there; nothing reaches `blobs/` unverified."""
        if start is not None and start != 0:
            raise errors.BLOB_UPLOAD_RANGE_INVALID(
                f"chunk starts at {start}, the upload is at offset 0"
            )
        if length is not None and 0 < length <= SMALL_BODY:
            return await self._commit_small(state, digest, chunks, length)
        backend = self._backend
        data_path = paths.upload_data(state.id)
        counter = _Counter(chunks, digest.algorithm)
        try:
            await backend.put_stream(data_path, counter)
        except StorageError as exc:
            raise _body_or_storage(exc, counter, length) from None
        if length is not None and counter.size != length:
            # as append: nothing of it is kept, the session stays for a retry
            await backend.delete(data_path)
            raise errors.SIZE_INVALID(f"Content-Length {length} but {counter.size} bytes arrived")
        assert counter.hash is not None
        actual = Digest(digest.algorithm, counter.hash.hexdigest())
        if actual != digest:
            await self._discard(state)  # as commit does for a wrong digest: the session goes
            raise errors.DIGEST_INVALID(detail={"expected": str(digest), "actual": str(actual)})
        state.offset = counter.size
        await self._abort_multipart(state)  # only an old server's eager upload
        await self._publish(data_path, digest)
        await self._blobs.link(state.name, digest)
        await backend.delete_prefix(paths.upload_dir(state.id))
        return digest

    async def _join(self, state: UploadState, data_path: str) -> None:
        """Concatenate the session's parts (and tail) into `data_path`, atomically."""
        backend = self._backend
        parts = list(state.parts)
        if state.tail:
            # The last part number there is, so the short tail is last even when a request
            # that died before saving its state left stray parts after the recorded ones.
            tail_bytes = await backend.get(state.tail)
            parts.append(
                await backend.multipart_upload_part(
                    data_path,
                    state.multipart_id,
                    TAIL_PART_NUMBER,
                    _once(tail_bytes),
                    size=len(tail_bytes),
                )
            )
        if not parts:
            await self._abort_multipart(state)
            await backend.put(data_path, b"")
            return
        try:
            await backend.multipart_complete(data_path, state.multipart_id, parts)
        except (NotFound, StorageUnavailable):
            raise
        except StorageError:
            if not await self._parts_changed(state):
                raise  # the storage failed: a server-side error
            await self._discard(state)
            raise errors.BLOB_UPLOAD_INVALID(
                "the upload's data changed under it (concurrent requests on one "
                "session); start a new upload"
            ) from None

    async def _parts_changed(self, state: UploadState) -> bool:
        """Whether a part the state records was rewritten since (its ETag differs): racing
        requests on one session, not a storage failure."""
        try:
            listed = await self._backend.multipart_list_parts(
                paths.upload_data(state.id), state.multipart_id
            )
        except (NotFound, StorageError):
            return False
        etags = {p.number: p.etag for p in listed}
        return any(p.etag and etags.get(p.number) != p.etag for p in state.parts)

    async def put_monolithic(
        self, name: str, digest: Digest, chunks: AsyncIterable[bytes], length: int | None
    ) -> Digest:
        """One request carries the whole blob: stream to a temp key while hashing, verify, move."""
        if length is not None and 0 < length <= SMALL_BODY:
            return await self._put_small(name, digest, chunks, length)
        temp_dir = paths.upload_dir(str(uuid.uuid4()))
        temp = f"{temp_dir}/data"
        verifier = Verifier(digest, length)

        async def verified() -> AsyncIterator[bytes]:
            async for chunk in chunks:
                verifier.update(chunk)
                yield chunk

        try:
            await self._backend.put_stream(temp, verified())
            verifier.verify()
        except DigestMismatch as exc:
            await self._backend.delete_prefix(temp_dir)
            if length is not None and verifier.size != length:
                raise errors.SIZE_INVALID(str(exc)) from None
            raise errors.DIGEST_INVALID(
                detail={"expected": str(digest), "actual": str(exc.actual)}
            ) from None
        except BaseException:
            await self._backend.delete_prefix(temp_dir)
            raise
        await self._publish(temp, digest)
        await self._blobs.link(name, digest)
        await self._backend.delete_prefix(temp_dir)
        return digest

    async def _publish(self, temp: str, digest: Digest) -> None:
        # Touch before the existence check: content that already exists may be an unreferenced
        # blob that GC is taking away right now; the fresh mark makes GC put it back.
        await self._blobs.touch(digest)
        target = paths.blob_data(digest)
        if await self._backend.exists(target):
            await self._backend.delete(temp)  # same digest, same bytes
        else:
            await self._backend.move(temp, target)

    # -- housekeeping ------------------------------------------------------------------------

    async def purge(
        self, older_than: float, now: float | None = None, dry_run: bool = False
    ) -> int:
        """Remove sessions untouched for `older_than` seconds; returns how many went (dry:
        how many sessions would; leftovers are swept only for real).

        First what crashes left behind (a session directory holding only a temp file, a
        multipart upload whose state was never written), by age: nothing else refers to it.
        """
        now = time.time() if now is None else now
        # (the backend ages by its own clock: shift the window when `now` is given)
        window = older_than - now + time.time()
        purged = 0
        if not dry_run:
            purged = await self._backend.sweep_leftovers(paths.UPLOADS, window, self.has_session)
        try:
            ids = await self._backend.list_dir(paths.UPLOADS)
        except NotFound:
            return purged
        for upload_id in ids:
            state: UploadState | None = None
            try:
                state = UploadState.from_json(
                    await self._backend.get(paths.upload_state(upload_id))
                )
                updated = state.updated
            except (NotFound, ValueError, TypeError, KeyError):
                updated = await self._newest_mtime(paths.upload_dir(upload_id))
                if updated == 0.0:
                    # Nothing visible yet: a monolithic upload still streaming into its temp
                    # object (the backend publishes it only when complete). Not stale.
                    continue
            if now - updated < older_than:
                continue
            if dry_run:
                purged += 1
                continue
            if state is not None:
                await self._abort_multipart(state)
            await self._backend.delete_prefix(paths.upload_dir(upload_id))
            purged += 1
        return purged

    async def has_session(self, data_path: str) -> bool:
        """Whether the multipart upload to `data_path` belongs to a session with a state: kept
        by the leftover sweep whatever its age (the session's own TTL decides)."""
        segments = data_path.split("/")
        if len(segments) != 3 or segments[0] != paths.UPLOADS:
            return False
        if not _valid_upload_id(segments[1]) or data_path != paths.upload_data(segments[1]):
            return False
        return await self._backend.exists(paths.upload_state(segments[1]))

    async def _newest_mtime(self, prefix: str) -> float:
        newest = 0.0
        async for key in self._backend.walk(prefix):
            try:
                newest = max(newest, (await self._backend.stat(key)).modified)
            except NotFound:
                continue
        return newest
