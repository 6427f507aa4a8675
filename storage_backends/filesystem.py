"""A backend on a local directory tree: one file per key, published by rename.

Layout under `root`:

    root/
      <key>                         objects: the key's segments are directories, the last a file
      .../.tmp.<hex>                a write in progress (same directory as its target, so the
                                    final `os.replace` is atomic); hidden from list_dir/walk
      .multipart/<upload_id>/
        target                      the key the upload will publish to
        data                        the parts' bytes, each written in place at its offset
        <number:05d>.<offset:x>.<size:x>.<token>.at
                                    a part's record (empty; fs_parts.py has the rules)

Keys whose segments start with `.tmp.`, or whose first segment is `.multipart`, are refused so
nothing a caller writes can collide with this bookkeeping.

Blocking file I/O runs in worker threads, so the event loop never waits on the disk: one hop
in the backend's pool per 1 MiB read of a byte stream (`fs_read.py`), one `asyncio.to_thread`
call per 1 MiB written, and one per small-object read or write, metadata and directory
operation (a thread hop costs more than reading a link file, so one hop, not aiofiles'
open/read/close three). Small objects and
`batch` (many small operations, one hop) run in the backend's own pool (`_run`). An empty put
over an empty object only sets its mtime: blob in-use marks are rewritten on every push.
With `fsync=False` (setting `storage.fsync`) nothing is fsync'd: small objects, streams,
multipart parts and joins, and moves.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import errno
import functools
import io
import itertools
import os
import queue
import re
import shutil
import stat
import threading
import time
import uuid
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterator,
    Sequence,
)
from pathlib import Path
from typing import Any, BinaryIO, Concatenate, ParamSpec, TypeVar

import aiofiles.os

from storage_backends import fs_parts
from storage_backends.base import (
    CHUNK_SIZE,
    DeletePrefix,
    Exists,
    Get,
    InvalidPath,
    Keep,
    NotFound,
    Op,
    Part,
    Plan,
    PutIfAbsent,
    Result,
    Stat,
    StorageError,
    StorageFull,
    StorageUnavailable,
    check_path,
    check_prefix,
)
from storage_backends.fs_listing import ListingCache
from storage_backends.fs_parts import fsync_dir as _fsync_dir
from storage_backends.fs_parts import unlink_quiet as _unlink_quiet
from storage_backends.fs_read import PieceReader, open_regular
from storage_backends.fs_writeback import Writeback

_TMP_PREFIX = ".tmp."
_TMP_PREFIX_END = ".tmp/"  # the first string after every one that starts with _TMP_PREFIX
_MULTIPART_DIR = ".multipart"
_UPLOAD_ID = re.compile(r"[0-9a-f]{32}")
# A key `_key` accepts, in one match: segments without `/`, `\` or NUL, none `.`, `..` or a
# temp name, the first not `.multipart` (anything else takes the slower checks, which raise)
_PLAIN_KEY = re.compile(
    r"(?!\.multipart(?:/|\Z))(?:(?!\.tmp\.|\.\.?/)[^/\\\x00]+/)*(?!\.tmp\.|\.\.?\Z)[^/\\\x00]+\Z"
)
# Writes are coalesced into pieces of this size: one thread hop per MiB, not per HTTP chunk.
_WRITE_SIZE = CHUNK_SIZE
_WALK_BATCH = 1000
#: threads of the backend's pool (small objects): blocked fsyncs must not starve other calls
_THREADS = 32
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
_T = TypeVar("_T")
_P = ParamSpec("_P")
# errnos that mean "no room": the disk or the user's quota is full, or a file hit its limit
_FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


def _storage_error(backend: FilesystemBackend, exc: OSError) -> StorageUnavailable:
    """An OSError that escaped a method (EIO, ENOSPC, EROFS, a vanished mount...) as the
    interface's typed error, so the registry answers 503/507 instead of a 500."""
    # the root goes to the log (the message), not to clients (the name)
    name = "filesystem storage"
    if exc.errno in _FULL:
        return StorageFull(name, f"storage full at {backend.root}: {exc}")
    return StorageUnavailable(name, f"{backend.root}: {exc}")


