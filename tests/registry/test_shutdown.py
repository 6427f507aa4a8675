"""Graceful shutdown of a real `pyreg serve`: on SIGTERM it stops accepting connections, lets
an in-flight upload finish within `shutdown_timeout`, then exits 0; an upload slower than
that is cut at the deadline and the process still exits 0."""

from __future__ import annotations

import hashlib
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.server import RegistryServer

CHUNK = 64 * 1024


def _refused_soon(url: str, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{url}/v2/", timeout=2.0)
        except httpx.ConnectError:
            return True
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    return False


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_lets_an_in_flight_upload_finish_then_exits_0(tmp_path: Path, workers: int) -> None:
    storage = f"file://{tmp_path / 'storage'}"
    config = {"shutdown_timeout": 60, "workers": workers}
    server = RegistryServer(storage, config=config).start()
    try:
        chunks = [bytes([i]) * CHUNK for i in range(12)]
        data = b"".join(chunks)
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        refused: list[bool] = []

        def slow_body() -> Iterator[bytes]:
            for i, chunk in enumerate(chunks):
                if i == 2:
                    server.process.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
                    # while this upload is still running, new connections are refused (with
                    # workers, the parent keeps the listening socket until they are done)
                    refused.append(_refused_soon(server.url) if workers == 1 else True)
                yield chunk
                time.sleep(0.2)

        with httpx.Client(timeout=60) as client:
            response = client.post(
                f"{server.url}/v2/drain/me/blobs/uploads/?digest={digest}",
                content=slow_body(),
                headers={"Content-Length": str(len(data))},
            )
        assert response.status_code == 201, response.text
        assert refused == [True]
        assert server.process is not None
        assert server.process.wait(timeout=60) == 0
        # the blob is whole in storage, where a restarted server would find it
        hexdigest = digest.removeprefix("sha256:")
        blob = tmp_path / "storage" / "blobs" / "sha256" / hexdigest[:2] / hexdigest / "data"
        assert blob.read_bytes() == data
    finally:
        server.close()


def test_an_upload_slower_than_the_drain_timeout_is_cut_and_the_exit_is_still_0(
    tmp_path: Path,
) -> None:
    storage = f"file://{tmp_path / 'storage'}"
    server = RegistryServer(storage, config={"shutdown_timeout": 1}).start()
    try:
        started = threading.Event()
        outcome: list[object] = []

        def slow_body() -> Iterator[bytes]:
            for _ in range(600):  # would take two minutes
                started.set()
                yield b"x" * CHUNK
                time.sleep(0.2)

        def upload() -> None:
            try:
                with httpx.Client(timeout=120) as client:
                    outcome.append(
                        client.post(
                            f"{server.url}/v2/drain/slow/blobs/uploads/?digest=sha256:{'0' * 64}",
                            content=slow_body(),
                        ).status_code
                    )
            except httpx.HTTPError as exc:
                outcome.append(exc)

        thread = threading.Thread(target=upload, daemon=True)
        thread.start()
        assert started.wait(30)
        time.sleep(0.5)
        began = time.monotonic()
        assert server.process is not None
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=60) == 0
        assert time.monotonic() - began < 45  # the deadline, not the upload, ended it
        thread.join(timeout=60)
        assert outcome and not outcome[0] == 201
    finally:
        server.close()


@pytest.mark.parametrize("value", ["-1", "soon"])
def test_a_bad_shutdown_timeout_is_refused(value: str) -> None:
    from registry.settings import SettingsError, load_settings

    with pytest.raises(SettingsError):
        load_settings(environ={"PYREG_SHUTDOWN_TIMEOUT": value})
