"""Start the registries under test as real processes on loopback ports, and stop them.

- pyreg: `python -m pyreg serve --host 127.0.0.1 --port P --storage file://DIR` (uvicorn).
- reference: `docker-registry serve CONFIG` (CNCF distribution, Debian's 2.8.2), filesystem
  storage in a temp dir, access log off so that logging costs the same as pyreg's.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml

REFERENCE_BINARY = "docker-registry"


class PeerUnavailable(RuntimeError):
    """A registry or client that cannot run here; the bench skips it with this message."""


@dataclass
class RunningRegistry:
    name: str  # "pyreg" or "reference"
    process: subprocess.Popen[bytes]
    host: str  # "127.0.0.1:PORT"
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _wait_ready(registry: RunningRegistry, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if registry.process.poll() is not None:
            raise PeerUnavailable(
                f"{registry.name} exited with {registry.process.returncode}:\n"
                f"{log_tail(registry.log_path)}"
            )
        try:
            response = httpx.get(f"{registry.url}/v2/", timeout=1.0)
            if response.status_code in (200, 401):
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    registry.stop()
    raise PeerUnavailable(f"{registry.name} did not answer /v2/ within {timeout:.0f}s")


def _spawn(
    name: str,
    argv: list[str],
    workdir: Path,
    host: str,
    env: dict[str, str | None] | None = None,
) -> RunningRegistry:
    """`env`: changes to this process's environment (None removes a variable)."""
    log_path = workdir / f"{name}.log"
    environ = None
    if env is not None:
        environ = {k: v for k, v in {**os.environ, **env}.items() if v is not None}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, cwd=workdir, env=environ
        )
    return RunningRegistry(name, process, host, log_path)


@dataclass(frozen=True)
class S3Target:
    """An S3 endpoint both registries store into (each in a bucket of its own)."""

    endpoint: str
    access_key: str
    secret_key: str
    region: str = "us-east-1"


def start_pyreg(
    workdir: Path,
    extra_args: list[str],
    timeout: float = 30.0,
    storage_url: str | None = None,
    name: str = "pyreg",
    redis_url: str = "",
) -> RunningRegistry:
    storage = workdir / f"{name}-storage"
    storage.mkdir(parents=True, exist_ok=True)
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "pyreg",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--storage",
        storage_url or f"file://{storage}",
        *extra_args,
    ]
    env: dict[str, str | None] | None = {"PYREG_REDIS": redis_url} if redis_url else None
    registry = _spawn(name, argv, workdir, f"127.0.0.1:{port}", env)
    _wait_ready(registry, timeout)
    return registry


def start_reference(
    workdir: Path, timeout: float = 30.0, s3: tuple[S3Target, str] | None = None
) -> RunningRegistry:
    """The reference registry on filesystem storage, or with `s3=(target, bucket)` on its
    `s3` storage driver pointed at that endpoint."""
    binary = shutil.which(REFERENCE_BINARY)
    if binary is None:
        raise PeerUnavailable(
            f"{REFERENCE_BINARY} not found (Debian: apt-get install docker-registry)"
        )
    storage = workdir / "reference-storage"
    storage.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        # The packaged default config's cache: what operators actually run.
        "storage": {
            "filesystem": {"rootdirectory": str(storage)},
            "cache": {"blobdescriptor": "inmemory"},
            "delete": {"enabled": True},
        },
        "http": {"addr": f"127.0.0.1:{port}"},
    }
    if s3 is not None:
        target, bucket = s3
        del config["storage"]["filesystem"]  # type: ignore[attr-defined]
        config["storage"]["s3"] = {  # type: ignore[index]
            "accesskey": target.access_key,
            "secretkey": target.secret_key,
            "region": target.region,
            "regionendpoint": target.endpoint,
            "bucket": bucket,
            "rootdirectory": "/reference",
            "secure": False,
            "v4auth": True,
            "chunksize": 16 * 1024 * 1024,
        }
        # Blob GETs served by the registry itself, as pyreg's are by default (no 307 to S3).
        config["storage"]["redirect"] = {"disable": True}  # type: ignore[index]
    config_path = workdir / "reference-config.yml"
    config_path.write_text(yaml.safe_dump(config))
    # The Go AWS SDK (2.8.2's s3 driver) panics on AWS_CA_BUNDLE with its custom transport.
    env: dict[str, str | None] | None = {"AWS_CA_BUNDLE": None} if s3 is not None else None
    registry = _spawn(
        "reference", [binary, "serve", str(config_path)], workdir, f"127.0.0.1:{port}", env
    )
    _wait_ready(registry, timeout)
    return registry