def _guarded(
    method: Callable[Concatenate[FilesystemBackend, _P], Coroutine[Any, Any, _T]],
) -> Callable[Concatenate[FilesystemBackend, _P], Coroutine[Any, Any, _T]]:
    async def wrapper(self: FilesystemBackend, /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        try:
            return await method(self, *args, **kwargs)
        except OSError as exc:
            raise _storage_error(self, exc) from exc

    functools.update_wrapper(wrapper, method)
    return wrapper


def _guarded_stream(
    method: Callable[Concatenate[FilesystemBackend, _P], AsyncIterator[_T]],
) -> Callable[Concatenate[FilesystemBackend, _P], AsyncIterator[_T]]:
    async def wrapper(
        self: FilesystemBackend, /, *args: _P.args, **kwargs: _P.kwargs
    ) -> AsyncIterator[_T]:
        inner = method(self, *args, **kwargs)
        try:
            async for item in inner:
                yield item
        except OSError as exc:
            raise _storage_error(self, exc) from exc
        finally:
            await inner.aclose()  # type: ignore[attr-defined]

    functools.update_wrapper(wrapper, method)
    return wrapper


class FilesystemBackend:
    min_part_size = 0
    max_part_size = 5 * 1024**4  # no real limit; a large number keeps callers' arithmetic simple

    def __init__(self, root: str | os.PathLike[str], fsync: bool = True) -> None:
        self.root = Path(root).absolute()
        self._root = str(self.root)
        #: fsync every published object and its directory entry before answering (power-loss
        #: safe); False leaves it to the kernel's writeback (a killed process loses nothing)
        self.fsync = fsync
        self._pool: _Workers | None = None
        # large listings (a repository's tags) are reused while the directory is unchanged
        self._listings = ListingCache(self._list_sorted)

    def _list_sorted(self, directory: str) -> list[str]:
        return _visible_children(Path(directory), directory == self._root)

    def _run(self, call: Callable[..., _T], *args: Any) -> asyncio.Future[_T]:
        """`call(*args)` in the backend's own thread pool: large enough that calls blocked in
        fsync do not queue the others behind them (asyncio's default pool has cpus + 4
        threads), and concurrent fsyncs reach the kernel together (one journal commit)."""
        if self._pool is None:
            self._pool = _Workers(_THREADS)
        return self._pool.submit(call, args)

    # -- paths -------------------------------------------------------------------------------

    def _key(self, path: str) -> str:
        if _PLAIN_KEY.match(path):  # one regex for the usual key; the checks below explain
            return path
        check_path(path)
        segments = path.split("/")
        if segments[0] == _MULTIPART_DIR or any(s.startswith(_TMP_PREFIX) for s in segments):
            raise InvalidPath(f"reserved storage path: {path!r}")
        return path

    def _full(self, path: str) -> Path:
        return self.root / self._key(path)

    def _file(self, path: str) -> str:
        """The key's file name as a string: pathlib costs more than the stat it leads to."""
        return f"{self._root}/{self._key(path)}"

    def _dir(self, prefix: str) -> Path:
        base = check_prefix(prefix)
        return self.root / self._key(base) if base else self.root

    def _upload_dir(self, upload_id: str) -> Path:
        if not _UPLOAD_ID.fullmatch(upload_id):
            raise NotFound(f"multipart {upload_id}")
        return self.root / _MULTIPART_DIR / upload_id

    @staticmethod
    def _tmp_name(target: Path) -> Path:
        return target.with_name(f"{_TMP_PREFIX}{uuid.uuid4().hex}")

    # -- lifecycle ---------------------------------------------------------------------------

    async def open(self) -> None:
        # Owner only when we create it: the root holds private repositories' content and,
        # without `auth.key`, the token signing key (readable = forge any token).
        await asyncio.to_thread(self.root.mkdir, mode=0o700, parents=True, exist_ok=True)

    async def close(self) -> None:
        if self._pool is not None:
            self._pool.stop()
            self._pool = None

    # -- small objects -----------------------------------------------------------------------

    @_guarded
    async def get(self, path: str) -> bytes:
        full = self._file(path)
        try:
            return await self._run(_read_file, full)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise NotFound(path) from None

    @_guarded
    async def put(self, path: str, data: bytes) -> None:
        await self._run(self._put_sync, self._file(path), data)

    @_guarded
    async def batch(self, ops: Sequence[Op]) -> list[Result]:
        """All of them one after another in one worker-thread hop (a hop and its metrics cost
        more than a stat or a small write); directories are fsync'd once each, at the end."""
        return await self._run(self._batch_sync, [self._work(op) for op in ops])

    @_guarded
    async def rounds(self, plan: Plan[_T]) -> _T:
        """The whole plan in one worker-thread hop: each round as `batch` runs one (its
        directories fsync'd before the next round starts), the plan's own code in between."""
        return await self._run(self._rounds_sync, plan)

    def _rounds_sync(self, plan: Plan[_T]) -> _T:
        try:
            ops = next(plan)
            while True:
                ops = plan.send(self._batch_sync([self._work(op) for op in ops]))
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        finally:
            plan.close()

    def _work(self, op: Op) -> tuple[Op, str]:
        """`op` with its full path (a directory for `DeletePrefix`)."""
        if isinstance(op, DeletePrefix):
            return op, str(self._dir(op.path))
        return op, self._file(op.path)

    def _batch_sync(self, work: list[tuple[Op, str]]) -> list[Result]:
        out: list[Result] = []
        dirty: dict[str, None] = {}  # directories whose new entries must reach the disk
        for op, full in work:
            if isinstance(op, Exists):
                out.append(_is_file(full))
            elif isinstance(op, Get):
                try:
                    out.append(_read_file(full))
                except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                    out.append(None)
            elif isinstance(op, DeletePrefix):
                self._delete_prefix_sync(Path(full))
                out.append(None)
            elif isinstance(op, PutIfAbsent):
                present = _is_file(full)
                if not present and self._publish(full, op.data):
                    dirty[full.rpartition("/")[0]] = None
                out.append(not present)
            else:
                if self._publish(full, op.data, op.durable):
                    dirty[full.rpartition("/")[0]] = None
                out.append(None)
        for directory in dirty:
            _fsync_dir(directory)
        return out

    def _put_sync(self, target: str, data: bytes) -> None:
        if self._publish(target, data):
            _fsync_dir(target.rpartition("/")[0])

    def _publish(self, target: str, data: bytes, durable: bool = True) -> bool:
        """Write `target` atomically (temp file, fsync, rename); True when its directory
        still needs an fsync to make the rename durable (`durable=False`: no fsync at all)."""
        if not data:
            # An empty mark has nothing to flush: refreshed in place, else created in place
            # (empty either way, so no reader sees a partial object); its entry is not fsync'd.
            if _refresh_empty(target) or _create_empty(target):
                return False
        tmp = f"{target.rpartition('/')[0]}/{_TMP_PREFIX}{uuid.uuid4().hex}"
        try:
            fd = _new_file(tmp)
            try:
                _write_all(fd, data)
                if data and self.fsync and durable:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, target)
        except BaseException:
            _unlink_quiet(Path(tmp))
            raise
        return bool(data) and self.fsync and durable

    # -- streams -----------------------------------------------------------------------------

    @_guarded_stream
    async def stream(
        self, path: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        if offset < 0 or (length is not None and length < 0):
            raise ValueError("offset and length must not be negative")
        # one hop per piece in the backend's pool, the open and close riding on the first
        # and last read (storage_backends/fs_read.py)
        reader = PieceReader(self._file(path), offset, length, CHUNK_SIZE)
        try:
            try:
                piece = await self._run(reader.next)
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                raise NotFound(path) from None
            while piece:
                yield piece
                if reader.finished:  # that was the last piece
                    return
                piece = await self._run(reader.next)
        finally:
            if not reader.finished:  # abandoned midway: closed after a read still in a thread
                self._run(reader.close)

    @_guarded
    async def open_local(self, path: str) -> io.FileIO:
        """The object's file, open for reading, for a caller that hands it to the kernel
        (`sendfile`: registry/zerocopy.py); NotFound when absent. The caller closes it."""
        try:
            return await self._run(open_regular, self._file(path))
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise NotFound(path) from None

    @_guarded
    async def put_stream(self, path: str, chunks: AsyncIterable[bytes]) -> int:
        target = self._full(path)
        tmp = self._tmp_name(target)
        try:
            written = await self._write_file(tmp, chunks)
            await asyncio.to_thread(_replace_durably, tmp, target, self.fsync)
        except BaseException:
            await asyncio.to_thread(_unlink_quiet, tmp)
            raise
        return written

    async def _write_file(self, dest: Path, chunks: AsyncIterable[bytes]) -> int:
        """Create `dest` (and its directory), write `chunks` coalesced into MiB writes, fsync
        (unless the backend was opened with `fsync=False`)."""
        written = 0
        raw = await asyncio.to_thread(_in_dir, dest, lambda: open(dest, "xb"))
        # the disk writes while the body arrives; the fsync at the end waits for the tail
        wb = Writeback(raw.fileno(), enabled=self.fsync)
        try:
            pending = bytearray()
            async for chunk in chunks:
                written += len(chunk)
                if not pending and len(chunk) >= _WRITE_SIZE:
                    await asyncio.to_thread(_write_piece, raw.write, chunk, wb, written)
                    continue
                pending += chunk
                if len(pending) >= _WRITE_SIZE:
                    await asyncio.to_thread(_write_piece, raw.write, pending, wb, written)
                    pending = bytearray()
            # the last piece, flush and fsync in one hop: small uploads are mostly hops
            await asyncio.to_thread(_finish_write, raw, pending, self.fsync, wb)
        finally:
            raw.close()  # already flushed: no disk wait here
        return written

    # -- metadata ----------------------------------------------------------------------------

    @_guarded
    async def stat(self, path: str) -> Stat:
        full = self._full(path)
        try:
            st = await aiofiles.os.stat(full)
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(path) from None
        if not stat.S_ISREG(st.st_mode):
            raise NotFound(path)  # a directory is a prefix, not an object
        return Stat(st.st_size, st.st_mtime)

    @_guarded
    async def exists(self, path: str) -> bool:
        return await self._run(_is_file, self._file(path))

    @_guarded
    async def list_dir(
        self, prefix: str, start_after: str | None = None, limit: int | None = None
    ) -> list[str]:
        directory = self._dir(prefix)
        at_root = directory == self.root
        paged = start_after is not None or limit is not None
        try:
            # the page is cut in the worker thread too: a tags list of thousands of names
            # costs the event loop nothing per name
            names = await self._run(self._children_page, str(directory), start_after, limit)
        except (FileNotFoundError, NotADirectoryError):
            if paged:
                return []
            raise NotFound(prefix) from None
        if not names and not paged and not at_root:
            raise NotFound(prefix)
        return names

    def _children_page(
        self, directory: str, start_after: str | None, limit: int | None
    ) -> list[str]:
        """The sorted visible children after `start_after`, at most `limit` of them (one
        listing of one directory, or a kept one: fs_listing.py)."""
        return _page(self._listings.names(directory), start_after, limit)

    @_guarded_stream
    async def walk(self, prefix: str) -> AsyncIterator[str]:
        keys = _walk_sync(self._dir(prefix), check_prefix(prefix), self.root)
        # The tree is walked in a worker thread a batch at a time: one hop per directory would
        # make a walk over a blob store (a directory per blob) cost a hop per blob.
        while batch := await asyncio.to_thread(_take, keys, _WALK_BATCH):
            for key in batch:
                yield key

    # -- deletion and moves ------------------------------------------------------------------

    @_guarded
    async def delete(self, path: str) -> None:
        full = self._full(path)
        await asyncio.to_thread(self._delete_sync, full)

    def _delete_sync(self, full: Path) -> None:
        try:
            os.unlink(full)
        except (FileNotFoundError, NotADirectoryError):
            return
        except IsADirectoryError:
            return  # a "directory" prefix is not an object
        self._prune(full.parent)

    def _prune(self, directory: Path) -> None:
        """Remove empty parent directories up to the root, so empty prefixes do not linger."""
        while directory != self.root and self.root in directory.parents:
            try:
                directory.rmdir()
            except OSError as e:
                if e.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOENT):
                    return
                raise
            directory = directory.parent

    @_guarded
    async def delete_prefix(self, prefix: str) -> None:
        directory = self._dir(prefix)
        await self._run(self._delete_prefix_sync, directory)

    def _delete_prefix_sync(self, directory: Path) -> None:
        if directory == self.root:
            for name in _visible_children(directory, at_root=True):
                child = directory / name
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child, ignore_errors=True)
                else:
                    _unlink_quiet(child)
            return
        if not directory.is_dir():
            return
        shutil.rmtree(directory, ignore_errors=True)
        self._prune(directory.parent)

    @_guarded
    async def move(self, src: str, dst: str) -> None:
        source, target = self._full(src), self._full(dst)
        await asyncio.to_thread(self._move_sync, src, source, target)

    def _move_sync(self, src: str, source: Path, target: Path) -> None:
        if not source.is_file():
            raise NotFound(src)
        if source == target:
            return
        try:
            _in_dir(target, lambda: os.replace(source, target), source)
        except FileNotFoundError:
            raise NotFound(src) from None
        if self.fsync:
            _fsync_dir(target.parent)
        self._prune(source.parent)

    # -- multipart ---------------------------------------------------------------------------

    @_guarded
    async def multipart_create(self, path: str) -> str:
        self._key(path)
        upload_id = uuid.uuid4().hex
        directory = self._upload_dir(upload_id)
        await asyncio.to_thread(_create_session, directory, path)
        return upload_id

    async def _session(self, path: str, upload_id: str) -> Path:
        self._key(path)
        directory = self._upload_dir(upload_id)
        try:
            target = (await asyncio.to_thread(_read_file, directory / "target")).decode()
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(f"{path} (multipart {upload_id})") from None
        if target != path:
            raise NotFound(f"{path} (multipart {upload_id})")
        return directory

    @_guarded
    async def multipart_upload_part(
        self,
        path: str,
        upload_id: str,
        number: int,
        chunks: AsyncIterable[bytes],
        size: int | None = None,
    ) -> Part:
        if not 1 <= number <= 10000:
            raise StorageError(f"part number {number} out of range 1..10000")
        directory = await self._session(path, upload_id)
        # In place, into the upload's one data file (storage_backends/fs_parts.py): the
        # completion of a chunked push is then a rename, not a second copy and fsync.
        fd = _FdCalls(self, await self._lock_parts(directory, path, upload_id))
        offset: int | None = None
        try:
            offset = await fd.run(fs_parts.prepare, fd.fd, directory, number)
            written = await self._write_at(fd, offset, chunks)
            if size is not None and written != size:
                raise StorageError(f"part {number}: expected {size} bytes, got {written}")
            part = await fd.run(
                fs_parts.record, fd.fd, directory, number, offset, written, self.fsync
            )
            offset = None  # recorded: its bytes stay
            return part
        except Exception:
            if offset is not None:
                # A part that failed (a full disk, a short body) gives its bytes back now,
                # not at the upload's next write: nothing recorded lies beyond `offset`.
                await fd.run(_truncate_quiet, fd.fd, offset)
                offset = None
            raise
        finally:
            fd.close(truncate_to=offset)  # releases the lock (a cancelled part: cut first)

    async def _lock_parts(self, directory: Path, path: str, upload_id: str) -> int:
        """The upload's data file, locked for this request alone. Another request writing to
        the same upload (a client racing itself) is waited for without holding a thread."""
        deadline = time.monotonic() + fs_parts.LOCK_WAIT
        while True:
            locking = self._run(fs_parts.try_lock, directory)
            try:
                fd = await asyncio.shield(locking)
            except asyncio.CancelledError:
                locking.add_done_callback(_close_locked)  # never leave the upload locked
                raise
            except (FileNotFoundError, NotADirectoryError):
                raise NotFound(f"{path} (multipart {upload_id})") from None
            if fd is not None:
                return fd
            if time.monotonic() > deadline:
                raise StorageUnavailable(
                    "filesystem storage", f"multipart {upload_id}: another request holds it"
                )
            await asyncio.sleep(fs_parts.LOCK_POLL)

    async def _write_at(self, fd: _FdCalls, offset: int, chunks: AsyncIterable[bytes]) -> int:
        """Write `chunks` at `offset`, coalesced into MiB writes (one thread hop each)."""
        written = 0
        pending = bytearray()
        wb = Writeback(fd.fd, offset, enabled=self.fsync)  # the part's fsync waits for less
        async for chunk in chunks:
            if not pending and len(chunk) >= _WRITE_SIZE:
                await fd.run(_pwrite_piece, fd.fd, chunk, offset + written, wb)
                written += len(chunk)
                continue
            pending += chunk
            if len(pending) >= _WRITE_SIZE:
                await fd.run(_pwrite_piece, fd.fd, pending, offset + written, wb)
                written += len(pending)
                pending = bytearray()
        if pending:
            await fd.run(_pwrite_all, fd.fd, pending, offset + written)
            written += len(pending)
        if wb.flushes:  # before the part's fsync: a background flush's error is ours
            await fd.run(wb.finish)  # (a part that started none pays no hop for it)
        return written

    @_guarded
    async def multipart_list_parts(self, path: str, upload_id: str) -> list[Part]:
        directory = await self._session(path, upload_id)
        records = await asyncio.to_thread(fs_parts.scan, directory)
        return [records[n].part() for n in sorted(records)]

    @_guarded
    async def multipart_complete(self, path: str, upload_id: str, parts: list[Part]) -> None:
        directory = await self._session(path, upload_id)
        target = self._full(path)
        fd = _FdCalls(self, await self._lock_parts(directory, path, upload_id))
        try:
            await fd.run(self._complete_sync, directory, fd.fd, target, parts)
        finally:
            fd.close()

    def _complete_sync(self, directory: Path, fd: int, target: Path, parts: list[Part]) -> None:
        numbers = [p.number for p in parts]
        if not parts or numbers != sorted(set(numbers)):
            raise StorageError("multipart complete: no parts, or parts not in ascending order")
        stored = fs_parts.scan(directory)
        for p in parts:
            have = stored.get(p.number)
            if have is None or (p.etag and have.etag != p.etag):
                raise StorageError(f"multipart complete: part {p.number} unknown or changed")
        chosen = [stored[n] for n in numbers]
        if fs_parts.tiles_data(chosen):
            # the parts lie back to back from offset 0 (a chunked push): a rename, no copy
            fs_parts.cut_to(fd, chosen[-1].end, self.fsync)
            data = directory / fs_parts.DATA
            _in_dir(target, lambda: os.replace(data, target), data)
        else:
            tmp = self._tmp_name(target)
            try:
                out = _in_dir(tmp, lambda: _new_file(str(tmp)))
                try:
                    fs_parts.copy_parts(directory, fd, chosen, out)
                    if self.fsync:
                        os.fsync(out)
                finally:
                    os.close(out)
                os.replace(tmp, target)
            except BaseException:
                _unlink_quiet(tmp)
                raise
        if self.fsync:
            _fsync_dir(target.parent)
        shutil.rmtree(directory, ignore_errors=True)

    @_guarded
    async def multipart_abort(self, path: str, upload_id: str) -> None:
        self._key(path)
        try:
            directory = self._upload_dir(upload_id)
        except NotFound:
            return
        await asyncio.to_thread(shutil.rmtree, directory, True)

    async def redirect_url(self, path: str, expires_in: int = 1200) -> str | None:
        self._key(path)
        return None

    # -- crash leftovers ---------------------------------------------------------------------

    @_guarded
    async def sweep_leftovers(
        self, prefix: str, older_than: float, keep: Keep | None = None
    ) -> int:
        directory = self._dir(prefix)
        base = check_prefix(prefix)
        cutoff = time.time() - older_than
        swept, sessions = await asyncio.to_thread(self._sweep_sync, directory, base, cutoff)
        for session, target in sessions:
            if keep is not None and target and await keep(target):
                continue
            await asyncio.to_thread(shutil.rmtree, session, True)
            swept += 1
        return swept

    def _sweep_sync(
        self, directory: Path, base: str, cutoff: float
    ) -> tuple[int, list[tuple[Path, str]]]:
        """Removes stale temp files; returns how many, and the stale multipart sessions."""
        swept = 0
        stale_sessions: list[tuple[Path, str]] = []
        # Temp files: a write in progress rewrites its temp file at least every MiB.
        for parent, dirs, files in os.walk(directory):
            if Path(parent) == self.root and _MULTIPART_DIR in dirs:
                dirs.remove(_MULTIPART_DIR)
            for name in files:
                if name.startswith(_TMP_PREFIX) and _older(Path(parent) / name, cutoff):
                    _unlink_quiet(Path(parent) / name)
                    swept += 1
                    self._prune(Path(parent))
        # Multipart uploads to keys below `base`, none of whose files changed since cutoff.
        sessions = self.root / _MULTIPART_DIR
        try:
            entries = list(os.scandir(sessions))
        except FileNotFoundError:
            return swept, stale_sessions
        for entry in entries:
            session = Path(entry.path)
            try:
                target = _read_file(session / "target").decode()
            except (FileNotFoundError, NotADirectoryError):
                target = ""  # crashed while creating it: judged by age alone
            if base and target and not (target == base or target.startswith(base + "/")):
                continue
            try:
                stale = all(_older(f, cutoff) for f in [session, *session.iterdir()])
            except (FileNotFoundError, NotADirectoryError):
                continue  # completed or aborted meanwhile
            if stale:
                stale_sessions.append((session, target))
        return swept, stale_sessions


