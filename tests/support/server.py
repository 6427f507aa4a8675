"""A real `pyreg serve` process for tests that depend on HTTP behaviour.

    from tests.support.server import RegistryServer, registry_server  # noqa: F401

- `RegistryServer(storage_url, config=None, env=None)`: `start()` launches
  `python -m pyreg serve` on 127.0.0.1 and a free ephemeral port, waits until `GET /v2/`
  answers (any status below 500, so a server with access control counts as up), and
  `stop()` terminates it. `kill()` sends SIGKILL (a crash), `restart()` starts it again on the
  same storage and port. `url` is `http://127.0.0.1:<port>`; `pid` the server process.
  `config` (a dict) is written to a YAML file passed as `--config`; `env` adds environment.
  With `tls.certificate` in `config`, `url` is `https://...`; `probe_options` go to the
  readiness probe's `httpx.get` (default for HTTPS: no certificate check; pass an SSLContext
  with a client certificate as `verify=` when the server requires one).
  `args` are appended to the command line (later flags win: `["--log-level", "info"]`).
  Use it as a context manager, or through the fixture:
- `registry_server` (function scope): a factory `start(storage_url, config=None, env=None)`
  returning a started `RegistryServer`; every server it started is stopped at teardown.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RegistryServer:
    def __init__(
        self,
        storage_url: str,
        config: dict[str, Any] | None = None,
        env: dict[str, str] | None = None,
        startup_timeout: float = 60.0,
        probe_options: dict[str, Any] | None = None,
        args: list[str] | None = None,
    ) -> None:
        self.args = args or []
        self.storage_url = storage_url
        self.config = config
        self.env = env or {}
        self.startup_timeout = startup_timeout
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self._config_dir = tempfile.TemporaryDirectory(prefix="pyreg-server-")
        self.log_path = Path(self._config_dir.name) / "server.log"
        tls = (config or {}).get("tls") or {}
        self.scheme = "https" if tls.get("certificate") else "http"
        default_probe: dict[str, Any] = {"verify": False} if self.scheme == "https" else {}
        self.probe_options = default_probe if probe_options is None else probe_options

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None, "server not started"
        return self.process.pid

    def start(self) -> RegistryServer:
        argv = [sys.executable, "-m", "pyreg", "serve", "--host", "127.0.0.1"]
        argv += ["--port", str(self.port), "--storage", self.storage_url, "--log-level", "warning"]
        if self.config is not None:
            config_path = Path(self._config_dir.name) / "config.yaml"
            config_path.write_text(yaml.safe_dump(self.config))
            argv += ["--config", str(config_path)]
        argv += self.args
        env = {**os.environ, **self.env}
        env.pop("PYREG_SETTINGS_JSON", None)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(argv, cwd=REPO_ROOT, env=env, stdout=log, stderr=log)
        log.close()
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"pyreg serve exited early:\n{self.log()}")
            try:
                probe = httpx.get(f"{self.url}/v2/", timeout=1.0, **self.probe_options)
                if probe.status_code < 500:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"pyreg serve did not answer within {self.startup_timeout}s")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to clean up (a crash)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def restart(self) -> RegistryServer:
        self.stop()
        return self.start()

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()

    def close(self) -> None:
        self.stop()
        self._config_dir.cleanup()

    def __enter__(self) -> RegistryServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@pytest.fixture
def registry_server() -> Iterator[Callable[..., RegistryServer]]:
    started: list[RegistryServer] = []

    def start(
        storage_url: str, config: dict[str, Any] | None = None, env: dict[str, str] | None = None
    ) -> RegistryServer:
        server = RegistryServer(storage_url, config, env).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()
