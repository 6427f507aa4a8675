"""A private repository on a TLS `pyreg serve` with a CA made by the test, and a client
environment that knows neither: what `pyreg run` and `pyreg build` must reach with the
--tls-verify / --cert-dir / --authfile they are given (puller/netopts.py)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.auth import auth_section
from tests.support.server import RegistryServer
from tests.support.tls import TestCA

RULES = [{"repository": "private/**", "pull": ["alice"], "push": ["alice"]}]


@dataclass(frozen=True)
class PrivateTLS:
    host: str  # 127.0.0.1:PORT
    certs: Path  # a --cert-dir holding the CA
    authfile: Path  # alice's credentials, auth.json format
    env: dict[str, str]  # a client environment without the machine's files

    @property
    def trust(self) -> list[str]:
        return ["--tls-verify=true", "--cert-dir", str(self.certs)]


@contextmanager
def private_tls_registry(tmp_path: Path) -> Iterator[PrivateTLS]:
    ca = TestCA("pyreg private TLS CA")
    cert, key = ca.issue(tmp_path / "server", dns=["localhost"], ips=["127.0.0.1"])
    certs = ca.write(tmp_path / "certs" / "ca.crt").parent
    (tmp_path / "auth").mkdir()
    config = {
        "tls": {"certificate": str(cert), "key": str(key)},
        "auth": auth_section(tmp_path / "auth", {"alice": "alice-pw"}, RULES),
    }
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
        authfile = tmp_path / "auth.json"
        basic = base64.b64encode(b"alice:alice-pw").decode()
        authfile.write_text(json.dumps({"auths": {host: {"auth": basic}}}))
        yield PrivateTLS(host, certs, authfile, env)
