"""Storage outages are the server's trouble: 503 with Retry-After and the spec's JSON (507
"storage full" for a full disk), logged with the cause; never a 400 the client would not retry,
never a bare 500.

S3: the backend talks to moto through a TCP forwarder this test closes (connections reset,
new ones refused) in the middle of an upload. Filesystem: a real 1 MiB tmpfs (ENOSPC), and
the same tmpfs remounted read-only (EROFS) for a failure that is not "full"; skipped where
mounting is not allowed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from registry.app import create_app
from registry.settings import Settings
from storage_backends.base import StorageBackend, StorageError
from storage_backends.filesystem import FilesystemBackend
from storage_backends.memory import MemoryBackend
from storage_backends.s3 import S3Backend
from tests.registry.helpers import digest_of
from tests.support.moto_server import REGION, create_bucket


class Forwarder:
    """A TCP forwarder to `port` on loopback that can be pulled out: `stop()` closes the
    listener and every connection through it."""

    def __init__(self, port: int) -> None:
        self.upstream_port = port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        self._writers |= {writer, up_writer}

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))


@contextlib.asynccontextmanager
async def _client(backend: StorageBackend) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(Settings(upload_purge_interval=0), backend=backend)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://registry") as c:
            yield c


def _assert_outage(response: httpx.Response, status: int, code: str, words: str) -> None:
    assert response.status_code == status, response.text
    assert int(response.headers["retry-after"]) > 0
    error = response.json()["errors"][0]
    assert error["code"] == code
    assert words in error["message"]


async def test_s3_gone_during_patch_is_503_and_logged(
    moto_endpoint: str, caplog: pytest.LogCaptureFixture
) -> None:
    port = int(moto_endpoint.rsplit(":", 1)[1])
    forwarder = Forwarder(port)
    await forwarder.start()
    backend = S3Backend(
        create_bucket(moto_endpoint),
        "registry",
        endpoint_url=f"http://127.0.0.1:{forwarder.port}",
        region=REGION,
        max_attempts=2,
        connect_timeout=2,
    )
    async with _client(backend) as client:
        started = await client.post("/v2/a/blobs/uploads/")
        assert started.status_code == 202
        with caplog.at_level(logging.ERROR, logger="registry"):
            # More than the 16 MiB coalescing buffer, in pieces; the storage goes away once
            # the session is loaded and the body is arriving (this used to be the client's
            # 400 SIZE_INVALID, after ~20 s of retries).
            size = 20 * 1024 * 1024

            async def pieces() -> AsyncIterator[bytes]:
                yield b"x" * (1024 * 1024)
                await forwarder.stop()
                for _ in range(size // (1024 * 1024) - 1):
                    yield b"x" * (1024 * 1024)

            response = await client.patch(
                started.headers["location"],
                content=pieces(),
                headers={"Content-Length": str(size)},
            )
            _assert_outage(response, 503, "UNAVAILABLE", "s3 storage")
            # a pull while the storage is down: the same answer
            missing = digest_of(b"nothing")
            pull = await client.get(f"/v2/a/blobs/{missing}")
            _assert_outage(pull, 503, "UNAVAILABLE", "s3 storage")
        logged = [r for r in caplog.records if "storage failed" in r.getMessage()]
        assert logged and "PATCH" in logged[0].getMessage()
        assert "Connect" in logged[0].getMessage() or "connect" in logged[0].getMessage()


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs mounted for this test (needs root and a kernel that lets us mount)."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {result.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


async def test_full_disk_is_507_storage_full(tmpfs: Path) -> None:
    data = b"y" * (2 * 1024 * 1024)  # twice the disk
    async with _client(FilesystemBackend(tmpfs / "registry")) as client:
        url = f"/v2/a/blobs/uploads/?digest={digest_of(data)}"
        monolithic = await client.post(url, content=data)
        _assert_outage(monolithic, 507, "UNKNOWN", "storage full")
        started = await client.post("/v2/a/blobs/uploads/")
        assert started.status_code == 202
        chunk = await client.patch(started.headers["location"], content=data)
        _assert_outage(chunk, 507, "UNKNOWN", "storage full")
        # what fits still works once the space is back (the failed writes left nothing)
        small = b"small"
        fits = await client.post(f"/v2/a/blobs/uploads/?digest={digest_of(small)}", content=small)
        assert fits.status_code == 201, fits.text


async def test_read_only_disk_is_503(tmpfs: Path) -> None:
    async with _client(FilesystemBackend(tmpfs / "registry")) as client:
        remount = ["mount", "-o", "remount,ro", str(tmpfs)]
        await asyncio.to_thread(subprocess.run, remount, check=True)
        response = await client.post("/v2/a/blobs/uploads/")
        _assert_outage(response, 503, "UNAVAILABLE", "filesystem storage")
        assert str(tmpfs) not in response.text  # where the storage lives is for the log only


class _RefusingBackend(MemoryBackend):
    """Storage that refuses one kind of write outright (as S3 does with AccessDenied)."""

    async def put(self, path: str, data: bytes) -> None:
        if path.startswith("_uploads/"):
            raise StorageError(f"s3 {path}: AccessDenied")
        await super().put(path, data)


async def test_any_other_storage_error_is_503_not_500() -> None:
    async with _client(_RefusingBackend()) as client:
        response = await client.post("/v2/a/blobs/uploads/")
        _assert_outage(response, 503, "UNAVAILABLE", "storage")
        assert "AccessDenied" not in response.text  # the cause goes to the log only