class _FdCalls:
    """Pool calls on one raw file descriptor (a locked upload's data file). Closing it while
    a call is queued or running would free the number for another `open`, and the call
    would then write into that file: when the request is cancelled meanwhile, the close
    waits for the call to finish."""

    def __init__(self, backend: FilesystemBackend, fd: int) -> None:
        self.fd = fd
        self._backend = backend
        self._last: asyncio.Future[Any] | None = None

    def run(self, call: Callable[..., _T], *args: Any) -> Awaitable[_T]:
        future = self._backend._run(call, *args)
        self._last = future
        return asyncio.shield(future)

    def close(self, truncate_to: int | None = None) -> None:
        """Close the file once no call is running; first cut it to `truncate_to` if given."""
        fd = self.fd

        def finish() -> None:
            if truncate_to is not None:
                _truncate_quiet(fd, truncate_to)
            os.close(fd)

        last = self._last
        if last is None or last.done():
            finish()
        else:
            last.add_done_callback(lambda _: finish())


def _truncate_quiet(fd: int, size: int) -> None:
    """Best effort: bytes beyond `size` are unacknowledged; the upload's next write cuts
    them anyway (fs_parts.prepare)."""
    with contextlib.suppress(OSError):
        os.ftruncate(fd, size)


def _close_locked(locking: asyncio.Future[int | None]) -> None:
    """A lock taken for a request cancelled while it waited: let it go."""
    if not locking.cancelled() and locking.exception() is None:
        fd = locking.result()
        if fd is not None:
            os.close(fd)


