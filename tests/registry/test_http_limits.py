"""Request heads are bounded on a real `pyreg serve` (raw sockets, uvicorn with the
registry's httptools protocol): 431 for headers past the cap, without the server buffering
them; 414 for a URL past its cap; 408 and a close for a head that does not arrive in time;
a silent or idle connection is closed."""

from __future__ import annotations

import hashlib
import json
import socket
import time
from collections.abc import Iterator

import psutil
import pytest

from tests.support.server import RegistryServer

MiB = 1024 * 1024
HEADER_TIMEOUT = 1.5
KEEP_ALIVE = 1


@pytest.fixture(scope="module")
def server() -> Iterator[RegistryServer]:
    """One server for the module: every test leaves it as it found it (connections closed)."""
    config = {"http": {"header_timeout": HEADER_TIMEOUT, "keep_alive": KEEP_ALIVE}}
    with RegistryServer("memory://", config) as started:
        yield started


def _connect(server: RegistryServer) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    return sock


def _read_until_closed(sock: socket.socket) -> bytes:
    out = b""
    try:
        while piece := sock.recv(65536):
            out += piece
    except ConnectionResetError:
        pass
    return out


def _status_and_error(raw: bytes) -> tuple[int, str]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body)["errors"][0]["code"]


def _send_all_you_can(sock: socket.socket, data: bytes, total: int) -> int:
    """Send `data` repeatedly up to `total` bytes or until the server hangs up."""
    sent = 0
    try:
        while sent < total:
            sock.sendall(data)
            sent += len(data)
    except (BrokenPipeError, ConnectionResetError):
        pass
    return sent


def test_a_huge_header_is_431_and_not_buffered(server: RegistryServer) -> None:
    before = psutil.Process(server.pid).memory_info().rss
    with _connect(server) as sock:
        sock.sendall(b"GET /v2/ HTTP/1.1\r\nHost: registry\r\nX-Big: ")
        _send_all_you_can(sock, b"a" * 65536, 32 * MiB)
        # the connection is still open on our side: whatever the server kept, it keeps now
        grown = psutil.Process(server.pid).memory_info().rss - before
        status, code = _status_and_error(_read_until_closed(sock))
    assert (status, code) == (431, "UNSUPPORTED")
    assert grown < 8 * MiB, f"server grew by {grown / MiB:.1f} MiB for one header"


def test_a_long_url_is_414(server: RegistryServer) -> None:
    with _connect(server) as sock:
        sock.sendall(b"GET /v2/" + b"a" * 20000 + b" HTTP/1.1\r\nHost: registry\r\n\r\n")
        status, code = _status_and_error(_read_until_closed(sock))
    assert (status, code) == (414, "UNSUPPORTED")


def test_heads_within_the_limits_are_served(server: RegistryServer) -> None:
    with _connect(server) as sock:
        filler = b"X-Filler: " + b"b" * 30000 + b"\r\n"
        request = b"GET /v2/" + b" HTTP/1.1\r\nHost: registry\r\n" + filler
        sock.sendall(request + b"Connection: close\r\n\r\n")
        raw = _read_until_closed(sock)
    assert raw.startswith(b"HTTP/1.1 200"), raw[:200]


def test_a_connection_that_says_nothing_is_closed(server: RegistryServer) -> None:
    with _connect(server) as sock:
        started = time.monotonic()
        assert _read_until_closed(sock) == b""  # closed by the server, not our 30 s timeout
        assert time.monotonic() - started < 25


def test_half_a_head_gets_408_and_a_close(server: RegistryServer) -> None:
    with _connect(server) as sock:
        sock.sendall(b"GET /v2/ HTTP/1.1\r\nHost: registry\r\nX-Slow: ")
        status, code = _status_and_error(_read_until_closed(sock))
    assert (status, code) == (408, "UNSUPPORTED")


def test_an_idle_kept_alive_connection_is_closed(server: RegistryServer) -> None:
    with _connect(server) as sock:
        sock.sendall(b"GET /v2/ HTTP/1.1\r\nHost: registry\r\n\r\n")
        raw = _read_until_closed(sock)  # keep-alive: the server closes it once idle
    assert raw.startswith(b"HTTP/1.1 200") and raw.endswith(b"{}")
    assert raw.count(b"HTTP/1.1") == 1


def test_a_slow_handler_is_not_cut_by_the_head_deadline(server: RegistryServer) -> None:
    """The deadline covers the head only: a request whose body trickles in for longer than
    the header timeout is still answered."""
    digest = "sha256:" + hashlib.sha256(b"abcd").hexdigest()
    with _connect(server) as sock:
        sock.sendall(
            f"POST /v2/a/blobs/uploads/?digest={digest} HTTP/1.1\r\n".encode()
            + b"Host: registry\r\nContent-Length: 4\r\n\r\n"
        )
        for piece in (b"ab", b"cd"):
            time.sleep(HEADER_TIMEOUT)
            sock.sendall(piece)
        sock.settimeout(30)
        head = sock.recv(65536)
    assert head.startswith(b"HTTP/1.1 201"), head[:200]


# -- the body: the parser's bytes reach the app uncopied ----------------------------------


async def test_body_pieces_reach_the_app_as_the_parser_made_them() -> None:
    """uvicorn copies each body piece twice on the event loop (into a bytearray, then into
    bytes for the receive message); the registry's protocol hands the parser's bytes over as
    they are. A real uvicorn protocol on a loopback socket, a client sending 8 MiB: the
    app's messages are the very objects the parser produced (without the change: none is),
    the body arrives whole and in order, and reading still pauses above uvicorn's 64 KiB."""
    import asyncio

    import uvicorn
    from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT
    from uvicorn.server import ServerState

    from registry.http_limits import LimitedHttpToolsProtocol

    parsed: list[bytes] = []
    received: list[bytes] = []
    paused_above: list[int] = []

    class Recording(LimitedHttpToolsProtocol):
        def on_body(self, body: bytes) -> None:
            parsed.append(body)
            super().on_body(body)
            if self.flow.read_paused:
                paused_above.append(len(self.cycle.body))

    async def app(scope: dict[str, object], receive: object, send: object) -> None:
        more = True
        while more:
            message = await receive()  # type: ignore[operator]
            received.append(message["body"])
            more = message["more_body"]
            await asyncio.sleep(0)  # the app does some work per piece
        await send({"type": "http.response.start", "status": 204, "headers": []})  # type: ignore[operator]
        await send({"type": "http.response.body", "body": b""})  # type: ignore[operator]

    config = uvicorn.Config(app, http=Recording, lifespan="off", log_level="warning")
    config.load()
    state = ServerState()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: Recording(config=config, server_state=state, app_state={}), "127.0.0.1", 0
    )
    port = server.sockets[0].getsockname()[1]
    body = hashlib.sha256(b"seed").digest() * (8 * MiB // 32)

    def client() -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            head = f"PUT /x HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n"
            sock.sendall(head.encode() + body)
            return sock.recv(1024)

    try:
        answer = await asyncio.to_thread(client)
    finally:
        server.close()
    assert answer.startswith(b"HTTP/1.1 204")
    assert b"".join(received) == body
    uncopied = sum(len(r) for r in received if any(r is p for p in parsed))
    assert uncopied >= len(body) // 2, (uncopied, len(received), len(parsed))
    assert paused_above and min(paused_above) > HIGH_WATER_LIMIT
