"""`pyreg build` pulls a base image it lacks with `pyreg pull`'s options (puller/netopts.py):
a private repository on a TLS `pyreg serve` with a CA made by the test, reached only with the
--tls-verify / --cert-dir / --authfile given to `build`."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from tests.runtime.conftest import BASE, Pyreg, _cleanup
from tests.support.auth import auth_section
from tests.support.server import RegistryServer
from tests.support.tls import TestCA

RULES = [{"repository": "private/**", "pull": ["alice"], "push": ["alice"]}]


def test_build_pulls_its_base_with_authfile_cert_dir_and_tls_verify(
    pyreg: Pyreg, tmp_path: Path
) -> None:
    ca = TestCA("pyreg build-pull CA")
    cert, key = ca.issue(tmp_path / "server", dns=["localhost"], ips=["127.0.0.1"])
    certs = ca.write(tmp_path / "certs" / "ca.crt").parent
    (tmp_path / "auth").mkdir()
    config = {
        "tls": {"certificate": str(cert), "key": str(key)},
        "auth": auth_section(tmp_path / "auth", {"alice": "alice-pw"}, RULES),
    }
    authfile = tmp_path / "auth.json"
    basic = base64.b64encode(b"alice:alice-pw").decode()
    env = {
        "HOME": str(tmp_path / "user"),
        "DOCKER_CONFIG": str(tmp_path / "docker"),
        "XDG_RUNTIME_DIR": str(tmp_path / "run"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "PYREG_CERTS_DIRS": str(tmp_path / "no-certs.d"),  # not the machine's certs.d
        "REGISTRY_AUTH_FILE": "",
        "CONTAINERS_REGISTRIES_CONF": str(tmp_path / "no-registries.conf"),
    }
    with RegistryServer(f"file://{tmp_path / 'storage'}", config) as server:
        host = f"127.0.0.1:{server.port}"
        authfile.write_text(json.dumps({"auths": {host: {"auth": basic}}}))
        base = f"{host}/private/base:v1"
        trust = ["--tls-verify=true", "--cert-dir", str(certs)]
        pyreg("tag", BASE, base, check=True, env=env)
        pyreg("push", *trust, "--authfile", str(authfile), base, check=True, env=env)
        context = tmp_path / "context"
        context.mkdir()
        (context / "Dockerfile").write_text(f"FROM {base}\nLABEL built=yes\n")
        # a second client home without the base image: `build` has to pull it
        fresh = Pyreg(tmp_path / "fresh-home")
        try:
            build = ["build", "-q", "-t", "out:1"]
            untrusted = fresh(*build, "--tls-verify=true", "--authfile", str(authfile),
                              str(context), env=env)  # fmt: skip
            assert untrusted.returncode == 1
            assert "--cert-dir" in untrusted.stderr, untrusted.stderr  # `pyreg pull`'s hint
            anonymous = fresh(*build, *trust, str(context), env=env)
            assert anonymous.returncode == 1
            assert f"log in with `pyreg login {host}`" in anonymous.stderr, anonymous.stderr
            built = fresh(*build, *trust, "--authfile", str(authfile), str(context), env=env)
            assert built.returncode == 0, built.stderr
            assert built.stdout.strip().startswith("sha256:"), built.stdout
        finally:
            _cleanup(fresh.home)
