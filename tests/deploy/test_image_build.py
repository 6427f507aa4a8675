"""deploy/Dockerfile built and run for real, as operators run it.

No Docker Hub here: deploy/build-local-base.sh makes the base (Debian bookworm by mmdebstrap
from the Debian mirror, imported into a dockerd of the test's own) and builds the image on it,
once per session. The container then runs on the host network (the engine has no bridge) on a
free port: it must run as uid 10001, answer /v2/, take a skopeo push and give the same digest
back, keep the data in its volume, report healthy, and stop cleanly on SIGTERM."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from registry.stores.paths import blob_data
from tests.support.dockerd import Dockerd, dockerd
from tests.support.images import sample_image, write_oci_layout
from tests.support.ports import port_block

# the first test also waits for the build: minutes on the vfs driver
pytestmark = [pytest.mark.slow, pytest.mark.interop, pytest.mark.timeout(1800)]

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "build-local-base.sh"
IMAGE = "pyreg-test:image"
BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


def _unreachable_mirror() -> str | None:
    """Why the Debian mirror the script would use does not answer, or None."""
    done = subprocess.run([str(SCRIPT), "--sources"], capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        return done.stderr
    for line in done.stdout.splitlines():
        _, uri, suite, _ = line.split()
        url = f"{uri.rstrip('/')}/dists/{suite}/Release"
        try:
            urllib.request.urlopen(url, timeout=20).close()
        except OSError as exc:
            return f"{url}: {exc}"
    return None


def _unreachable_pypi(tmp: Path) -> str | None:
    """Why pip cannot download from its default index (as the build does), or None."""
    # --isolated: no local find-links or extra index; a package of the lock, no dependencies
    argv = ["pip", "download", "--isolated", "--no-deps", "--no-cache-dir", "--retries", "0"]
    argv += ["--timeout", "20", "-d", str(tmp), "async-timeout==5.0.1"]
    if Path(BUNDLE).exists():
        argv += ["--cert", BUNDLE]
    done = subprocess.run(
        [sys.executable, "-m", *argv], capture_output=True, text=True, timeout=120
    )
    return None if done.returncode == 0 else done.stderr[-500:]


@dataclass(frozen=True)
class Built:
    engine: Dockerd
    seconds: float  # the base and the image, from nothing
    output: str


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    for tool in ("mmdebstrap", "skopeo"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    if os.geteuid() != 0:
        pytest.skip("mmdebstrap builds the base in root mode: needs root")
    why = _unreachable_mirror()
    if why is not None:
        pytest.skip(f"the Debian mirror is unreachable: {why}")
    why = _unreachable_pypi(tmp_path_factory.mktemp("pypi"))
    if why is not None:
        pytest.skip(f"PyPI is unreachable: {why}")
    with dockerd() as engine:
        started = time.monotonic()
        done = subprocess.run(
            [str(SCRIPT), "pyreg-test:base", IMAGE],
            env=engine.env,
            capture_output=True,
            text=True,
            timeout=1500,
        )
        seconds = time.monotonic() - started
        assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        print(f"base and image built in {seconds:.0f} s")
        yield Built(engine, seconds, done.stdout + done.stderr)


@dataclass(frozen=True)
class Running:
    engine: Dockerd
    name: str
    url: str
    volume: Path  # the named volume's directory on the host


def _run(engine: Dockerd, name: str, port: int, volume: str) -> None:
    engine.docker(
        "run", "-d", "--name", name, "--network", "host",
        "-e", f"PYREG_PORT={port}",  # where the health check looks too
        "--health-interval", "2s", "--health-start-period", "60s",
        "-v", f"{volume}:/var/lib/pyreg", IMAGE,
    )  # fmt: skip


def _wait_for(url: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.5)


@pytest.fixture(scope="module")
def running(built: Built) -> Iterator[Running]:
    engine = built.engine
    port = port_block()
    engine.docker("volume", "create", "pyreg-data")
    _run(engine, "pyreg", port, "pyreg-data")
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for(f"{url}/v2/")
    except OSError:
        pytest.fail(engine.run("logs", "pyreg").stderr[-3000:])
    mountpoint = engine.docker("volume", "inspect", "--format", "{{.Mountpoint}}", "pyreg-data")
    yield Running(engine, "pyreg", url, Path(mountpoint.strip()))
    engine.run("rm", "-f", "pyreg")


def test_the_build_context_leaves_out_the_venv_and_the_git_tree(built: Built) -> None:
    # The classic builder (docker.io's default) reads only the context's .dockerignore, not
    # deploy/Dockerfile.dockerignore: without it the whole .venv and .git went to the daemon.
    (line,) = [x for x in built.output.splitlines() if "Sending build context" in x]
    size = line.split()[-1]
    assert size.endswith(("kB", "MB")) and (size.endswith("kB") or float(size[:-2]) < 50), line


def test_runs_as_uid_10001_and_answers_v2(running: Running) -> None:
    engine = running.engine
    assert engine.docker("exec", running.name, "id", "-u").strip() == "10001"
    assert engine.docker("exec", running.name, "id", "-g").strip() == "10001"
    user = engine.docker("inspect", "--format", "{{.Config.User}}", running.name)
    assert user.strip() == "10001:10001"  # numeric: Kubernetes' runAsNonRoot can verify it
    with urllib.request.urlopen(f"{running.url}/v2/", timeout=10) as response:
        assert response.status == 200
        assert response.headers["Docker-Distribution-API-Version"] == "registry/2.0"


def _skopeo(*args: str) -> str:
    done = subprocess.run(
        ["skopeo", "--insecure-policy", *args], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, f"skopeo {args}: {done.stdout}{done.stderr}"
    return done.stdout


def test_skopeo_push_and_pull_give_the_same_digest_and_the_data_lands_in_the_volume(
    running: Running, tmp_path: Path
) -> None:
    image = sample_image()
    layout = write_oci_layout(tmp_path / "src", {"v1": image})
    host = running.url.removeprefix("http://")
    remote = f"docker://{host}/deploy/app:v1"
    _skopeo("copy", "--dest-tls-verify=false", f"oci:{layout}:v1", remote)
    _skopeo("copy", "--src-tls-verify=false", remote, f"oci:{tmp_path / 'back'}:v1")
    index = json.loads((tmp_path / "back" / "index.json").read_text())
    assert [m["digest"] for m in index["manifests"]] == [str(image.digest)]
    raw = _skopeo("inspect", "--tls-verify=false", "--raw", remote)
    assert raw.encode() == image.manifest

    # In the volume, owned by the image's uid: the storage root is the volume.
    tag = running.volume / "repositories/deploy/app/_manifests/tags/v1"
    assert json.loads(tag.read_text())["digest"] == str(image.digest)
    assert running.volume.stat().st_uid == 10001 and running.volume.stat().st_mode & 0o777 == 0o700
    for layer in image.layers:
        blob = running.volume / blob_data(layer.digest)
        assert blob.read_bytes() == layer.blob and blob.stat().st_uid == 10001


def test_the_healthcheck_reports_healthy(running: Running) -> None:
    engine = running.engine
    deadline = time.monotonic() + 120
    status = ""
    while time.monotonic() < deadline:
        status = engine.docker("inspect", "--format", "{{.State.Health.Status}}", running.name)
        if status.strip() == "healthy":
            break
        time.sleep(1)
    assert status.strip() == "healthy", engine.docker("inspect", running.name)


def test_docker_stop_ends_it_cleanly_on_sigterm(built: Built) -> None:
    engine = built.engine
    port = port_block()
    _run(engine, "pyreg-stop", port, "pyreg-stop-data")
    try:
        _wait_for(f"http://127.0.0.1:{port}/v2/")
        started = time.monotonic()
        engine.docker("stop", "--time", "60", "pyreg-stop")
        # well inside docker's grace period: SIGTERM ended it, no SIGKILL after the timeout
        assert time.monotonic() - started < 45
        state = engine.docker("inspect", "--format", "{{.State.ExitCode}}", "pyreg-stop")
        assert state.strip() == "0"
        assert "Finished server process" in engine.run("logs", "pyreg-stop").stderr
    finally:
        engine.run("rm", "-f", "pyreg-stop")