class _Workers:
    """Threads fed through one `queue.SimpleQueue`, each call answered with one
    `call_soon_threadsafe`: a hand-off costs a queue put and an asyncio future, where
    `run_in_executor` builds a concurrent future, a work item and a condition, and chains the
    two futures with callbacks (~16 % of a manifest PUT's event-loop time, five hops a PUT).
    Threads start when no idle one is left, up to `size`, and stay (daemon threads)."""

    def __init__(self, size: int) -> None:
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._size = size
        self._threads = 0
        self._idle = 0
        self._lock = threading.Lock()

    def submit(self, call: Callable[..., _T], args: tuple[Any, ...]) -> asyncio.Future[_T]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[_T] = loop.create_future()
        self._queue.put((loop, future, call, args))
        with self._lock:
            if self._idle:
                self._idle -= 1  # an idle thread takes it
                return future
            if self._threads >= self._size:
                return future  # all busy: the first to finish takes it
            self._threads += 1
        threading.Thread(target=self._work, name="pyreg-fs", daemon=True).start()
        return future

    def stop(self) -> None:
        with self._lock:
            threads, self._size = self._threads, 0
        for _ in range(threads):
            self._queue.put(None)

    def _work(self) -> None:
        while (job := self._queue.get()) is not None:
            self._do(job)
            # An idle thread holds nothing of its last call: not its object (a file reader and
            # its descriptor), arguments or result (up to a 1 MiB piece per thread).
            del job

    def _do(self, job: _Job) -> None:
        loop, future, call, args = job
        try:
            result, error = call(*args), None
        except BaseException as exc:  # handed to the awaiting coroutine, as executors do
            result, error = None, exc
        try:
            loop.call_soon_threadsafe(_settle, future, result, error)
        except RuntimeError:
            pass  # the loop is closed: nobody awaits the answer
        with self._lock:
            self._idle += 1


