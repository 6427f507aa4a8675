"""HTTPS end to end with a CA made by the test: skopeo (`--cert-dir`), podman (`--cert-dir`)
and pyreg's client (trusting the CA through SSL_CERT_FILE) push and pull; another CA is
refused; a renewed certificate is served without a restart, by every worker; with
`client_ca`, a client certificate from that CA is required."""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography import x509

from registry.tls import ReloadingContext, TLSError, TLSFiles, new_context
from tests.support.images import Image, sample_image, write_oci_layout
from tests.support.server import REPO_ROOT, RegistryServer
from tests.support.tls import TestCA, loopback_name

pytestmark = pytest.mark.interop


@dataclass
class PKI:
    ca: TestCA
    ca_file: Path
    cert_dir: Path  # ca.crt only: what skopeo and podman read with --cert-dir
    other_ca_file: Path
    other_cert_dir: Path
    cert: Path
    key: Path
    names: list[str]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    root = tmp_path_factory.mktemp("pki")
    ca, other = TestCA("pyreg test CA"), TestCA("some other CA")
    names = ["localhost"] + ([n] if (n := loopback_name()) else [])
    cert, key = ca.issue(root / "server", dns=names, ips=["127.0.0.1"])
    return PKI(
        ca=ca,
        ca_file=ca.write(root / "ca.pem"),
        cert_dir=ca.write(root / "certs" / "ca.crt").parent,
        other_ca_file=other.write(root / "other.pem"),
        other_cert_dir=other.write(root / "other-certs" / "ca.crt").parent,
        cert=cert,
        key=key,
        names=names,
    )


def _client_context(ca_file: Path, cert: tuple[Path, Path] | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca_file))
    if cert is not None:
        context.load_cert_chain(str(cert[0]), str(cert[1]))
    return context


