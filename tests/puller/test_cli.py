"""The client commands end to end, in process (`pyreg.cli.main`), against docker-registry:
outputs, exit codes, and one-line errors instead of tracebacks."""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ocispec.reference import Reference
from puller.store import GraphStore
from puller.store.files import force_rmtree
from pyreg.cli import main
from tests.puller.conftest import put_image
from tests.support.docker_registry import (
    DockerRegistry,
    TokenAuthConfig,
    free_port,
    start_registry,
)
from tests.support.images import (
    build_image,
    chardev,
    file,
    register_image,
    sample_image,
    write_docker_archive,
    write_oci_layout,
)
from tests.support.token_server import ISSUER, SERVICE, TokenServer

pytestmark = pytest.mark.interop


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> GraphStore:
    monkeypatch.setenv("PYREG_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    return GraphStore(tmp_path / "home")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def pushed(docker_registry: DockerRegistry, home: GraphStore) -> Iterator[tuple[str, str]]:
    """An image pushed with the CLI from a store seeded by the test: (reference, digest)."""
    image = sample_image()
    ref = f"{docker_registry.host}/cli/app:v1"
    put_image(home, str(Reference.parse(ref)), image)
    assert main(["push", "-q", ref]) == 0
    yield ref, str(image.digest)


def test_push_quiet_prints_only_the_digest(
    docker_registry: DockerRegistry, home: GraphStore, capsys: pytest.CaptureFixture[str]
) -> None:
    image = build_image([[file("x", b"x")]])
    ref = f"{docker_registry.host}/cli/quiet:v1"
    put_image(home, str(Reference.parse(ref)), image)
    code, out, err = run(capsys, "push", "-q", ref)
    assert (code, out, err) == (0, f"{image.digest}\n", "")
    code, out, _ = run(capsys, "push", ref)
    assert code == 0 and "skipped 2 already present" in out


def test_pull_images_tag_rmi_prune(
    pushed: tuple[str, str], home: GraphStore, capsys: pytest.CaptureFixture[str]
) -> None:
    ref, digest = pushed
    for name in list(home.images.list()):
        home.images.remove(name)
    assert run(capsys, "prune")[0] == 0
    assert home.content.list() == []
    code, out, _ = run(capsys, "pull", "-q", ref)
    assert (code, out) == (0, f"{digest}\n")
    code, out, _ = run(capsys, "images")
    assert code == 0 and f"{ref.rsplit(':', 1)[0]}  v1" in out and digest[7:19] in out
    assert run(capsys, "tag", ref, "example.com/other:v2")[0] == 0
    assert home.images.get("example.com/other:v2") == home.images.get(ref)
    code, out, _ = run(capsys, "images", "-q")
    assert out.splitlines() == sorted([ref, "example.com/other:v2"])
    assert run(capsys, "rmi", ref)[0] == 0
    code, out, _ = run(capsys, "prune")
    assert code == 0 and "Removed 0 blobs" in out  # still named example.com/other:v2
    assert run(capsys, "rmi", "example.com/other:v2")[0] == 0
    code, out, _ = run(capsys, "prune")
    assert code == 0 and "Removed 5 blobs" in out and "3 unpacked layers" in out
    assert home.content.list() == [] and home.layers.list() == []


def test_unpack_assembles_the_rootfs(
    pushed: tuple[str, str],
    home: GraphStore,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ref, _ = pushed
    fresh = tmp_path / "fresh-home"
    monkeypatch.setenv("PYREG_HOME", str(fresh))  # pull into an empty store
    assert run(capsys, "pull", "-q", ref)[0] == 0
    target = tmp_path / "rootfs"
    code, out, _ = run(capsys, "unpack", ref, str(target))
    assert code == 0 and "3 layers" in out
    assert (target / "etc/hostname").read_text() == "top\n"
    assert not (target / "opt/app/old.txt").exists()  # under an opaque directory
    assert (target / "etc/relative").readlink() == Path("../usr/bin/tool")
    code, _, err = run(capsys, "unpack", ref, str(target))
    assert code == 1 and "not empty" in err


def test_inspect_local_and_remote(
    pushed: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    ref, digest = pushed
    code, out, _ = run(capsys, "inspect", ref)
    local = json.loads(out)
    assert code == 0 and local["digest"] == digest and local["config"]["architecture"] == "amd64"
    code, out, _ = run(capsys, "inspect", "--remote", ref)
    remote = json.loads(out)
    assert code == 0 and remote["manifest"] == local["manifest"]
    assert remote["config"] == local["config"]


def test_tags_catalog_delete(pushed: tuple[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    ref, digest = pushed
    registry = ref.split("/")[0]
    assert run(capsys, "tags", ref.rsplit(":", 1)[0]) == (0, "v1\n", "")
    assert run(capsys, "catalog", registry) == (0, "cli/app\n", "")
    code, out, _ = run(capsys, "delete", ref)  # distribution 2.8 deletes by digest only
    assert code == 0 and digest in out
    code, out, err = run(capsys, "inspect", "--remote", ref)
    assert code == 1 and "MANIFEST_UNKNOWN" in err


def test_copy_between_repositories_mounts(
    pushed: tuple[str, str], docker_registry: DockerRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    ref, digest = pushed
    target = f"{docker_registry.host}/cli/copied:v9"
    code, out, _ = run(capsys, "copy", ref, target)
    assert code == 0 and "mounted 4" in out
    assert json.loads(run(capsys, "inspect", "--remote", target)[1])["digest"] == digest


def test_copy_between_registries_streams_blobs(
    pushed: tuple[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ref, digest = pushed
    other = start_registry(tmp_path / "second-registry")
    try:
        target = f"{other.host}/mirror/app:v1"
        code, out, _ = run(capsys, "copy", "-q", ref, target)
        assert (code, out) == (0, f"{digest}\n")
        assert json.loads(run(capsys, "inspect", "--remote", target)[1])["digest"] == digest
    finally:
        other.stop()


def test_login_logout(
    tmp_path: Path,
    home: GraphStore,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    registry = start_registry(tmp_path / "auth-registry", users={"alice": "pw"})
    try:
        monkeypatch.setattr("sys.stdin", io.StringIO("bad\n"))
        code, _, err = run(capsys, "login", "-u", "alice", "--password-stdin", registry.host)
        assert code == 1 and err.startswith("pyreg: error: login") and err.count("\n") == 1
        config = tmp_path / "docker" / "config.json"
        assert not config.exists()
        code, out, err = run(capsys, "login", "-u", "alice", "-p", "pw", registry.host)
        assert code == 0 and "Login Succeeded" in out and "--password-stdin" in err
        assert registry.host in json.loads(config.read_text())["auths"]
        code, out, _ = run(capsys, "catalog", registry.host)  # uses the stored credentials
        assert code == 0
        assert run(capsys, "logout", registry.host)[0] == 0
        assert json.loads(config.read_text())["auths"] == {}
        code, _, err = run(capsys, "catalog", registry.host)
        assert code == 1 and "UNAUTHORIZED" in err
        assert run(capsys, "logout", registry.host)[0] == 1
    finally:
        registry.stop()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["pull", "Not A Ref"], "invalid"),
        (["pull", "--platform", "linux", "localhost:1/a"], "platform"),
        (["push", "localhost:1/nothing:v1"], "no local image"),
        (["unpack", "nothing:here", "/tmp/x"], "no local image"),
        (["tag", "nothing:here", "b:c"], "no local image"),
        (["rmi", "nothing:here"], "no local image"),
        (["inspect", "sha256:" + "0" * 64], "no local image"),
    ],
)
def test_expected_failures_are_one_line(
    home: GraphStore, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, _, err = run(capsys, *argv)
    assert code == 1
    assert err.startswith("pyreg: error:") and message in err and "Traceback" not in err


def test_unreachable_registry_is_one_line(
    home: GraphStore, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "pull", f"127.0.0.1:{free_port()}/a/b:v1")
    assert code == 1 and err.startswith("pyreg: error:") and err.count("\n") == 1


def test_missing_tag_on_registry(
    docker_registry: DockerRegistry, home: GraphStore, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "pull", f"{docker_registry.host}/no/such:v1")
    assert (code == 1 and "MANIFEST_UNKNOWN" in err) or "NAME_UNKNOWN" in err


@pytest.mark.parametrize(
    "command",
    [
        "login",
        "logout",
        "pull",
        "push",
        "images",
        "tag",
        "rmi",
        "inspect",
        "unpack",
        "load",
        "save",
        "tags",
        "catalog",
        "delete",
        "copy",
        "prune",
    ],
)
def test_every_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    assert f"usage: pyreg {command}" in capsys.readouterr().out


def test_load_save_and_push_a_loaded_image(
    docker_registry: DockerRegistry,
    home: GraphStore,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    image = sample_image()
    name = f"{docker_registry.host}/loaded/app:v1"
    archive = write_docker_archive(tmp_path / "save.tar", {name: image})
    code, out, _ = run(capsys, "load", str(archive))
    assert code == 0 and out.startswith("Loaded image:")
    loaded = out.split("Loaded image: ", 1)[1].strip()
    layout_dir = write_oci_layout(tmp_path / "layout", {"v2": image})
    code, out, _ = run(capsys, "load", "-r", f"{docker_registry.host}/loaded/oci", str(layout_dir))
    assert code == 0 and f"{docker_registry.host}/loaded/oci:v2" in out
    code, out, _ = run(capsys, "push", "-q", f"{docker_registry.host}/loaded/oci:v2")
    assert code == 0 and out.strip() == str(
        home.images.get(f"{docker_registry.host}/loaded/oci:v2")
    )
    target = tmp_path / "saved"
    code, _, _ = run(capsys, "save", "-q", loaded, "-o", str(target))
    assert code == 0
    index = json.loads((target / "index.json").read_text())
    assert [m["digest"] for m in index["manifests"]] == [str(home.images.get(loaded))]
    code, _, err = run(capsys, "load", str(tmp_path / "missing.tar"))
    assert code == 1 and err.startswith("pyreg: error:")


def test_login_to_a_token_registry(
    tmp_path: Path, home: GraphStore, capsys: pytest.CaptureFixture[str]
) -> None:
    with TokenServer(tmp_path / "token", {"alice": "pw"}) as server:
        config = TokenAuthConfig(server.realm, SERVICE, ISSUER, server.rootcertbundle)
        registry = start_registry(tmp_path / "token-registry", token=config)
        try:
            code, _, err = run(capsys, "login", "-u", "alice", "-p", "no", registry.host)
            assert code == 1 and "login to" in err and "401" in err
            code, out, _ = run(capsys, "login", "-u", "alice", "-p", "pw", registry.host)
            assert code == 0 and "Login Succeeded" in out
            assert run(capsys, "catalog", registry.host)[0] == 0
        finally:
            registry.stop()


def test_unpack_an_index_takes_the_platform(
    home: GraphStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ocispec import mediatypes as mt

    amd = build_image([[file("arch", b"amd64")]], architecture="amd64")
    arm = build_image([[file("arch", b"arm64")]], architecture="arm64")
    name = "example.com/multi/arch:v1"
    for image in (amd, arm):
        put_image(home, f"example.com/multi/arch@{image.digest}", image)
        layer = image.layers[0]
        home.layers.register(None, layer.diff_id, layer.digest, layer.media_type)
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_INDEX,
            "manifests": [
                {**amd.descriptor(), "platform": {"os": "linux", "architecture": "amd64"}},
                {**arm.descriptor(), "platform": {"os": "linux", "architecture": "arm64"}},
            ],
        }
    ).encode()
    home.images.set(name, home.content.write_bytes(index))
    code, _, _ = run(capsys, "unpack", "--platform", "linux/arm64", name, str(tmp_path / "arm"))
    assert code == 0 and (tmp_path / "arm" / "arch").read_bytes() == b"arm64"
    code, _, err = run(capsys, "unpack", "--platform", "linux/s390x", name, str(tmp_path / "x"))
    assert code == 1 and "no image for platform linux/s390x" in err


def test_commands_run_on_uvloop_when_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    import uvloop

    from puller.cli import _run

    async def loop_type() -> type:
        return type(asyncio.get_running_loop())

    assert _run(loop_type()) is uvloop.Loop
    monkeypatch.setitem(sys.modules, "uvloop", None)  # not installed: asyncio's own loop
    assert _run(loop_type()) is not uvloop.Loop


# -- hardening: unpack's target mode, deep trees ------------------------------------------------


def test_unpack_makes_the_target_owner_only_unless_told(
    home: GraphStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The rootfs holds the image's setuid files and device nodes: other users stay out."""
    image = build_image([[file("usr/bin/su", b"#!", mode=0o4755), chardev("dev/sda", 8, 0)]])
    register_image(home, image, "example.com/unpack/mode:v1")
    target = tmp_path / "rootfs"
    assert run(capsys, "unpack", "-q", "example.com/unpack/mode:v1", str(target))[0] == 0
    assert stat.S_IMODE(target.stat().st_mode) == 0o700
    assert (target / "usr/bin/su").stat().st_mode & stat.S_ISUID
    existing = tmp_path / "existing"
    existing.mkdir(mode=0o755)
    assert run(capsys, "unpack", "-q", "example.com/unpack/mode:v1", str(existing))[0] == 0
    assert stat.S_IMODE(existing.stat().st_mode) == 0o700
    wide = tmp_path / "wide"
    cmd = ("unpack", "-q", "--mode", "0755", "example.com/unpack/mode:v1", str(wide))
    assert run(capsys, *cmd)[0] == 0
    assert stat.S_IMODE(wide.stat().st_mode) == 0o755
    with pytest.raises(SystemExit):
        main(["unpack", "--mode", "u+rwx", "example.com/unpack/mode:v1", str(tmp_path / "x")])


def test_a_layer_1500_directories_deep_loads_unpacks_and_prunes(
    home: GraphStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    deep = "/".join(["d"] * 1500)  # deeper than Python's recursion limit
    image = build_image([[file(f"{deep}/bottom", b"deep")]])
    layout_dir = write_oci_layout(tmp_path / "layout", {"v1": image})
    code, out, err = run(capsys, "load", "-r", "example.com/deep/app", str(layout_dir))
    assert code == 0, err
    target = tmp_path / "rootfs"
    try:
        code, _, err = run(capsys, "unpack", "-q", "example.com/deep/app:v1", str(target))
        assert code == 0, err
        assert (target / deep / "bottom").read_bytes() == b"deep"
    finally:
        # Not left to pytest: its clean-up of old temp dirs (shutil.rmtree) recurses and
        # fails on a tree this deep, at the end of some later session.
        force_rmtree(target)
    assert run(capsys, "rmi", "example.com/deep/app:v1")[0] == 0
    code, out, err = run(capsys, "prune")
    assert code == 0 and "1 unpacked layers" in out, err
    assert home.layers.list() == [] and home.content.list() == []


def test_pull_stops_at_the_size_caps(
    docker_registry: DockerRegistry,
    home: GraphStore,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two layers of 3 MiB of zeros (a few KiB of gzip each): over a 2 MiB layer cap, and
    together over a 5 MiB pull cap."""
    image = build_image([[file("a", bytes(3 << 20))], [file("b", bytes(3 << 20))]])
    assert max(len(layer.blob) for layer in image.layers) < 64 * 1024
    ref = f"{docker_registry.host}/cli/bomb:v1"
    put_image(home, str(Reference.parse(ref)), image)
    assert main(["push", "-q", ref]) == 0
    capsys.readouterr()
    fresh = GraphStore(tmp_path / "fresh-home")
    monkeypatch.setenv("PYREG_HOME", str(fresh.root))
    monkeypatch.setenv("PYREG_MAX_LAYER_SIZE", "2M")
    code, _, err = run(capsys, "pull", "-q", ref)
    assert code == 1 and "is larger than 2 MiB uncompressed" in err
    # the operation, repository and registry first (puller/messages.py), then the layer
    assert err.startswith("pyreg: error: pull cli/bomb on ") and err.count("sha256:") == 1
    assert any(f"layer {layer.digest} " in err for layer in image.layers)
    code, _, err = run(capsys, "pull", "-q", "--max-layer-size", "4M", "--max-pull-size", "5M", ref)
    assert code == 1 and "pass 5 MiB uncompressed" in err and "--max-pull-size" in err
    # no image; layers unpack side by side as they download, so one that fit may have been
    # finished before the other passed the cap: it stays for the next pull (as docker keeps
    # downloaded layers), but never both
    assert fresh.images.list() == {} and len(fresh.layers.list()) <= 1
    code, _, err = run(capsys, "pull", "-q", "--max-layer-size", "4M", "--max-pull-size", "7M", ref)
    assert code == 0, err


# What only other commands need: pulling, copying, layouts, unpacking (tar, gzip), mirrors.
NOT_FOR_PUSH = (
    "puller.pull",
    "puller.mirrors",
    "puller.copy",
    "puller.layout",
    "puller.store.unpack",
    "puller.store.tarsafe",
    "puller.store.rootfs",
    "regclient.registries_conf",
    "tarfile",
    "gzip",
)


def test_push_imports_only_what_a_push_needs(
    docker_registry: DockerRegistry, home: GraphStore, tmp_path: Path
) -> None:
    """Start-up is a third of a `pyreg push`: a real push, in a fresh interpreter, imports
    none of the other commands' modules (docs/performance.md)."""
    ref = f"{docker_registry.host}/cli/imports:v1"
    put_image(home, str(Reference.parse(ref)), sample_image())
    code = (
        "import json, sys\n"
        "from pyreg.cli import main\n"
        f"status = main(['push', '-q', {ref!r}])\n"
        f"print(json.dumps([status, [m for m in {NOT_FOR_PUSH!r} if m in sys.modules]]))\n"
    )
    env = {**os.environ, "PYREG_HOME": str(home.root), "DOCKER_CONFIG": str(tmp_path / "docker")}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == [0, []]
