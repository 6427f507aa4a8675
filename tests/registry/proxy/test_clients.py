"""Real clients pulling through the mirror (`pyreg serve` with a proxy section) from the
reference registry: skopeo and `pyreg pull` by explicit name, podman through a registries.conf
`[[registry.mirror]]` whose location names the namespace (`mirror/docker.io`), and the Docker
engine through `registry-mirrors` (no host at all: the default upstream)."""

from __future__ import annotations

import asyncio
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
from tests.support.docker_registry import DockerRegistry
from tests.support.dockerd import dockerd as start_dockerd
from tests.support.server import RegistryServer

pytestmark = [pytest.mark.interop, pytest.mark.slow]


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is not installed")
    return path


def _run(*argv: str, env: dict[str, str] | None = None, timeout: float = 180) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)
    assert done.returncode == 0, f"{argv}: {done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture
def mirror_for(tmp_path: Path) -> Iterator[list[RegistryServer]]:
    started: list[RegistryServer] = []
    yield started
    for server in started:
        server.close()


def _mirror(started: list[RegistryServer], storage: Path, proxy: dict[str, object]) -> str:
    server = RegistryServer(f"file://{storage}", {"proxy": proxy}).start()
    started.append(server)
    return server.url.removeprefix("http://")


def test_skopeo_and_pyreg_pull_and_keep_pulling_when_the_upstream_stops(
    upstream: DockerRegistry, tmp_path: Path, mirror_for: list[RegistryServer]
) -> None:
    skopeo = _need("skopeo")
    images = {tag: image(tag) for tag in ("v1", "v2")}
    for tag, img in images.items():
        asyncio.run(push_image(upstream.url, "team/app", tag, img))
    # tag_ttl 0: every pull asks the upstream first, so the last round proves stale-if-error
    host = _mirror(mirror_for, tmp_path / "mirror", upstream_config(upstream.url, tag_ttl=0))
    env = {**os.environ, "PYREG_HOME": str(tmp_path / "home"), "DOCKER_CONFIG": str(tmp_path)}
    for tag in images:
        ref = f"{host}/up/team/app:{tag}"
        _run(skopeo, "copy", "--src-tls-verify=false", f"docker://{ref}", f"oci:{tmp_path / tag}:x")
        _run(sys.executable, "-m", "pyreg", "pull", "-q", ref, env=env)
    upstream.stop()
    for tag, img in images.items():
        ref = f"{host}/up/team/app:{tag}"
        raw = _run(skopeo, "inspect", "--raw", "--tls-verify=false", f"docker://{ref}")
        assert raw.encode() == img.manifest
        out = tmp_path / f"again-{tag}"
        _run(skopeo, "copy", "--src-tls-verify=false", f"docker://{ref}", f"oci:{out}:x")
        _run(sys.executable, "-m", "pyreg", "rmi", ref, env=env)
        _run(sys.executable, "-m", "pyreg", "pull", "-q", ref, env=env)


def test_podman_through_a_registries_conf_mirror(
    upstream: DockerRegistry, tmp_path: Path, mirror_for: list[RegistryServer]
) -> None:
    podman = _need("podman")
    img = image("busybox")
    asyncio.run(push_image(upstream.url, "library/busybox", "latest", img))
    storage = tmp_path / "mirror"
    host = _mirror(mirror_for, storage, upstream_config(upstream.url, namespace="docker.io"))
    conf = tmp_path / "registries.conf"
    # docker.io itself is unreachable here (no internet): only the mirror can answer. A mirror
    # location may carry a path (containers/image sends no `?ns=`): the mirror's namespace.
    conf.write_text(
        'unqualified-search-registries = ["docker.io"]\n'
        '[[registry]]\nprefix = "docker.io"\nlocation = "docker.io"\n'
        f'[[registry.mirror]]\nlocation = "{host}/docker.io"\ninsecure = true\n'
    )
    auth = tmp_path / "auth.json"
    auth.write_text('{"auths": {}}')
    env = {
        **os.environ,
        "CONTAINERS_REGISTRIES_CONF": str(conf),
        "REGISTRIES_CONFIG_PATH": str(conf),
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
        _run(*base, "pull", "docker.io/library/busybox:latest", env=env)
        listed = _run(*base, "images", "--format", "{{.Digest}}", env=env).split()
        assert str(img.digest) in listed
        tag = storage / "repositories/docker.io/library/busybox/_manifests/tags/latest"
        # it came through the mirror's cache (the tag object: {digest, pushed})
        assert json.loads(tag.read_text())["digest"] == str(img.digest)
    finally:
        shutil.rmtree(runroot, ignore_errors=True)


def test_docker_engine_through_registry_mirrors(
    upstream: DockerRegistry,
    tmp_path: Path,
    mirror_for: list[RegistryServer],
) -> None:
    img = image("busybox")
    asyncio.run(push_image(upstream.url, "library/busybox", "latest", img))
    storage = tmp_path / "mirror"
    proxy = upstream_config(upstream.url, namespace="docker.io", default=True)
    host = _mirror(mirror_for, storage, proxy)
    with start_dockerd(["--registry-mirror", f"http://{host}"]) as engine:
        # docker asks the mirror for library/busybox, no host: the default upstream answers
        engine.docker("pull", "busybox", timeout=300)
        tag = storage / "repositories/docker.io/library/busybox/_manifests/tags/latest"
        assert json.loads(tag.read_text())["digest"] == str(img.digest)
        inspected = engine.docker("image", "inspect", "--format", "{{.Id}}", "busybox")
        assert inspected.strip() == str(img.config_digest)