def _tls_server(
    storage: Path, tls: dict[str, str], workers: int = 1, **kw: object
) -> RegistryServer:
    config = {"tls": tls, "workers": workers}
    return RegistryServer(f"file://{storage}", config=config, **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def server(pki: PKI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    storage = tmp_path_factory.mktemp("tls") / "storage"
    tls = {"certificate": str(pki.cert), "key": str(pki.key)}
    with _tls_server(
        storage, tls, probe_options={"verify": _client_context(pki.ca_file)}
    ) as running:
        yield running


@pytest.fixture(scope="module")
def image() -> Image:
    return sample_image()


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is not installed")
    return path


def _run(*argv: str, env: dict[str, str] | None = None, ok: bool = True) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=180, env=env)
    if ok:
        assert done.returncode == 0, f"{argv}: {done.stderr}"
    else:
        assert done.returncode != 0, f"{argv} should have failed"
    return done.stdout + done.stderr


def _host(server: RegistryServer) -> str:
    return f"127.0.0.1:{server.port}"


@pytest.fixture(scope="module")
def pushed(
    server: RegistryServer, pki: PKI, image: Image, tmp_path_factory: pytest.TempPathFactory
) -> str:
    """The sample image copied in by skopeo over HTTPS, trusting the CA from --cert-dir."""
    skopeo = _need("skopeo")
    layout = write_oci_layout(tmp_path_factory.mktemp("layout") / "in", {"v1": image})
    ref = f"{_host(server)}/tls/app:v1"
    _run(
        skopeo, "copy", "--preserve-digests", "--dest-cert-dir", str(pki.cert_dir),
        f"oci:{layout}:v1", f"docker://{ref}",
    )  # fmt: skip
    return ref


def test_https_answers_with_the_right_ca_and_is_refused_with_another(
    server: RegistryServer, pki: PKI
) -> None:
    assert server.url.startswith("https://")
    assert httpx.get(f"{server.url}/v2/", verify=_client_context(pki.ca_file)).status_code == 200
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{server.url}/v2/", verify=_client_context(pki.other_ca_file))
    with pytest.raises(httpx.RemoteProtocolError):  # plain HTTP to the TLS port
        httpx.get(f"http://127.0.0.1:{server.port}/v2/")


def test_skopeo_pushes_and_pulls_over_https_and_refuses_another_ca(
    pushed: str, pki: PKI, image: Image
) -> None:
    skopeo = _need("skopeo")
    out = _run(skopeo, "inspect", "--raw", "--cert-dir", str(pki.cert_dir), f"docker://{pushed}")
    assert out.encode() == image.manifest
    refused = _run(
        skopeo, "inspect", "--raw", "--cert-dir", str(pki.other_cert_dir), f"docker://{pushed}",
        ok=False,
    )  # fmt: skip
    assert "certificate" in refused


@pytest.fixture
def podman(tmp_path: Path) -> Iterator[tuple[list[str], dict[str, str]]]:
    binary = _need("podman")
    auth = tmp_path / "auth.json"
    auth.write_text('{"auths": {}}')
    env = {**os.environ, "REGISTRY_AUTH_FILE": str(auth)}
    runroot = Path(tempfile.mkdtemp(prefix="pyreg-"))  # podman wants a short runroot
    base = [
        binary, "--root", str(tmp_path / "root"), "--runroot", str(runroot),
        "--storage-driver", "vfs", "--cgroup-manager", "cgroupfs", "--events-backend", "file",
    ]  # fmt: skip
    probe = subprocess.run([*base, "info"], capture_output=True, text=True, timeout=60, env=env)
    if probe.returncode != 0:
        shutil.rmtree(runroot, ignore_errors=True)
        pytest.skip(f"podman cannot run in this sandbox: {probe.stderr.strip()[:300]}")
    yield base, env
    shutil.rmtree(runroot, ignore_errors=True)


def test_podman_pulls_and_pushes_over_https_with_cert_dir(
    podman: tuple[list[str], dict[str, str]],
    pushed: str,
    pki: PKI,
    image: Image,
    server: RegistryServer,
) -> None:
    base, env = podman
    refused = _run(*base, "pull", "--cert-dir", str(pki.other_cert_dir), pushed, env=env, ok=False)
    assert "certificate" in refused
    _run(*base, "pull", "--cert-dir", str(pki.cert_dir), pushed, env=env)
    back = f"{_host(server)}/tls/podman-back:v1"
    _run(*base, "push", "--cert-dir", str(pki.cert_dir), pushed, back, env=env)
    resp = httpx.get(
        f"{server.url}/v2/tls/podman-back/tags/list", verify=_client_context(pki.ca_file)
    )
    assert resp.json()["tags"] == ["v1"]


def _pyreg(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "pyreg", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=180, env=env, cwd=REPO_ROOT)


def test_pyreg_client_pulls_and_pushes_over_https_trusting_the_ca(
    pushed: str, pki: PKI, image: Image, server: RegistryServer, tmp_path: Path
) -> None:
    # pyreg's client speaks plain HTTP to localhost and loopback IPs (as docker does): reach
    # the server by another name of this machine, which the certificate also carries.
    name = loopback_name()
    if name is None:
        pytest.skip("no host name other than localhost resolves to 127.0.0.1 here")
    host = f"{name}:{server.port}"
    env = {**os.environ, "PYREG_HOME": str(tmp_path / "home"), "DOCKER_CONFIG": str(tmp_path)}
    env.pop("SSL_CERT_DIR", None)
    source = f"{host}/tls/app:v1"
    refused = _pyreg("pull", source, env={**env, "SSL_CERT_FILE": str(pki.other_ca_file)})
    assert refused.returncode != 0
    assert "certificate" in (refused.stdout + refused.stderr).lower()
    trusted = {**env, "SSL_CERT_FILE": str(pki.ca_file)}
    pulled = _pyreg("pull", source, env=trusted)
    assert pulled.returncode == 0, pulled.stderr
    target = f"{host}/tls/pyreg-back:v1"
    assert _pyreg("tag", source, target, env=trusted).returncode == 0
    pushed_back = _pyreg("push", target, env=trusted)
    assert pushed_back.returncode == 0, pushed_back.stderr
    resp = httpx.get(
        f"{server.url}/v2/tls/pyreg-back/manifests/v1", verify=_client_context(pki.ca_file)
    )
    assert resp.headers["Docker-Content-Digest"] == str(image.digest)


def _served_serial(port: int, ca_file: Path, cert: tuple[Path, Path] | None = None) -> int:
    context = ssl.create_default_context(cafile=str(ca_file))
    if cert is not None:
        context.load_cert_chain(str(cert[0]), str(cert[1]))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            der = tls.getpeercert(binary_form=True)
    assert der is not None
    return int(x509.load_der_x509_certificate(der).serial_number)


def test_a_renewed_certificate_is_served_without_restart_by_every_worker(
    pki: PKI, tmp_path: Path
) -> None:
    live = tmp_path / "live"
    cert, key = pki.ca.issue(live / "server", dns=["localhost"], ips=["127.0.0.1"])
    tls = {"certificate": str(cert), "key": str(key)}
    probe = {"verify": _client_context(pki.ca_file)}
    with _tls_server(tmp_path / "storage", tls, workers=2, probe_options=probe) as server:
        first = _served_serial(server.port, pki.ca_file)
        pid = server.pid
        # a renewal as certbot does it: new files, renamed over the old ones
        new_cert, new_key = pki.ca.issue(tmp_path / "renewed" / "server", ips=["127.0.0.1"])
        renewed = x509.load_pem_x509_certificate(new_cert.read_bytes()).serial_number
        assert renewed != first
        os.replace(new_key, key)
        os.replace(new_cert, cert)
        deadline = time.monotonic() + 60
        seen: list[int] = []
        while time.monotonic() < deadline:
            # several new connections land on both workers (the kernel spreads accepts)
            seen = [_served_serial(server.port, pki.ca_file) for _ in range(12)]
            if set(seen) == {renewed}:
                break
            time.sleep(0.5)
        assert set(seen) == {renewed}
        assert server.pid == pid  # same process: no restart


def test_a_half_written_renewal_keeps_the_old_pair_until_it_is_whole(
    pki: PKI, tmp_path: Path
) -> None:
    cert, key = pki.ca.issue(tmp_path / "a" / "server", ips=["127.0.0.1"])
    reloading = ReloadingContext(TLSFiles(str(cert), str(key)))
    assert not reloading.reload_if_changed()  # nothing changed
    new_cert, new_key = pki.ca.issue(tmp_path / "b" / "server", ips=["127.0.0.1"])
    os.replace(new_cert, cert)  # the certificate is new, its key not there yet
    assert not reloading.reload_if_changed()
    assert reloading.reloads == 0
    os.replace(new_key, key)
    assert reloading.reload_if_changed()
    assert reloading.reloads == 1


def test_client_certificates_are_required_with_client_ca(pki: PKI, tmp_path: Path) -> None:
    clients = TestCA("client CA")
    client_ca = clients.write(tmp_path / "client-ca.pem")
    good = clients.issue(tmp_path / "alice", common_name="alice", client=True)
    stranger = TestCA("stranger CA").issue(tmp_path / "mallory", client=True)
    tls = {"certificate": str(pki.cert), "key": str(pki.key), "client_ca": str(client_ca)}
    probe = {"verify": _client_context(pki.ca_file, good)}
    with _tls_server(tmp_path / "storage", tls, probe_options=probe) as server:
        url = f"{server.url}/v2/"
        assert httpx.get(url, verify=_client_context(pki.ca_file, good)).status_code == 200
        for cert in (None, stranger):
            with pytest.raises(httpx.TransportError):
                httpx.get(url, verify=_client_context(pki.ca_file, cert))


def test_unusable_tls_files_are_one_line_at_start_up(pki: PKI, tmp_path: Path) -> None:
    other_key = pki.ca.issue(tmp_path / "x", ips=["127.0.0.1"])[1]
    cases = [
        ["--tls-cert", str(tmp_path / "missing.crt"), "--tls-key", str(pki.key)],
        ["--tls-cert", str(pki.cert), "--tls-key", str(other_key)],  # not its key
        ["--tls-cert", str(pki.cert)],  # no key
    ]
    for flags in cases:
        done = _pyreg(
            "serve", "--storage", "memory://", "--port", "0", *flags, env=dict(os.environ)
        )
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith("pyreg serve: ")
        assert "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1


def test_new_context_refuses_old_protocols_and_wants_client_certs_with_a_ca(
    pki: PKI,
) -> None:
    plain = new_context(TLSFiles(str(pki.cert), str(pki.key)))
    assert plain.minimum_version == ssl.TLSVersion.TLSv1_2
    assert plain.verify_mode == ssl.CERT_NONE
    strict = new_context(TLSFiles(str(pki.cert), str(pki.key), str(pki.ca_file)))
    assert strict.verify_mode == ssl.CERT_REQUIRED
    with pytest.raises(TLSError):
        new_context(TLSFiles(str(pki.cert), str(pki.cert)))
