"""`pyreg serve` as a subprocess: a bad configuration is one line on stderr and exit code 2 (no
traceback); two Ctrl-C in a row end the server without tracebacks."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from tests.support.moto_server import s3_storage_url
from tests.support.server import REPO_ROOT, free_port

pytestmark = pytest.mark.slow


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PYREG_"))}
    return {**env, **extra}


def serve(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "pyreg", "serve", "--port", str(free_port()), *args]
    return subprocess.run(
        argv, cwd=REPO_ROOT, env=env or _env(), capture_output=True, text=True, timeout=120
    )


def assert_one_line_exit_2(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("pyreg serve: ")
    for word in words:
        assert word in lines[0], lines[0]


def test_wrong_storage_url() -> None:
    assert_one_line_exit_2(serve(["--storage", "ftp://example/x"]), "unsupported storage URL")


def test_unwritable_storage_path(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    result = serve(["--storage", f"file://{blocker}/registry"])
    assert_one_line_exit_2(result, "cannot open", "Not a directory")
    # the root exists, but nothing can be written below it (a file where a directory must be;
    # permission bits would not stop root, which runs these tests in CI)
    root = tmp_path / "root"
    root.mkdir()
    (root / "_health").write_text("in the way")
    result = serve(["--storage", f"file://{root}"])
    assert_one_line_exit_2(result, "cannot write", "Not a directory")


def test_s3_without_credentials(tmp_path: Path) -> None:
    # Nothing listens on the endpoint: the missing credentials are found before any connection.
    url = "s3://bucket/prefix?endpoint_url=http://127.0.0.1:9&region=us-east-1"
    env = _env(
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
        AWS_CONFIG_FILE=str(tmp_path / "none"),
        AWS_EC2_METADATA_DISABLED="true",
    )
    assert_one_line_exit_2(serve(["--storage", url], env), "credentials")


def test_s3_bucket_missing(moto_endpoint: str) -> None:
    url = s3_storage_url(moto_endpoint, "no-such-bucket", "registry")
    credentials = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
    result = serve(["--storage", url], _env(**credentials))
    assert_one_line_exit_2(result, "cannot open", "no-such-bucket", "not usable")


def test_unknown_s3_option() -> None:
    result = serve(["--storage", "s3://bucket/prefix?colour=blue"])
    assert_one_line_exit_2(result, "unknown s3 storage option")


def test_missing_htpasswd(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    users = tmp_path / "no-such-htpasswd"
    auth = {"htpasswd": str(users), "key": str(tmp_path / "key.pem"), "rules": []}
    config.write_text(yaml.safe_dump({"auth": auth}))
    result = serve(["--storage", f"file://{tmp_path / 's'}", "--config", str(config)])
    assert_one_line_exit_2(result, str(users), "does not exist")


def test_bad_metrics_address(tmp_path: Path) -> None:
    storage = f"file://{tmp_path / 's'}"
    assert_one_line_exit_2(serve(["--storage", storage, "--metrics-addr", "nonsense"]), "HOST:PORT")


def test_metrics_address_in_use(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        addr = f"127.0.0.1:{taken.getsockname()[1]}"
        result = serve(["--storage", f"file://{tmp_path / 's'}", "--metrics-addr", addr])
    assert_one_line_exit_2(result, addr, "in use")


def _wait_up(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, "server exited early"
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError("server did not come up")


def _slow_upload(url: str) -> None:
    """An upload that is still sending when the server is told to stop."""

    def body() -> Iterator[bytes]:
        for _ in range(100):
            yield b"x" * 1000
            time.sleep(0.1)

    try:
        with httpx.Client(base_url=url, timeout=60) as client:
            location = client.post("/v2/a/blobs/uploads/").headers["location"]
            client.patch(location, content=body())
    except httpx.HTTPError:
        pass  # the server went away: expected


@pytest.mark.parametrize("workers", [1, 2])
def test_two_ctrl_c_print_no_tracebacks(tmp_path: Path, workers: int) -> None:
    port = free_port()
    argv = [sys.executable, "-m", "pyreg", "serve", "--port", str(port), "--workers", str(workers)]
    argv += ["--storage", f"file://{tmp_path / 's'}"]
    # its own session: a terminal's Ctrl-C goes to the whole foreground process group
    process = subprocess.Popen(
        argv, cwd=REPO_ROOT, env=_env(), stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_up(url, process)
        uploader = threading.Thread(target=_slow_upload, args=(url,))
        uploader.start()
        time.sleep(1.5)  # the PATCH is in flight: the first Ctrl-C waits for it
        os.killpg(process.pid, signal.SIGINT)
        time.sleep(0.5)
        os.killpg(process.pid, signal.SIGINT)  # the second forces the exit
        _, stderr = process.communicate(timeout=60)
        uploader.join(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    text = stderr.decode(errors="replace")
    assert "Traceback" not in text, text
    assert "KeyboardInterrupt" not in text, text
    # interrupted: a clean exit, or death by SIGINT as a shell expects after Ctrl-C
    assert process.returncode in (0, 130, -signal.SIGINT), (process.returncode, text)


def test_a_read_only_start_writes_nothing(tmp_path: Path) -> None:
    # A backup or migration may be reading the storage: the start-up check only looks.
    from registry import preflight
    from registry.settings import Settings

    root = tmp_path / "storage"
    root.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(root)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        asyncio.run(preflight.check_storage(Settings(storage_url=f"file://{root}", readonly=True)))
        with pytest.raises(preflight.StartupError, match="cannot write"):
            asyncio.run(preflight.check_storage(Settings(storage_url=f"file://{root}")))
    finally:
        subprocess.run(["umount", str(root)], check=False)