_Job = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]", Callable[..., Any], tuple[Any, ...]]


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)


# -- helpers running in worker threads -----------------------------------------------------


def _in_dir(target: Path, create: Callable[[], _T], source: Path | None = None) -> _T:
    """Make `target`'s directory, then run `create` (which makes `target` in it, from
    `source` when it moves a file).

    A concurrent delete prunes empty directories, so the fresh directory may vanish before
    `create` runs (FileNotFoundError) or while mkdir looks at it (FileExistsError): retry then.
    Only a missing `source` is final. (Asking whether the directory exists afterwards is no
    test: a neighbour may have made it again in between.)
    """
    for attempt in range(50):
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            return create()
        except (FileNotFoundError, FileExistsError):
            if attempt == 49 or (source is not None and not source.exists()):
                raise
    raise AssertionError("unreachable")


def _is_file(path: str) -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (FileNotFoundError, NotADirectoryError):
        return False


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _pwrite_all(fd: int, data: bytes | bytearray, offset: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n


def _write_piece(
    write: Callable[[bytes | bytearray], object], data: bytes | bytearray, wb: Writeback, end: int
) -> None:
    """One hop: write a piece of a stream, then report it to the background flush."""
    write(data)
    wb.written(end)


def _pwrite_piece(fd: int, data: bytes | bytearray, offset: int, wb: Writeback) -> None:
    _pwrite_all(fd, data, offset)
    wb.written(offset + len(data))


def _create_empty(target: str) -> bool:
    """Create `target` empty where nothing is (False: something is there, or its directory
    vanished meanwhile: the caller takes the temp-file path)."""
    try:
        fd = _new_file(target)
    except (FileExistsError, FileNotFoundError):
        return False
    os.close(fd)
    return True


def _new_file(path: str) -> int:
    """Create `path` exclusively, making its directory when missing (`_in_dir`'s retries for
    a directory a concurrent delete prunes, but without a mkdir when it already exists)."""
    for attempt in range(50):
        try:
            return os.open(path, _NEW_FILE, 0o644)
        except FileNotFoundError:
            if attempt == 49:
                raise
            try:
                os.makedirs(path.rpartition("/")[0], exist_ok=True)
            except (FileExistsError, FileNotFoundError):
                pass  # a parent pruned while makedirs worked: try again
    raise AssertionError("unreachable")


def _refresh_empty(target: str | Path) -> bool:
    """Put of empty data over an existing empty object (a blob's in-use mark, refreshed on
    every push): the same end state as a rewrite is a new mtime, so set just that."""
    try:
        st = os.stat(target)
        if not stat.S_ISREG(st.st_mode) or st.st_size != 0:
            return False
        os.utime(target)
    except (FileNotFoundError, NotADirectoryError):
        return False  # gone meanwhile (a delete): write it anew
    return True


def _finish_write(
    f: BinaryIO, last: bytes | bytearray, durable: bool = True, wb: Writeback | None = None
) -> None:
    if last:
        f.write(last)
    f.flush()
    if wb is not None:
        wb.finish()  # a background flush's error is this write's
    if durable:
        os.fsync(f.fileno())


def _create_session(directory: Path, target: str) -> None:
    directory.mkdir(parents=True)
    with open(directory / "target", "w") as f:
        f.write(target)


def _replace_durably(src: Path, dst: Path, durable: bool = True) -> None:
    os.replace(src, dst)
    if durable:
        _fsync_dir(dst.parent)


def _read_file(path: str | Path) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _older(path: Path, cutoff: float) -> bool:
    """Whether `path` was last modified before `cutoff` (a vanished path counts as old)."""
    try:
        return os.stat(path).st_mtime < cutoff
    except FileNotFoundError:
        return True


def _hidden(name: str, at_root: bool) -> bool:
    return name.startswith(_TMP_PREFIX) or (at_root and name == _MULTIPART_DIR)


def _visible_children(directory: Path, at_root: bool) -> list[str]:
    # listdir and sort, no Python code per name (a DirEntry and a test per name made a
    # 1000-tag listing cost ~1.3 ms of GIL-held time): the hidden entries are found by
    # bisection, as names sharing a prefix sit together in sorted order
    names = os.listdir(directory)
    names.sort()
    _drop_range(names, _TMP_PREFIX, _TMP_PREFIX_END)
    if at_root:
        _drop_range(names, _MULTIPART_DIR, _MULTIPART_DIR + "\0")
    return names


def _drop_range(names: list[str], low: str, high: str) -> None:
    """Remove the names in [low, high) from the sorted `names`."""
    first = bisect.bisect_left(names, low)
    if first < len(names) and names[first] < high:
        del names[first : bisect.bisect_left(names, high, first)]


def _page(names: list[str], start_after: str | None, limit: int | None) -> list[str]:
    """A new list of the sorted `names` after `start_after`, at most `limit` of them."""
    first = 0 if start_after is None else bisect.bisect_right(names, start_after)
    return names[first:] if limit is None else names[first : first + limit]


def _sorted_entries(directory: Path, at_root: bool) -> list[tuple[str, bool]]:
    """Children as (name, is_dir), ordered so that full keys come out lexicographically."""
    with os.scandir(directory) as it:
        entries = [
            (e.name, e.is_dir(follow_symlinks=False)) for e in it if not _hidden(e.name, at_root)
        ]
    entries.sort(key=lambda e: e[0] + "/" if e[1] else e[0])
    return entries


def _walk_sync(directory: Path, key: str, root: Path) -> Iterator[str]:
    try:
        entries = _sorted_entries(directory, directory == root)
    except (FileNotFoundError, NotADirectoryError):
        return
    for name, is_dir in entries:
        child_key = f"{key}/{name}" if key else name
        if is_dir:
            yield from _walk_sync(directory / name, child_key, root)
        else:
            yield child_key


def _take(it: Iterator[str], n: int) -> list[str]:
    return list(itertools.islice(it, n))
