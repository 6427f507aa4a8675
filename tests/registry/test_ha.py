"""Three replicas behind the shipped nginx, on a real S3 (Ceph RGW) with Redis for their
shared state: skopeo and pyreg push and pull at once while one replica is killed and
restarted; every acknowledged push pulls intact, and the login lockout holds across
replicas (each would otherwise count only its own share of an attacker's guesses)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.auth import auth_section, basic
from tests.support.images import Image, build_image, file, write_oci_layout
from tests.support.nginx import Nginx
from tests.support.redis_server import RedisServer, redis_server  # noqa: F401
from tests.support.rgw import Rgw, rgw  # noqa: F401
from tests.support.server import REPO_ROOT, RegistryServer

pytestmark = pytest.mark.slow

USER, PASSWORD = "alice", "alice-pw"
MAX_FAILURES = 3


@pytest.fixture
def cluster(
    tmp_path: Path,
    rgw: Rgw,  # noqa: F811
    redis_server: RedisServer,  # noqa: F811
) -> Iterator[tuple[str, list[RegistryServer]]]:
    storage = rgw.storage_url(rgw.create_bucket(), "ha")
    config = {
        "trusted_proxies": "127.0.0.1",
        "redis": {"url": redis_server.url, "timeout": 30},
        "uploads": {"purge_interval": 0},
        "auth": auth_section(
            tmp_path,
            {USER: PASSWORD},
            [{"repository": "**", "pull": [USER], "push": [USER], "delete": [USER]}],
            lockout={"max_failures": MAX_FAILURES, "window": 300, "lock_for": 300},
        ),
    }
    replicas = [RegistryServer(storage, config).start() for _ in range(3)]
    try:
        with Nginx(tmp_path / "nginx", [f"127.0.0.1:{r.port}" for r in replicas]) as lb:
            yield lb.url, replicas
    finally:
        for r in replicas:
            r.close()


def test_the_lockout_holds_across_replicas(cluster: tuple[str, list[RegistryServer]]) -> None:
    url, _ = cluster
    with httpx.Client(timeout=60) as client:
        for _ in range(MAX_FAILURES):
            assert client.get(f"{url}/v2/", headers=basic(USER, "wrong")).status_code == 401
        # nginx spreads these over all three replicas; each saw at most 1-2 failures itself.
        for _ in range(6):
            answer = client.get(f"{url}/v2/", headers=basic(USER, PASSWORD))
            assert answer.status_code == 429, answer.text


def _image(n: int) -> Image:
    return build_image([[file(f"data/{n}", os.urandom(256 * 1024)), file("id", str(n).encode())]])


def _skopeo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["skopeo", *args], capture_output=True, text=True, timeout=300, check=False
    )


def test_pushes_and_pulls_survive_a_replica_killed_and_restarted(
    cluster: tuple[str, list[RegistryServer]], tmp_path: Path
) -> None:
    if shutil.which("skopeo") is None:
        pytest.skip("skopeo is not installed")
    url, replicas = cluster
    host = url.removeprefix("http://")
    creds = f"{USER}:{PASSWORD}"
    images = {n: _image(n) for n in range(8)}
    layout = tmp_path / "layout"
    write_oci_layout(layout, {f"v{n}": img for n, img in images.items()})
    acknowledged: dict[str, str] = {}  # reference -> manifest digest
    failures: list[str] = []
    lock = threading.Lock()

    def push_with_skopeo(n: int) -> None:
        ref = f"{host}/ha/skopeo-{n}:v{n}"
        done = _skopeo("copy", "--dest-tls-verify=false", f"--dest-creds={creds}",
                       "--retry-times=3", f"oci:{layout}:v{n}", f"docker://{ref}")  # fmt: skip
        with lock:
            if done.returncode == 0:
                acknowledged[ref] = str(images[n].digest)
            else:
                failures.append(done.stderr[-500:])

    home = tmp_path / "pyreg-home"
    env = {**os.environ, "PYREG_HOME": str(home)}

    def pyreg(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pyreg", *args], capture_output=True, text=True,
            timeout=300, check=False, env=env, cwd=REPO_ROOT, input=PASSWORD,
        )  # fmt: skip

    assert pyreg("login", "--insecure", "-u", USER, "--password-stdin", host).returncode == 0

    def push_with_pyreg(n: int) -> None:
        archive = tmp_path / f"layout-{n}"
        write_oci_layout(archive, {f"p{n}": images[n]})
        loaded = pyreg("load", "-r", f"{host}/ha/pyreg-{n}", str(archive))
        name = loaded.stdout.rpartition("Loaded image: ")[2].strip()
        pushed = pyreg("push", "--insecure", name)
        with lock:
            if loaded.returncode == 0 and pushed.returncode == 0:
                acknowledged[name] = str(images[n].digest)
            else:
                failures.append(loaded.stderr + pushed.stderr[-500:])

    threads = [threading.Thread(target=push_with_skopeo, args=(n,)) for n in range(4)]
    threads += [threading.Thread(target=push_with_pyreg, args=(n,)) for n in range(4, 8)]
    for t in threads:
        t.start()
    replicas[1].kill()  # mid-push: whatever it was serving is cut
    replicas[1].start()
    for t in threads:
        t.join(timeout=600)
    assert acknowledged, f"no push succeeded: {failures}"
    # Every acknowledged push pulls intact, through the balancer, from any replica: the
    # manifest is the one pushed, and skopeo verifies every blob's digest as it copies.
    for ref, digest in acknowledged.items():
        inspected = _skopeo("inspect", "--tls-verify=false", f"--creds={creds}",
                            "--format", "{{.Digest}}", f"docker://{ref}")  # fmt: skip
        assert inspected.returncode == 0, inspected.stderr
        assert inspected.stdout.strip() == digest
        out = tmp_path / "pulled" / ref.replace("/", "_").replace(":", "_")
        out.parent.mkdir(exist_ok=True)
        copied = _skopeo("copy", "--src-tls-verify=false", f"--src-creds={creds}",
                         f"docker://{ref}", f"dir:{out}")  # fmt: skip
        assert copied.returncode == 0, copied.stderr
