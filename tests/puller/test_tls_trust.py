"""TLS trust of the client against a real `pyreg serve --tls-cert` on loopback, with a CA made
by the test: `--cert-dir` (skopeo), docker's and containers' certs.d layouts (roots from
PYREG_CERTS_DIRS), client certificates, `--tls-verify`, and loopback registries tried over
HTTPS first with plain HTTP as the fallback (docker)."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from regclient.tls import TLSConfigError, TLSOptions, cert_dirs, client_context, system_context
from tests.support.images import sample_image, write_oci_layout
from tests.support.server import REPO_ROOT, RegistryServer
from tests.support.tls import TestCA


@dataclass
class PKI:
    ca: TestCA
    cert_dir: Path  # ca.crt only (skopeo's --cert-dir)
    cert: Path
    key: Path
    client_cert: Path
    client_key: Path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    root = tmp_path_factory.mktemp("pki")
    ca = TestCA("pyreg client-trust CA")
    cert, key = ca.issue(root / "server", dns=["localhost"], ips=["127.0.0.1"])
    client_cert, client_key = ca.issue(root / "client", client=True)
    return PKI(ca, ca.write(root / "certs" / "ca.crt").parent, cert, key, client_cert, client_key)


def _serve(
    tmp: Path, tls: dict[str, str] | None, probe: ssl.SSLContext | None = None
) -> RegistryServer:
    config: dict[str, object] = {"tls": tls} if tls else {}
    options = {"verify": probe or False}
    return RegistryServer(f"file://{tmp / 'storage'}", config=config, probe_options=options)


@pytest.fixture(scope="module")
def tls_server(pki: PKI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    tls = {"certificate": str(pki.cert), "key": str(pki.key)}
    with _serve(tmp_path_factory.mktemp("tls"), tls) as server:
        yield server


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A client home with the sample image loaded as `local/app:v1`."""
    root = tmp_path_factory.mktemp("client")
    layout = write_oci_layout(root / "layout", {"v1": sample_image()})
    done = _pyreg(_env(root), "load", "-r", "local/app", str(layout))
    assert done.returncode == 0, done.stderr
    return root


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "PYREG_HOME": str(home / "store"), "DOCKER_CONFIG": str(home / "docker")}
    env["PYREG_CERTS_DIRS"] = str(home / "no-certs.d")  # not the machine's: only the test's
    env.pop("SSL_CERT_FILE", None)
    env.pop("SSL_CERT_DIR", None)
    return {**env, **extra}


def _pyreg(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "pyreg", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=180, env=env, cwd=REPO_ROOT)


def _push(home: Path, env: dict[str, str], target: str, *flags: str) -> None:
    assert _pyreg(env, "tag", "local/app:v1", target).returncode == 0
    done = _pyreg(env, "push", *flags, target)
    assert done.returncode == 0, done.stderr


def test_tls_verify_trusts_a_ca_from_cert_dir_and_refuses_without_it(
    tls_server: RegistryServer, home: Path, pki: PKI
) -> None:
    env = _env(home)
    ref = f"127.0.0.1:{tls_server.port}/trust/app:v1"
    _push(home, env, ref, "--tls-verify=true", "--cert-dir", str(pki.cert_dir))
    refused = _pyreg(env, "pull", "--tls-verify=true", ref)
    assert refused.returncode == 1
    assert "certificate" in refused.stderr.lower(), refused.stderr
    assert "--cert-dir" in refused.stderr and refused.stderr.count("\n") == 1  # one line, a hint
    pulled = _pyreg(env, "pull", "--tls-verify=true", "--cert-dir", str(pki.cert_dir), ref)
    assert pulled.returncode == 0, pulled.stderr


@pytest.mark.parametrize("layout", ["docker", "containers"])
def test_certs_d_layout_gives_the_ca_per_host_and_port(
    tls_server: RegistryServer, home: Path, pki: PKI, tmp_path: Path, layout: str
) -> None:
    host = f"127.0.0.1:{tls_server.port}"
    roots = [tmp_path / "containers" / "certs.d", tmp_path / "docker" / "certs.d"]
    root = roots[0] if layout == "containers" else roots[1]
    pki.ca.write(root / host / "ca.crt")
    pki.ca.write(root / "127.0.0.1:1" / "ca.crt")  # another port: not ours, harmless
    env = _env(home, PYREG_CERTS_DIRS=os.pathsep.join(str(r) for r in roots))
    ref = f"{host}/trust/app:v1"
    _push(home, env, f"{host}/trust/app:v1", "--tls-verify=true", "--cert-dir", str(pki.cert_dir))
    pulled = _pyreg(env, "pull", "--tls-verify=true", ref)
    assert pulled.returncode == 0, pulled.stderr


