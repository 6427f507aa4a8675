"""A real redis-server for tests, on 127.0.0.1, no persistence, state in a temp dir.

    from tests.support.redis_server import redis_url  # noqa: F401   (a session fixture)

- `redis_url` (session scope): `redis://127.0.0.1:PORT/0` of this test session's server,
  started on first use; skips with the reason when `redis-server` is not installed.
- `RedisServer(...)`: start/stop/kill one yourself (e.g. to take Redis down mid-test).
"""

from __future__ import annotations

import atexit
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.ports import port_block
from tests.support.processes import stop_process


class RedisServer:
    def __init__(self) -> None:
        self.port = port_block()
        self._dir = Path(tempfile.mkdtemp(prefix="pyreg-redis-"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise FileNotFoundError("redis-server not installed (apt-get install redis-server)")
        argv = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", str(self._dir)]  # fmt: skip
        log = (self._dir / "redis.log").open("ab")
        self.process = subprocess.Popen(argv, stdout=log, stderr=log)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited: {(self._dir / 'redis.log').read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not answer within 30 s")

    def stop(self) -> None:
        stop_process(self.process)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server not installed (apt-get install redis-server)")
    server = RedisServer().start()
    atexit.register(server.close)
    yield server.url
    server.close()


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A server of the test's own, to stop and restart."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server not installed (apt-get install redis-server)")
    server = RedisServer().start()
    yield server
    server.close()
