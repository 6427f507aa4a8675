"""Start the reference registry (`docker-registry serve`, CNCF distribution 2.8.2) for tests.

It listens on an ephemeral loopback port with filesystem storage in a temp dir and deletes
enabled. Optionally with htpasswd (Basic) or token (Bearer) auth. Its access log lines
(`"METHOD URI HTTP/1.1" STATUS SIZE`) are parsed so tests can count what it received.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import bcrypt
import httpx
import pytest

BINARY = "docker-registry"
_ACCESS_RE = re.compile(r'"(?P<method>[A-Z]+) (?P<uri>\S+) HTTP/[0-9.]+" (?P<status>\d{3}) ')


@dataclass(frozen=True)
class LoggedRequest:
    method: str
    uri: str
    status: int


@dataclass(frozen=True)
class TokenAuthConfig:
    realm: str
    service: str
    issuer: str
    rootcertbundle: Path


@dataclass
class DockerRegistry:
    process: subprocess.Popen[bytes]
    host: str  # "127.0.0.1:PORT", what goes in a reference
    log_path: Path
    root: Path
    users: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def requests(self) -> list[LoggedRequest]:
        text = self.log_path.read_text(errors="replace")
        return [
            LoggedRequest(m["method"], m["uri"], int(m["status"]))
            for m in _ACCESS_RE.finditer(text)
        ]

    def mark(self) -> int:
        """How many requests were logged so far; pass to `requests_since`."""
        return len(self.requests())

    def requests_since(self, mark: int) -> list[LoggedRequest]:
        # the access log is written after the response: give it a moment to flush
        time.sleep(0.2)
        return self.requests()[mark:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_htpasswd(path: Path, users: dict[str, str]) -> None:
    lines = [
        f"{u}:{bcrypt.hashpw(p.encode(), bcrypt.gensalt(rounds=4)).decode()}"
        for u, p in users.items()
    ]
    path.write_text("\n".join(lines) + "\n")


def start_registry(
    workdir: Path,
    *,
    users: dict[str, str] | None = None,
    token: TokenAuthConfig | None = None,
    extra_config: str = "",
) -> DockerRegistry:
    """`extra_config`: more top-level YAML for config.yml (e.g. a `validation:` section)."""
    binary = shutil.which(BINARY)
    if binary is None:
        pytest.skip(f"{BINARY} is not installed (Debian package docker-registry)")
    workdir.mkdir(parents=True, exist_ok=True)
    data = workdir / "data"
    data.mkdir(exist_ok=True)
    port = free_port()
    auth = ""
    if users:
        write_htpasswd(workdir / "htpasswd", users)
        auth = f"""auth:
  htpasswd:
    realm: pyreg-test
    path: {workdir / "htpasswd"}
"""
    elif token is not None:
        auth = f"""auth:
  token:
    realm: {token.realm}
    service: {token.service}
    issuer: {token.issuer}
    rootcertbundle: {token.rootcertbundle}
"""
    config = workdir / "config.yml"
    config.write_text(
        f"""version: 0.1
log:
  level: info
  formatter: text
storage:
  filesystem:
    rootdirectory: {data}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:{port}
{auth}{extra_config}"""
    )
    log_path = workdir / "registry.log"
    log = log_path.open("wb")
    process = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=log)
    log.close()
    registry = DockerRegistry(process, f"127.0.0.1:{port}", log_path, data, dict(users or {}))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"docker-registry exited: {log_path.read_text()}")
        try:
            httpx.get(f"{registry.url}/v2/", timeout=0.5)
            return registry
        except httpx.TransportError:
            time.sleep(0.05)
    registry.stop()
    raise RuntimeError(f"docker-registry did not start: {log_path.read_text()}")


@pytest.fixture
def docker_registry(tmp_path: Path) -> Iterator[DockerRegistry]:
    registry = start_registry(tmp_path / "docker-registry")
    try:
        yield registry
    finally:
        registry.stop()
