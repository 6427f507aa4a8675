"""`pyreg pull` through registries.conf mirrors, with real processes: the reference registry as
the upstream (the "primary location" of docker.io here), a `pyreg serve` pull-through cache as
the mirror, and podman reading the same file."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.registry.proxy.conftest import image, push_image, upstream_config
from tests.support.docker_registry import DockerRegistry, free_port, start_registry
from tests.support.images import Image
from tests.support.server import REPO_ROOT, RegistryServer

pytestmark = [pytest.mark.interop]

NAME = "docker.io/library/app"


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[tuple[DockerRegistry, Image]]:
    registry = start_registry(tmp_path / "upstream")
    img = image("mirrored")
    asyncio.run(push_image(registry.url, "library/app", "v1", img))
    try:
        yield registry, img
    finally:
        registry.stop()


@pytest.fixture
def servers() -> Iterator[list[RegistryServer]]:
    started: list[RegistryServer] = []
    yield started
    for server in started:
        server.close()


def _cache(servers: list[RegistryServer], storage: Path, upstream_url: str) -> str:
    """A `pyreg serve` pull-through cache of `upstream_url` under the namespace `up`; its
    host. tag_ttl 0: each pull by tag asks the upstream (stale copies when it is down)."""
    proxy = upstream_config(upstream_url, namespace="up", tag_ttl=0)
    server = RegistryServer(f"file://{storage}", {"proxy": proxy}).start()
    servers.append(server)
    return server.url.removeprefix("http://")


def _conf(tmp_path: Path, primary: str, *mirrors: str, extra: str = "") -> Path:
    text = f'[[registry]]\nprefix = "docker.io"\nlocation = "{primary}"\ninsecure = true\n{extra}'
    for mirror in mirrors:
        text += f"[[registry.mirror]]\n{mirror}insecure = true\n"
    path = tmp_path / "registries.conf"
    path.write_text(text)
    return path


def _env(tmp_path: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "PYREG_HOME": str(tmp_path / "pyreg-home"),
        "HOME": str(tmp_path / "home"),
        "DOCKER_CONFIG": str(tmp_path / "docker"),
        "XDG_RUNTIME_DIR": str(tmp_path / "run"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
    }
    for name in ("REGISTRY_AUTH_FILE", "CONTAINERS_REGISTRIES_CONF"):
        env.pop(name, None)
    return env


def _pyreg(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pyreg", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO_ROOT,
        timeout=180,
    )


def _ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, f"{done.args}: {done.stdout}\n{done.stderr}"
    return done.stdout


def _local_digest(env: dict[str, str], name: str) -> str:
    info = json.loads(_ok(_pyreg(env, "inspect", name)))
    return str(info["digest"])


def _cached(storage: Path, tag: str = "v1") -> Path:
    return storage / f"repositories/up/library/app/_manifests/tags/{tag}"


def test_pull_goes_through_the_mirror_and_keeps_working_when_the_upstream_is_down(
    upstream: tuple[DockerRegistry, Image], tmp_path: Path, servers: list[RegistryServer]
) -> None:
    registry, img = upstream
    storage = tmp_path / "cache"
    cache = _cache(servers, storage, registry.url)
    conf = _conf(tmp_path, registry.host, f'location = "{cache}/up"\n')
    env = _env(tmp_path)
    done = _ok(_pyreg(env, "pull", "--debug", "--registries-conf", str(conf), f"{NAME}:v1"))
    assert f"Pulled {NAME}:v1" in done
    assert json.loads(_cached(storage).read_text())["digest"] == str(img.digest)
    assert _local_digest(env, f"{NAME}:v1") == str(img.digest)
    # the upstream stops (the primary location is gone too): the cache's copy still pulls,
    # the file named by CONTAINERS_REGISTRIES_CONF this time
    registry.stop()
    _ok(_pyreg(env, "rmi", f"{NAME}:v1"))
    _ok(_pyreg(env, "prune"))
    env["CONTAINERS_REGISTRIES_CONF"] = str(conf)
    _ok(_pyreg(env, "pull", f"{NAME}:v1"))
    assert _local_digest(env, f"{NAME}:v1") == str(img.digest)
    # without the mirror the same pull fails: the mirror did the work above
    _ok(_pyreg(env, "rmi", f"{NAME}:v1"))
    _ok(_pyreg(env, "prune"))
    (tmp_path / "plain").mkdir()
    no_mirror = _conf(tmp_path / "plain", registry.host)
    failed = _pyreg(env, "pull", "--registries-conf", str(no_mirror), f"{NAME}:v1")
    assert failed.returncode == 1, failed.stderr
    # the message names where the pull went (the rewritten location), not docker.io
    assert f"pull library/app on {registry.host}: cannot connect" in failed.stderr


def test_a_failing_mirror_falls_through_to_the_next_then_the_primary(
    upstream: tuple[DockerRegistry, Image], tmp_path: Path, servers: list[RegistryServer]
) -> None:
    registry, img = upstream
    # a cache whose own upstream is down: 5xx for its namespace, 404 for any other name
    broken = _cache(servers, tmp_path / "broken", f"http://127.0.0.1:{free_port()}")
    nobody = f"127.0.0.1:{free_port()}"  # nothing listens there
    conf = _conf(
        tmp_path,
        registry.host,
        f'location = "{nobody}"\n',
        f'location = "{broken}/local"\n',
        f'location = "{broken}/up"\n',
    )
    env = _env(tmp_path)
    done = _pyreg(env, "pull", "--debug", "--registries-conf", str(conf), f"{NAME}:v1")
    _ok(done)
    failures = [line for line in done.stderr.splitlines() if "from the mirror failed" in line]
    assert len(failures) == 3, done.stderr
    assert nobody in failures[0] and "/local/" in failures[1] and "/up/" in failures[2]
    assert f"Trying to access {registry.host}/library/app:v1" in done.stderr
    assert _local_digest(env, f"{NAME}:v1") == str(img.digest)
    # without --debug the fall-through is silent
    _ok(_pyreg(env, "rmi", f"{NAME}:v1"))
    quiet = _ok_done(_pyreg(env, "pull", "--registries-conf", str(conf), f"{NAME}:v1"))
    assert "mirror" not in quiet.stderr


def _ok_done(done: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    _ok(done)
    return done


def test_digest_only_mirrors_serve_digest_pulls_only(
    upstream: tuple[DockerRegistry, Image], tmp_path: Path, servers: list[RegistryServer]
) -> None:
    registry, img = upstream
    storage = tmp_path / "cache"
    cache = _cache(servers, storage, registry.url)
    conf = _conf(
        tmp_path, registry.host, f'location = "{cache}/up"\npull-from-mirror = "digest-only"\n'
    )
    env = _env(tmp_path)
    _ok(_pyreg(env, "pull", "--registries-conf", str(conf), f"{NAME}:v1"))
    assert not (storage / "repositories/up").exists()  # the mirror was not asked
    _ok(_pyreg(env, "pull", "--registries-conf", str(conf), f"{NAME}@{img.digest}"))
    revision = f"repositories/up/library/app/_manifests/revisions/sha256/{img.digest.hex}/link"
    assert (storage / revision).is_file()


def test_a_blocked_registry_is_refused_in_one_line(tmp_path: Path) -> None:
    conf = _conf(tmp_path, "docker.io", extra="blocked = true\n")
    done = _pyreg(_env(tmp_path), "pull", "--registries-conf", str(conf), f"{NAME}:v1")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"pyreg: error: pull library/app on docker.io: registry docker.io is blocked in {conf}"
    ]


def test_mirror_credentials_are_the_mirrors_own(tmp_path: Path) -> None:
    """The mirror needs a login, the primary is unreachable: the pull works only with the
    credentials stored for the mirror (a namespace key of it here)."""
    mirror = start_registry(tmp_path / "mirror", users={"alice": "s3cret"})
    try:
        img = image("private")
        basic = base64.b64encode(b"alice:s3cret").decode()
        headers = {"Authorization": f"Basic {basic}"}
        asyncio.run(push_image(mirror.url, "hub/library/app", "v1", img, headers=headers))
        conf = _conf(tmp_path, f"127.0.0.1:{free_port()}", f'location = "{mirror.host}/hub"\n')
        env = _env(tmp_path)
        authfile = tmp_path / "auth.json"
        authfile.write_text(json.dumps({"auths": {f"{mirror.host}/hub": {"auth": basic}}}))
        args = ["pull", "--registries-conf", str(conf), f"{NAME}:v1"]
        refused = _pyreg(env, *args)
        assert refused.returncode == 1  # anonymous: the mirror refuses, the primary is down
        _ok(_pyreg(env, *args, "--authfile", str(authfile)))
        assert _local_digest(env, f"{NAME}:v1") == str(img.digest)
    finally:
        mirror.stop()


def test_podman_pulls_through_the_same_registries_conf(
    upstream: tuple[DockerRegistry, Image], tmp_path: Path, servers: list[RegistryServer]
) -> None:
    podman = shutil.which("podman")
    if podman is None:
        pytest.skip("podman is not installed")
    registry, img = upstream
    storage = tmp_path / "cache"
    cache = _cache(servers, storage, registry.url)
    conf = _conf(tmp_path, registry.host, f'location = "{cache}/up"\n')
    auth = tmp_path / "auth.json"
    auth.write_text('{"auths": {}}')
    env = {
        **os.environ,
        "CONTAINERS_REGISTRIES_CONF": str(conf),
        "REGISTRY_AUTH_FILE": str(auth),
    }
    runroot = Path(tempfile.mkdtemp(prefix="pyreg-"))  # podman wants a short runroot
    base = [
        podman, "--root", str(tmp_path / "root"), "--runroot", str(runroot),
        "--storage-driver", "vfs", "--cgroup-manager", "cgroupfs", "--events-backend", "file",
    ]  # fmt: skip
    try:
        probe = subprocess.run([*base, "info"], capture_output=True, text=True, env=env)
        if probe.returncode != 0:
            pytest.skip(f"podman cannot run in this sandbox: {probe.stderr.strip()[:300]}")
        pulled = subprocess.run(
            [*base, "pull", f"{NAME}:v1"], capture_output=True, text=True, env=env, timeout=180
        )
        assert pulled.returncode == 0, pulled.stderr
        listed = subprocess.run(
            [*base, "images", "--format", "{{.Digest}}"], capture_output=True, text=True, env=env
        ).stdout.split()
        assert str(img.digest) in listed
        assert json.loads(_cached(storage).read_text())["digest"] == str(img.digest)
    finally:
        shutil.rmtree(runroot, ignore_errors=True)
    # and pyreg with the file podman just used
    _ok(_pyreg({**_env(tmp_path), "CONTAINERS_REGISTRIES_CONF": str(conf)}, "pull", f"{NAME}:v1"))
