"""Real clients against a real `pyreg serve` with access control on: skopeo and podman log in
through the token service, push to and pull from a private repository, and pull anonymously
from a public one. Each tool's test skips when the tool is not installed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.auth import auth_section
from tests.support.images import build_image, file, write_oci_layout
from tests.support.server import RegistryServer

pytestmark = pytest.mark.interop

# How the tools word a refusal by access control (as opposed to some unrelated failure).
# How each client words a refusal by access control (pyreg's own: "not authorized (401)").
REFUSED = (
    "unauthorized",
    "denied",
    "authentication required",
    "invalid username",
    "http 401",
    "not authorized (401)",
)
USERS = {"alice": "alice-pw", "bob": "bob-pw"}
RULES: list[dict[str, Any]] = [
    {"repository": "library/*", "pull": ["anonymous"], "push": ["alice"]},
    {"repository": "private/**", "pull": ["alice"], "push": ["alice"], "delete": ["alice"]},
]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RegistryServer]:
    (tmp_path / "auth").mkdir()
    auth = auth_section(tmp_path / "auth", USERS, RULES)
    with RegistryServer(f"file://{tmp_path / 'storage'}", {"auth": auth}) as running:
        yield running


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """podman refuses a runroot longer than 50 characters; pytest's tmp_path is longer."""
    path = Path(tempfile.mkdtemp(prefix="pyreg-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def layout(tmp_path: Path) -> Path:
    image = build_image([[file("etc/greeting", b"hello from pyreg\n")]], "gzip")
    return write_oci_layout(tmp_path / "layout", {"v1": image})


def run(argv: list[str], env: dict[str, str] | None = None, stdin: str | None = None) -> str:
    result = subprocess.run(
        argv, capture_output=True, text=True, env=env, input=stdin, timeout=120, check=False
    )
    assert result.returncode == 0, f"{argv}: {result.stderr}"
    return result.stdout


def fails(
    argv: list[str],
    env: dict[str, str] | None = None,
    reasons: tuple[str, ...] = REFUSED,
) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode != 0, f"{argv} unexpectedly succeeded"
    # Refused by access control, not by some unrelated problem.
    assert any(r in result.stderr.lower() for r in reasons), result.stderr
    return result.stderr


def isolated_env(tmp_path: Path) -> dict[str, str]:
    """Nothing read from or written to the real home: auth file, runtime dir, config."""
    home = tmp_path / "home"
    runtime = tmp_path / "run"
    for d in (home, runtime):
        d.mkdir(exist_ok=True)
    runtime.chmod(0o700)
    (tmp_path / "auth.json").write_text('{"auths": {}}')
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "XDG_RUNTIME_DIR": str(runtime),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "REGISTRY_AUTH_FILE": str(tmp_path / "auth.json"),
    }


@pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed")
def test_skopeo_private_push_pull_and_anonymous_public_pull(
    server: RegistryServer, layout: Path, tmp_path: Path
) -> None:
    env = isolated_env(tmp_path)
    host = server.url.removeprefix("http://")
    skopeo = ["skopeo", "--insecure-policy"]
    run(
        [
            *skopeo,
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            "alice:alice-pw",
            f"oci:{layout}:v1",
            f"docker://{host}/private/app:v1",
        ],
        env,
    )
    # The owner pulls it back.
    run(
        [
            *skopeo,
            "copy",
            "--src-tls-verify=false",
            "--src-creds",
            "alice:alice-pw",
            f"docker://{host}/private/app:v1",
            f"oci:{tmp_path / 'back'}:v1",
        ],
        env,
    )
    assert (tmp_path / "back" / "index.json").exists()
    # Nobody else does: anonymous, another user, a wrong password.
    for creds in ([], ["--src-creds", "bob:bob-pw"], ["--src-creds", "alice:wrong"]):
        fails(
            [
                *skopeo,
                "copy",
                "--src-tls-verify=false",
                *creds,
                f"docker://{host}/private/app:v1",
                f"oci:{tmp_path / 'stolen'}:v1",
            ],
            env,
        )
    # A public repository: pushed by alice, pulled by anyone without credentials.
    run(
        [
            *skopeo,
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            "alice:alice-pw",
            f"oci:{layout}:v1",
            f"docker://{host}/library/hello:v1",
        ],
        env,
    )
    run(
        [
            *skopeo,
            "copy",
            "--src-tls-verify=false",
            f"docker://{host}/library/hello:v1",
            f"oci:{tmp_path / 'public'}:v1",
        ],
        env,
    )
    fails(
        [
            *skopeo,
            "copy",
            "--dest-tls-verify=false",
            f"oci:{layout}:v1",
            f"docker://{host}/library/anonymous-push:v1",
        ],
        env,
    )
    # Deleting needs the delete right: bob may not, alice may.
    delete = [*skopeo, "delete", "--tls-verify=false"]
    fails([*delete, "--creds", "bob:bob-pw", f"docker://{host}/private/app:v1"], env)
    run([*delete, "--creds", "alice:alice-pw", f"docker://{host}/private/app:v1"], env)
    fails(
        [*skopeo, "inspect", "--tls-verify=false", "--creds", "alice:alice-pw",
         f"docker://{host}/private/app:v1"],
        env,
        reasons=("manifest unknown",),
    )  # fmt: skip


@pytest.mark.skipif(shutil.which("podman") is None, reason="podman is not installed")
def test_podman_login_push_and_pull(
    server: RegistryServer, layout: Path, tmp_path: Path, short_dir: Path
) -> None:
    env = isolated_env(tmp_path)
    host = server.url.removeprefix("http://")
    podman = [
        "podman",
        "--root",
        str(short_dir / "root"),
        "--runroot",
        str(short_dir / "run"),
        "--storage-driver",
        "vfs",
        "--cgroup-manager",
        "cgroupfs",
        "--events-backend",
        "none",
    ]
    # A local image without network: load the OCI layout built by the test.
    archive = tmp_path / "image.tar"
    shutil.make_archive(str(archive.with_suffix("")), "tar", layout)
    run([*podman, "load", "-i", str(archive)], env)
    image_id = run([*podman, "images", "-q"], env).split()[0]

    fails([*podman, "push", "--tls-verify=false", image_id, f"{host}/private/pod:v1"], env)
    fails([*podman, "login", "--tls-verify=false", "-u", "alice", "-p", "wrong", host], env)
    run(
        [*podman, "login", "--tls-verify=false", "-u", "alice", "--password-stdin", host],
        env,
        stdin="alice-pw\n",
    )
    assert host in Path(env["REGISTRY_AUTH_FILE"]).read_text()
    run([*podman, "push", "--tls-verify=false", image_id, f"{host}/private/pod:v1"], env)
    run([*podman, "rmi", "-a", "-f"], env)
    run([*podman, "pull", "--tls-verify=false", f"{host}/private/pod:v1"], env)
    assert f"{host}/private/pod" in run([*podman, "images"], env)

    run([*podman, "logout", host], env)
    fails([*podman, "pull", "--tls-verify=false", f"{host}/private/pod:v1"], env)


@pytest.mark.slow  # a dozen CLI processes
def test_pyreg_client_login_push_pull(server: RegistryServer, layout: Path, tmp_path: Path) -> None:
    env = {
        **isolated_env(tmp_path),
        "DOCKER_CONFIG": str(tmp_path / "docker"),
        "PYREG_HOME": str(tmp_path / "pyreg-home"),
    }
    host = server.url.removeprefix("http://")
    pyreg = [sys.executable, "-m", "pyreg"]
    image = f"{host}/private/cli:v1"
    run([*pyreg, "load", str(layout)], env)
    run([*pyreg, "tag", "localhost/layout:v1", image], env)
    fails([*pyreg, "push", image], env)
    run([*pyreg, "login", host, "-u", "alice", "--password-stdin"], env, stdin="alice-pw\n")
    run([*pyreg, "push", image], env)
    run([*pyreg, "rmi", image], env)
    run([*pyreg, "pull", image], env)
    assert run([*pyreg, "catalog", host], env).split() == ["private/cli"]
    run([*pyreg, "logout", host], env)
    fails([*pyreg, "pull", image], env)


def _self_signed_cert(key_pem: bytes, path: Path) -> Path:
    """A certificate for the token signing key, as the reference registry's rootcertbundle."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    private = serialization.load_pem_private_key(key_pem, password=None)
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pyreg token signer")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(private, hashes.SHA256())
    )
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


@pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed")
def test_reference_registry_accepts_pyreg_tokens(
    server: RegistryServer, layout: Path, tmp_path: Path
) -> None:
    """distribution (docker-registry) configured to trust pyreg's token service: it finds the
    key by our libtrust-style `kid` and checks iss/aud/exp/access as distribution does."""
    from tests.support.docker_registry import TokenAuthConfig, start_registry

    bundle = _self_signed_cert(
        (tmp_path / "auth" / "token-key.pem").read_bytes(), tmp_path / "bundle.pem"
    )
    token_config = TokenAuthConfig(f"{server.url}/token", "pyreg", "pyreg", bundle)
    reference = start_registry(tmp_path / "reference", token=token_config)
    try:
        env = isolated_env(tmp_path)
        skopeo = ["skopeo", "--insecure-policy"]
        target = f"docker://{reference.host}/private/app:v1"
        run(
            [*skopeo, "copy", "--dest-tls-verify=false", "--dest-creds", "alice:alice-pw",
             f"oci:{layout}:v1", target],
            env,
        )  # fmt: skip
        run(
            [*skopeo, "copy", "--src-tls-verify=false", "--src-creds", "alice:alice-pw",
             target, f"oci:{tmp_path / 'back'}:v1"],
            env,
        )  # fmt: skip
        fails(
            [*skopeo, "copy", "--src-tls-verify=false", "--src-creds", "bob:bob-pw",
             target, f"oci:{tmp_path / 'stolen'}:v1"],
            env,
        )  # fmt: skip
    finally:
        reference.stop()
