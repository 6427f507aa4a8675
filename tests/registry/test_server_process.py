"""The registry as a real `pyreg serve` process: crash recovery and flat memory."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.support.server import RegistryServer, registry_server  # noqa: F401

MiB = 1024 * 1024


def test_upload_survives_kill_9_and_restart(
    registry_server: Callable[..., RegistryServer],  # noqa: F811
    tmp_path: Path,
) -> None:
    server = registry_server(f"file://{tmp_path / 'storage'}")
    data = os.urandom(3 * MiB)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with httpx.Client(base_url=server.url) as client:
        started = client.post("/v2/crash/test/blobs/uploads/")
        assert started.status_code == 202
        location = started.headers["location"]
        first = client.patch(
            location, content=data[: 2 * MiB], headers={"Content-Range": f"0-{2 * MiB - 1}"}
        )
        assert first.status_code == 202
    server.kill()  # SIGKILL: nothing flushed from memory, nothing cleaned up
    server.start()
    with httpx.Client(base_url=server.url) as client:
        status = client.get(location)
        assert status.status_code == 204
        assert status.headers["range"] == f"0-{2 * MiB - 1}"
        rest = client.patch(
            location,
            content=data[2 * MiB :],
            headers={"Content-Range": f"{2 * MiB}-{len(data) - 1}"},
        )
        assert rest.status_code == 202
        done = client.put(f"{location}?digest={digest}")
        assert done.status_code == 201, done.text
        pulled = client.get(f"/v2/crash/test/blobs/{digest}")
        assert pulled.status_code == 200
        assert pulled.content == data


def test_a_patch_cut_by_kill_9_resumes_at_the_acknowledged_offset(
    registry_server: Callable[..., RegistryServer],  # noqa: F811
    tmp_path: Path,
) -> None:
    """SIGKILL while a PATCH's body streams in: the PATCH acknowledged before stays whole, the
    cut one's bytes (already in the upload's data file) are no part of the upload, and the
    retry after the restart rewrites them from the acknowledged offset."""
    storage = tmp_path / "storage"
    server = registry_server(f"file://{storage}")
    data = os.urandom(9 * MiB + 123)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    first_end = 2 * MiB
    cut = threading.Event()

    def cut_body() -> Iterator[bytes]:
        yield b"\xee" * (5 * MiB)  # not the blob's bytes: they must not survive
        cut.wait(60)
        yield b"\xee" * (len(data) - first_end - 5 * MiB)  # into a dead connection

    with httpx.Client(base_url=server.url, timeout=60) as client:
        location = client.post("/v2/crash/cut/blobs/uploads/").headers["location"]
        first = client.patch(
            location, content=data[:first_end], headers={"Content-Range": f"0-{first_end - 1}"}
        )
        assert first.status_code == 202

        def send() -> None:
            headers = {
                "Content-Range": f"{first_end}-{len(data) - 1}",
                "Content-Length": str(len(data) - first_end),
            }
            try:
                client.patch(location, content=cut_body(), headers=headers)
            except httpx.HTTPError:
                pass  # the server died under it

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            sizes = [f.stat().st_size for f in (storage / ".multipart").glob("*/data")]
            if sizes and max(sizes) > first_end:
                break
            time.sleep(0.02)
        assert sizes and max(sizes) > first_end, "the cut PATCH's bytes never reached storage"
        server.kill()
        cut.set()
        sender.join(30)
    server.start()
    with httpx.Client(base_url=server.url, timeout=60) as client:
        status = client.get(location)
        assert status.status_code == 204
        assert status.headers["range"] == f"0-{first_end - 1}"
        rest = client.patch(
            location,
            content=data[first_end:],
            headers={"Content-Range": f"{first_end}-{len(data) - 1}"},
        )
        assert rest.status_code == 202, rest.text
        done = client.put(f"{location}?digest={digest}")
        assert done.status_code == 201, done.text
        pulled = client.get(f"/v2/crash/cut/blobs/{digest}")
        assert pulled.status_code == 200
        assert pulled.content == data


class _RssSampler:
    """Polls a process's resident set size in a thread; `peak` is the largest seen."""

    def __init__(self, pid: int) -> None:
        self._process = psutil.Process(pid)
        self.peak = self._process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._process.memory_info().rss)
            time.sleep(0.02)

    def __enter__(self) -> _RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _blob_pieces(total: int, piece: bytes) -> Iterator[bytes]:
    for _ in range(total // len(piece)):
        yield piece


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["monolithic", "patch"])
def test_large_blob_keeps_server_memory_flat(
    registry_server: Callable[..., RegistryServer],  # noqa: F811
    tmp_path: Path,
    mode: str,
) -> None:
    size = 256 * MiB
    piece = os.urandom(MiB)
    hasher = hashlib.sha256()
    for chunk in _blob_pieces(size, piece):
        hasher.update(chunk)
    digest = f"sha256:{hasher.hexdigest()}"
    server = registry_server(f"file://{tmp_path / 'storage'}")
    timeout = httpx.Timeout(120.0)
    with httpx.Client(base_url=server.url, timeout=timeout) as client:
        client.get("/v2/_catalog")  # warm up imports and the event loop before the baseline
        baseline = psutil.Process(server.pid).memory_info().rss
        with _RssSampler(server.pid) as sampler:
            if mode == "monolithic":
                pushed = client.post(
                    f"/v2/big/blobs/uploads/?digest={digest}", content=_blob_pieces(size, piece)
                )
            else:
                location = client.post("/v2/big/blobs/uploads/").headers["location"]
                patched = client.patch(location, content=_blob_pieces(size, piece))
                assert patched.status_code == 202
                pushed = client.put(f"{patched.headers['location']}?digest={digest}")
            assert pushed.status_code == 201, pushed.text
            pulled = hashlib.sha256()
            with client.stream("GET", f"/v2/big/blobs/{digest}") as response:
                assert response.status_code == 200
                for chunk in response.iter_bytes():
                    pulled.update(chunk)
        assert f"sha256:{pulled.hexdigest()}" == digest
    growth = sampler.peak - baseline
    assert growth < 100 * MiB, f"server RSS grew by {growth / MiB:.0f} MiB"
