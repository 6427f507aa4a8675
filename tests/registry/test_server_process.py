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
