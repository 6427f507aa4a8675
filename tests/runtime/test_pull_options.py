"""`pyreg run` of an image it lacks pulls it with `pyreg pull`'s options (puller/netopts.py):
a private repository on a TLS `pyreg serve` with a CA made by the test, reached only with
--tls-verify / --cert-dir / --authfile given to `run`, and its registries.conf."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from tests.runtime.conftest import BASE, Pyreg, _cleanup
from tests.support.auth import auth_section
from tests.support.server import RegistryServer
from tests.support.tls import TestCA

RULES = [{"repository": "private/**", "pull": ["alice"], "push": ["alice"]}]


def test_run_pulls_with_authfile_cert_dir_and_tls_verify(
    pyreg: Pyreg, home: Path, tmp_path: Path
) -> None:
    ca = TestCA("pyreg run-pull CA")
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
        image = f"{host}/private/bb:v1"
        trust = ["--tls-verify=true", "--cert-dir", str(certs)]
        pyreg("tag", BASE, image, check=True, env=env)
        pyreg("push", *trust, "--authfile", str(authfile), image, check=True, env=env)
        # a second client home without the image: `run` has to pull it
        fresh = Pyreg(tmp_path / "fresh-home")
        try:
            cmd = ["echo", "pulled and ran"]
            untrusted = fresh("run", "--rm", "--tls-verify=true", "--authfile", str(authfile),
                              image, *cmd, env=env)  # fmt: skip
            assert untrusted.returncode == 1
            assert "certificate" in untrusted.stderr.lower(), untrusted.stderr
            assert "--cert-dir" in untrusted.stderr  # `pyreg pull`'s hint, one line
            assert untrusted.stderr.count("\n") == 1, untrusted.stderr
            anonymous = fresh("run", "--rm", *trust, image, *cmd, env=env)
            assert anonymous.returncode == 1
            assert f"not authorized (UNAUTHORIZED); log in with `pyreg login {host}`" in (
                anonymous.stderr
            ), anonymous.stderr
            ran = fresh("run", "--rm", *trust, "--authfile", str(authfile), image, *cmd, env=env)
            assert (ran.returncode, ran.stdout) == (0, "pulled and ran\n"), ran.stderr
        finally:
            _cleanup(fresh.home)


def test_run_refuses_a_blocked_registry_from_its_registries_conf(
    pyreg: Pyreg, tmp_path: Path
) -> None:
    conf = tmp_path / "registries.conf"
    conf.write_text('[[registry]]\nlocation = "blocked.example"\nblocked = true\n')
    done = pyreg("run", "--rm", "--registries-conf", str(conf), "blocked.example/x:1", "true")
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"pyreg: error: registry blocked.example is blocked in {conf}"
    ), done.stderr
