"""Blob GETs sent by the kernel (registry/zerocopy.py), against a real `pyreg serve`."""

from __future__ import annotations

import hashlib
import http.client
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from tests.support.server import RegistryServer, registry_server  # noqa: F401

MiB = 1024 * 1024
REPO = "zc/blob"


def push(port: int, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("POST", f"/v2/{REPO}/blobs/uploads/?digest={digest}", body=data)
    response = conn.getresponse()
    response.read()
    assert response.status == 201, response.status
    conn.close()
    return digest


def get(
    conn: http.client.HTTPConnection, path: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    conn.request("GET", path, headers=headers or {})
    response = conn.getresponse()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()


def storage_files_open(pid: int, root: Path) -> int:
    return sum(1 for f in psutil.Process(pid).open_files() if f.path.startswith(str(root)))


@pytest.fixture
def served(
    registry_server: Callable[..., RegistryServer],  # noqa: F811
    tmp_path: Path,
) -> tuple[RegistryServer, Path]:
    root = tmp_path / "storage"
    return registry_server(f"file://{root}", {"metrics": {"on_main_port": True}}), root


def test_bodies_and_ranges_on_one_kept_alive_connection(
    served: tuple[RegistryServer, Path],
) -> None:
    server, root = served
    data = os.urandom(5 * MiB + 7)
    small = os.urandom(1000)  # below the zero-copy size: streamed, on the same connection
    digest, small_digest = push(server.port, data), push(server.port, small)
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    blob = f"/v2/{REPO}/blobs/{digest}"
    for _ in range(2):
        status, headers, body = get(conn, blob)
        assert (status, headers["content-length"], body == data) == (200, str(len(data)), True)
        assert headers["docker-content-digest"] == digest
        status, headers, body = get(conn, blob, {"Range": "bytes=100-3000000"})
        assert (status, body) == (206, data[100:3000001])
        assert headers["content-range"] == f"bytes 100-3000000/{len(data)}"
        status, _, body = get(conn, blob, {"Range": "bytes=-10"})
        assert (status, body) == (206, data[-10:])
        assert get(conn, f"/v2/{REPO}/blobs/{small_digest}")[2] == small
    status, _, body = get(conn, f"/v2/{REPO}/blobs/sha256:{'0' * 64}")
    assert status == 404 and b"BLOB_UNKNOWN" in body
    status, _, body = get(conn, f"/v2/other/blobs/{digest}")  # not linked there
    assert status == 404 and b"BLOB_UNKNOWN" in body
    # the bytes the kernel sent are counted as the response's
    _, _, metrics = get(conn, "/metrics")
    sent = [
        line
        for line in metrics.decode().splitlines()
        if line.startswith("pyreg_http_sent_bytes_total") and "blobs/{digest}" in line
    ]
    assert sent and float(sent[0].split()[-1]) >= 2 * len(data) + 2 * 2999901
    conn.close()
    assert storage_files_open(server.pid, root) == 0


def test_slow_readers_hold_no_buffers_in_the_server(served: tuple[RegistryServer, Path]) -> None:
    """32 clients that read the headers and then stop: a stream through Python would hold
    the piece the transport could not send plus the next one read (2 MiB or more each, over
    64 MiB for all); handed to the kernel, what waits is in the socket buffers."""
    server, _ = served
    digest = push(server.port, os.urandom(16 * MiB))
    process = psutil.Process(server.pid)
    warm = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    assert get(warm, f"/v2/{REPO}/blobs/{digest}")[0] == 200
    warm.close()
    baseline = process.memory_info().rss
    stalled: list[socket.socket] = []
    request = f"GET /v2/{REPO}/blobs/{digest} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    try:
        for _ in range(32):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=60)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
            sock.sendall(request)
            assert sock.recv(12) == b"HTTP/1.1 200"
            stalled.append(sock)
        peak = baseline
        for _ in range(30):  # let every stream fill its socket and wait on the client
            time.sleep(0.1)
            peak = max(peak, process.memory_info().rss)
    finally:
        for sock in stalled:
            sock.close()
    growth = peak - baseline
    assert growth < 24 * MiB, f"server RSS grew by {growth / MiB:.0f} MiB for 32 stalled pulls"


def test_clients_that_leave_mid_body_leave_no_open_files(
    served: tuple[RegistryServer, Path],
) -> None:
    server, root = served
    data = os.urandom(16 * MiB)
    digest = push(server.port, data)
    request = f"GET /v2/{REPO}/blobs/{digest} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    for _ in range(10):
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=60)
        sock.sendall(request)
        assert sock.recv(65536)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.close()  # a reset, mid-body
    for _ in range(100):
        if storage_files_open(server.pid, root) == 0:
            break
        time.sleep(0.05)
    assert storage_files_open(server.pid, root) == 0
    # and the server goes on serving
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    assert get(conn, f"/v2/{REPO}/blobs/{digest}")[2] == data
    conn.close()
