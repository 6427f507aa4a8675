"""Foreign (non-distributable) layers in the client (puller/foreign.py), end to end: a real
`pyreg serve` with token auth, a loopback HTTP server (started here) hosting the foreign blob
and recording what it was sent, the `pyreg` command in process; the reference registry and
skopeo for interop."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import httpx
import pytest

from ocispec import mediatypes as mt
from ocispec.digest import digest_bytes
from ocispec.models import Descriptor
from ocispec.reference import Reference
from puller.foreign import usable_urls
from puller.store import GraphStore
from pyreg.cli import main
from regclient.api import RegistryClient
from tests.puller.conftest import put_image
from tests.support.auth import auth_section
from tests.support.docker_registry import start_registry
from tests.support.images import Image, build_image, file
from tests.support.loopback_http import LoopbackHTTPServer
from tests.support.server import RegistryServer

USERS = {"alice": "alice-pw"}
RULES: list[dict[str, Any]] = [
    {"repository": "private/**", "pull": ["alice"], "push": ["alice"]},
    {
        "repository": "open/**",
        "pull": ["anonymous"],
        "push": ["anonymous"],
        "delete": ["anonymous"],
    },
]


@dataclass
class BlobHost:
    """Serves `files` (path -> bytes) on 127.0.0.1; records (path, Authorization) per GET."""

    files: dict[str, bytes] = field(default_factory=dict)
    seen: list[tuple[str, str | None]] = field(default_factory=list)
    port: int = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture(scope="module")
def blob_host() -> Iterator[BlobHost]:
    host = BlobHost()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            host.seen.append((self.path, self.headers.get("Authorization")))
            body = host.files.get(self.path)
            if body is None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)  # Range is ignored: the client must cope
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = LoopbackHTTPServer(Handler)
    host.port = server.port
    server.start()
    try:
        yield host
    finally:
        server.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    root = tmp_path_factory.mktemp("foreign")
    (root / "auth").mkdir()
    auth = auth_section(root / "auth", USERS, RULES)
    with RegistryServer(f"file://{root / 'storage'}", {"auth": auth}) as running:
        yield running


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> GraphStore:
    monkeypatch.setenv("PYREG_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    monkeypatch.delenv("PYREG_ALLOW_NONDISTRIBUTABLE", raising=False)
    return GraphStore(tmp_path / "home")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def foreign_image(urls: list[str], tag: str) -> Image:
    """Two layers; the second is non-distributable with `urls` (unique content per `tag`)."""
    image = build_image([[file("base", b"base")], [file("licensed", tag.encode() * 64)]])
    manifest = json.loads(image.manifest)
    manifest["layers"][1]["mediaType"] = mt.OCI_LAYER_ND_GZIP
    manifest["layers"][1]["urls"] = urls
    return dataclasses.replace(image, manifest=json.dumps(manifest).encode())


def foreign_blob(image: Image) -> bytes:
    return image.layers[1].blob


def login(capsys: pytest.CaptureFixture[str], server: RegistryServer, monkeypatch: Any) -> None:
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO("alice-pw\n"))
    code, _, err = run(
        capsys, "login", f"127.0.0.1:{server.port}", "-u", "alice", "--password-stdin"
    )
    assert code == 0, err


def push(
    capsys: pytest.CaptureFixture[str], home: GraphStore, ref: str, image: Image, *flags: str
) -> str:
    put_image(home, str(Reference.parse(ref)), image)
    code, out, err = run(capsys, "push", ref, *flags)
    assert code == 0, err
    return out


def head_blob(server: RegistryServer, repo: str, digest: Any, token: str | None = None) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = httpx.head(f"{server.url}/v2/{repo}/blobs/{digest}", headers=headers)
    return response.status_code


def raw_manifest(server: RegistryServer, repo: str, tag: str) -> bytes:
    response = httpx.get(
        f"{server.url}/v2/{repo}/manifests/{tag}", headers={"Accept": mt.OCI_MANIFEST}
    )
    assert response.status_code == 200, response.text
    return response.content


def fresh_home(home: GraphStore, tmp_path: Path, monkeypatch: Any, name: str) -> GraphStore:
    monkeypatch.setenv("PYREG_HOME", str(tmp_path / name))
    return GraphStore(tmp_path / name)


# -- push ----------------------------------------------------------------------------------------


def test_push_leaves_a_foreign_layer_at_its_urls_and_uploads_it_when_allowed(
    server: RegistryServer,
    blob_host: BlobHost,
    home: GraphStore,
    capsys: pytest.CaptureFixture[str],
) -> None:
    host = f"127.0.0.1:{server.port}"
    image = foreign_image([blob_host.url("/push/layer")], "push")
    out = push(capsys, home, f"{host}/open/pushed:v1", image)
    assert "1 foreign left at their URLs" in out
    layer = image.layers[1].digest
    assert head_blob(server, "open/pushed", layer) == 404  # not uploaded
    assert head_blob(server, "open/pushed", image.layers[0].digest) == 200
    assert raw_manifest(server, "open/pushed", "v1") == image.manifest  # urls kept, same digest

    push(capsys, home, f"{host}/open/uploaded:v1", image, "--allow-nondistributable")
    assert head_blob(server, "open/uploaded", layer) == 200
    assert raw_manifest(server, "open/uploaded", "v1") == image.manifest
    assert blob_host.seen == [] or all(p != "/push/layer" for p, _ in blob_host.seen)


# -- pull ----------------------------------------------------------------------------------------


def test_pull_without_the_flag_says_what_to_do(
    server: RegistryServer,
    blob_host: BlobHost,
    home: GraphStore,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    host = f"127.0.0.1:{server.port}"
    image = foreign_image([blob_host.url("/noflag/layer")], "noflag")
    blob_host.files["/noflag/layer"] = foreign_blob(image)
    push(capsys, home, f"{host}/open/noflag:v1", image)
    fresh_home(home, tmp_path, monkeypatch, "puller")
    code, _, err = run(capsys, "pull", f"{host}/open/noflag:v1")
    assert code == 1
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert f"layer {image.layers[1].digest} is non-distributable" in err
    assert "--allow-nondistributable" in err and blob_host.url("/noflag/layer") in err
    assert all(p != "/noflag/layer" for p, _ in blob_host.seen)  # nothing fetched


def test_pull_fetches_from_the_url_verified_and_without_credentials(
    server: RegistryServer,
    blob_host: BlobHost,
    home: GraphStore,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    host = f"127.0.0.1:{server.port}"
    login(capsys, server, monkeypatch)
    image = foreign_image([blob_host.url("/private/layer")], "private")
    blob_host.files["/private/layer"] = foreign_blob(image)
    push(capsys, home, f"{host}/private/app:v1", image)
    puller = fresh_home(home, tmp_path, monkeypatch, "puller")
    code, _, err = run(capsys, "pull", "--allow-nondistributable", f"{host}/private/app:v1")
    assert code == 0, err
    fetched = [auth for path, auth in blob_host.seen if path == "/private/layer"]
    assert fetched == [None]  # fetched once, and no Authorization reached the URL's host
    assert puller.content.read_bytes(image.layers[1].digest) == foreign_blob(image)
    assert puller.images.get(f"{host}/private/app:v1") == image.digest

    # the environment knob does the same
    monkeypatch.setenv("PYREG_ALLOW_NONDISTRIBUTABLE", "1")
    fresh_home(home, tmp_path, monkeypatch, "by-env")
    code, _, err = run(capsys, "pull", f"{host}/private/app:v1")
    assert code == 0, err


def test_a_url_serving_other_bytes_is_refused_and_the_next_one_used(
    server: RegistryServer,
    blob_host: BlobHost,
    home: GraphStore,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    host = f"127.0.0.1:{server.port}"
    bad, good = "/tampered/layer", "/tampered/mirror"
    image = foreign_image([blob_host.url(bad), blob_host.url(good)], "tampered")
    right = foreign_blob(image)
    blob_host.files[bad] = right[:-1] + bytes([right[-1] ^ 0xFF])  # same size, other bytes
    push(capsys, home, f"{host}/open/tampered:v1", image)

    only_bad = foreign_image([blob_host.url(bad)], "tampered")
    push(capsys, home, f"{host}/open/tampered-only:v1", only_bad)
    fresh_home(home, tmp_path, monkeypatch, "refuses")
    code, _, err = run(capsys, "pull", "--allow-nondistributable", f"{host}/open/tampered-only:v1")
    assert code == 1
    assert "none of its URLs served it" in err and blob_host.url(bad) in err, err
    assert "digest" in err.lower() and err.count("\n") == 1

    blob_host.files[good] = right
    puller = fresh_home(home, tmp_path, monkeypatch, "recovers")
    code, _, err = run(capsys, "pull", "--allow-nondistributable", f"{host}/open/tampered:v1")
    assert code == 0, err
    assert puller.content.read_bytes(image.layers[1].digest) == right
    assert [p for p, _ in blob_host.seen if p == good] == [good]


def test_only_http_urls_are_usable() -> None:
    layer = Descriptor(
        mt.OCI_LAYER_ND_GZIP,
        digest_bytes(b"x"),
        1,
        urls=("ftp://h/x", "file:///etc/passwd", "https:///nohost", "http://h/x", "https://h/y"),
    )
    assert usable_urls(layer) == ["http://h/x", "https://h/y"]


def test_a_layer_with_no_usable_url_gives_one_line_naming_it(
    server: RegistryServer,
    home: GraphStore,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    host = f"127.0.0.1:{server.port}"
    # non-distributable by media type, without urls; the registry had it and lost it
    image = build_image([[file("a", b"a")], [file("b", b"unusable")]])
    manifest = json.loads(image.manifest)
    manifest["layers"][1]["mediaType"] = mt.OCI_LAYER_ND_GZIP
    image = dataclasses.replace(image, manifest=json.dumps(manifest).encode())
    ref = f"{host}/open/nourls:v1"
    push(capsys, home, ref, image)

    async def delete() -> None:
        async with RegistryClient(host) as client:
            await client.delete_blob("open/nourls", image.layers[1].digest)

    asyncio.run(delete())
    fresh_home(home, tmp_path, monkeypatch, "nourls")
    code, _, err = run(capsys, "pull", "--allow-nondistributable", ref)
    assert code == 1
    assert f"layer {image.layers[1].digest}" in err and "no http(s) URL" in err, err
    assert err.count("\n") == 1


def test_the_registry_copy_is_used_first(
    server: RegistryServer,
    blob_host: BlobHost,
    home: GraphStore,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    host = f"127.0.0.1:{server.port}"
    image = foreign_image([blob_host.url("/held/layer")], "held")
    push(capsys, home, f"{host}/open/held:v1", image, "--allow-nondistributable")
    puller = fresh_home(home, tmp_path, monkeypatch, "held")
    code, _, err = run(capsys, "pull", f"{host}/open/held:v1")  # no flag needed
    assert code == 0, err
    assert puller.content.read_bytes(image.layers[1].digest) == foreign_blob(image)
    assert all(p != "/held/layer" for p, _ in blob_host.seen)


# -- copy ----------------------------------------------------------------------------------------


def test_copy_keeps_the_reference_or_copies_from_the_url(
    server: RegistryServer,
    blob_host: BlobHost,
    home: GraphStore,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    host = f"127.0.0.1:{server.port}"
    image = foreign_image([blob_host.url("/copy/layer")], "copy")
    blob_host.files["/copy/layer"] = foreign_blob(image)
    push(capsys, home, f"{host}/open/copy-src:v1", image)
    with RegistryServer(f"file://{tmp_path / 'other'}") as other:
        dst = f"127.0.0.1:{other.port}"
        code, _, err = run(capsys, "copy", f"{host}/open/copy-src:v1", f"{dst}/ref:v1")
        assert code == 0, err
        assert head_blob(other, "ref", image.layers[1].digest) == 404
        assert raw_manifest(other, "ref", "v1") == image.manifest
        assert all(p != "/copy/layer" for p, _ in blob_host.seen)

        code, _, err = run(
            capsys, "copy", "--allow-nondistributable", f"{host}/open/copy-src:v1", f"{dst}/full:v1"
        )
        assert code == 0, err
        assert head_blob(other, "full", image.layers[1].digest) == 200
        assert raw_manifest(other, "full", "v1") == image.manifest
        assert [a for p, a in blob_host.seen if p == "/copy/layer"] == [None]

        # a URL serving other bytes: the upload is not completed, the next URL is used
        bad, good = "/copy/tampered", "/copy/good"
        second = foreign_image([blob_host.url(bad), blob_host.url(good)], "copy-tampered")
        right = foreign_blob(second)
        blob_host.files[bad] = right[:-1] + bytes([right[-1] ^ 0xFF])
        blob_host.files[good] = right
        push(capsys, home, f"{host}/open/copy-tampered:v1", second)
        code, _, err = run(
            capsys, "copy", "--allow-nondistributable",
            f"{host}/open/copy-tampered:v1", f"{dst}/tampered:v1",
        )  # fmt: skip
        assert code == 0, err
        blob = httpx.get(f"{other.url}/v2/tampered/blobs/{second.layers[1].digest}")
        assert blob.status_code == 200 and blob.content == right
        assert [p for p, _ in blob_host.seen if p in (bad, good)] == [bad, good]


# -- interop -------------------------------------------------------------------------------------


def test_skopeo_reads_and_copies_the_pushed_reference(
    server: RegistryServer,
    blob_host: BlobHost,
    home: GraphStore,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    skopeo = shutil.which("skopeo")
    if skopeo is None:
        pytest.skip("skopeo is not installed")
    host = f"127.0.0.1:{server.port}"
    image = foreign_image([blob_host.url("/skopeo/layer")], "skopeo")
    push(capsys, home, f"{host}/open/skopeo:v1", image)
    tls = "--tls-verify=false"
    raw = subprocess.run(
        [skopeo, "inspect", tls, "--raw", f"docker://{host}/open/skopeo:v1"],
        capture_output=True,
        timeout=120,
    )
    assert raw.returncode == 0, raw.stderr
    assert raw.stdout == image.manifest
    copied = subprocess.run(
        [skopeo, "copy", "--src-tls-verify=false", "--dest-tls-verify=false",
         f"docker://{host}/open/skopeo:v1", f"docker://{host}/open/skopeo-copy:v1"],
        capture_output=True, timeout=120, text=True,
    )  # fmt: skip
    assert copied.returncode == 0, copied.stderr
    # containers/image skips a layer with urls to a registry; pyreg takes the manifest
    assert head_blob(server, "open/skopeo-copy", image.layers[1].digest) == 404
    assert digest_bytes(raw_manifest(server, "open/skopeo-copy", "v1")) == image.digest
    # to a directory, skopeo fetches the layer from its URL, as pyreg pull does with the flag
    blob_host.files["/skopeo/layer"] = foreign_blob(image)
    out = tmp_path / "dir"
    fetched = subprocess.run(
        [skopeo, "copy", "--src-tls-verify=false", f"docker://{host}/open/skopeo:v1", f"dir:{out}"],
        capture_output=True, timeout=120, text=True,
    )  # fmt: skip
    assert fetched.returncode == 0, fetched.stderr
    assert (out / image.layers[1].digest.hex).read_bytes() == foreign_blob(image)
    assert [a for p, a in blob_host.seen if p == "/skopeo/layer"] == [None]


def test_reference_registry_takes_the_reference_and_pull_follows_the_url(
    blob_host: BlobHost,
    home: GraphStore,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    allow = (
        "validation:\n  manifests:\n    urls:\n      allow:\n        - '^http://127\\.0\\.0\\.1:'\n"
    )
    reference = start_registry(tmp_path / "distribution", extra_config=allow)
    try:
        image = foreign_image([blob_host.url("/dist/layer")], "distribution")
        blob_host.files["/dist/layer"] = foreign_blob(image)
        ref = f"{reference.host}/foreign:v1"
        push(capsys, home, ref, image)
        puller = fresh_home(home, tmp_path, monkeypatch, "from-distribution")
        code, _, err = run(capsys, "pull", "--allow-nondistributable", ref)
        assert code == 0, err
        assert puller.content.read_bytes(image.layers[1].digest) == foreign_blob(image)
        assert [a for p, a in blob_host.seen if p == "/dist/layer"] == [None]
    finally:
        reference.stop()
    # its default ("allow nothing") refuses the same push; the client says so in one line
    strict = start_registry(tmp_path / "strict")
    try:
        ref = f"{strict.host}/foreign:v1"
        put_image(puller, str(Reference.parse(ref)), image)
        code, _, err = run(capsys, "push", ref)
        assert code == 1 and err.count("\n") == 1, err
        assert "MANIFEST_BLOB_UNKNOWN" in err and "1 foreign layer at its URLs" in err, err
        assert "--allow-nondistributable uploads them" in err
    finally:
        strict.stop()