def test_loopback_tls_registry_works_without_flags(tls_server: RegistryServer, home: Path) -> None:
    """An SSH tunnel on localhost to a TLS registry: HTTPS first, as docker (127.0.0.0/8 is
    insecure by default); before, plain HTTP was sent and the server hung up."""
    env = _env(home)
    ref = f"127.0.0.1:{tls_server.port}/tunnel/app:v1"
    _push(home, env, ref)
    pulled = _pyreg(env, "pull", ref)
    assert pulled.returncode == 0, pulled.stderr


def test_loopback_plain_http_registry_falls_back_unless_tls_verify(
    home: Path, tmp_path: Path
) -> None:
    env = _env(home)
    with _serve(tmp_path, None) as plain:
        ref = f"127.0.0.1:{plain.port}/plain/app:v1"
        _push(home, env, ref)
        assert _pyreg(env, "pull", ref).returncode == 0
        forced = _pyreg(env, "pull", "--tls-verify=true", ref)
        assert forced.returncode == 1
        assert "the registry does not speak TLS" in forced.stderr, forced.stderr


def test_client_certificate_from_certs_d(
    pki: PKI, home: Path, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    client_ca = str(pki.ca.write(tmp_path / "client-ca.pem"))
    tls = {"certificate": str(pki.cert), "key": str(pki.key), "client_ca": client_ca}
    probe = ssl.create_default_context(cafile=client_ca)
    probe.load_cert_chain(str(pki.client_cert), str(pki.client_key))
    with _serve(tmp_path_factory.mktemp("mtls"), tls, probe) as server:
        host = f"127.0.0.1:{server.port}"
        ref = f"{host}/mtls/app:v1"
        assert _pyreg(_env(home), "tag", "local/app:v1", ref).returncode == 0
        ca_only = ("--tls-verify=true", "--cert-dir", str(pki.cert_dir))
        refused = _pyreg(_env(home), "push", *ca_only, ref)
        assert refused.returncode == 1
        certs = tmp_path / "certs.d"
        pki.ca.write(certs / host / "ca.crt")
        (certs / host / "client.cert").write_bytes(pki.client_cert.read_bytes())
        (certs / host / "client.key").write_bytes(pki.client_key.read_bytes())
        env = _env(home, PYREG_CERTS_DIRS=str(certs))
        pushed = _pyreg(env, "push", "--tls-verify=true", ref)
        assert pushed.returncode == 0, pushed.stderr


def test_verification_defaults() -> None:
    assert TLSOptions().verifies("registry.example")
    assert not TLSOptions().verifies("registry.example", insecure=True)
    assert not TLSOptions().verifies("127.0.0.1:5000")
    assert not TLSOptions().verifies("localhost:5000")
    assert TLSOptions(verify=True).verifies("localhost:5000")
    assert not TLSOptions(verify=False).verifies("registry.example")
    assert TLSOptions().falls_back("[::1]:5000")
    assert not TLSOptions().falls_back("registry.example")


def test_system_store_through_truststore() -> None:
    truststore = pytest.importorskip("truststore")
    assert isinstance(system_context(), truststore.SSLContext)


def test_a_client_cert_without_its_key_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "registry.example"
    directory.mkdir()
    (directory / "client.cert").write_text("x")
    monkeypatch.setenv("PYREG_CERTS_DIRS", str(tmp_path))
    assert cert_dirs("registry.example") == [directory]
    assert cert_dirs("other.example") == []
    with pytest.raises(TLSConfigError, match=r"no key client\.key"):
        client_context("registry.example")
    # an unverified context still takes no CA file, but a broken CA file is reported verified
    (directory / "client.cert").unlink()
    (directory / "ca.crt").write_text("not a certificate")
    with pytest.raises(TLSConfigError, match=r"ca\.crt"):
        client_context("registry.example")
    assert isinstance(client_context("registry.example", verify=False), ssl.SSLContext)
