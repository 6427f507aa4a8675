"""deploy/Dockerfile, its lock file and its health check.

The Dockerfile is parsed and checked (test_image_build.py builds and runs the image); the
lock file is checked against pyproject.toml; the health check script runs for real against a
loopback HTTP server."""

from __future__ import annotations

import http.server
import os
import re
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
LOCK = DEPLOY / "requirements.lock"


def _instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), " ".join(rest.split())))
    return out


def _locked() -> dict[str, tuple[str, list[str]]]:
    """name -> (version, hashes) of every `name==version --hash=...` entry."""
    text = re.sub(r"\\\n", " ", LOCK.read_text())
    out: dict[str, tuple[str, list[str]]] = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        requirement, *options = line.split()
        name, sep, version = requirement.partition("==")
        assert sep, f"not pinned with ==: {line}"
        hashes = [o.removeprefix("--hash=") for o in options if o.startswith("--hash=")]
        out[canonicalize_name(name.split("[")[0])] = (version, hashes)
    return out


def test_every_pyproject_dependency_is_pinned_with_hashes_in_the_lock() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    locked = _locked()
    for spec in project["dependencies"]:
        requirement = Requirement(spec)
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{name} is not in deploy/requirements.lock: run `make lock`"
        version, hashes = locked[name]
        # The pin must satisfy pyproject's range, or the lock is stale.
        assert requirement.specifier.contains(version, prereleases=True), (name, version)
        assert hashes and all(h.startswith("sha256:") for h in hashes), name
    # Extras' dependencies are locked too (uvicorn[standard] -> uvloop, httptools, ...).
    assert {"uvloop", "httptools", "botocore"} <= set(locked)
    assert "pyreg" not in locked, "the project itself is installed from its own wheel"


def test_dockerfile_installs_from_the_lock_with_hashes_required() -> None:
    runs = [rest for kw, rest in _instructions() if kw == "RUN"]
    copies = [rest for kw, rest in _instructions() if kw == "COPY"]
    assert any(c.startswith("deploy/requirements.lock ") for c in copies)
    (install,) = [r for r in runs if "--require-hashes" in r]
    assert "-r /tmp/requirements.lock" in install
    # The project's wheel adds nothing the lock did not pin; pip check proves it is complete.
    assert "pip install --no-cache-dir --no-deps /wheels/" in install
    assert "pip check" in install
    (wheel,) = [r for r in runs if "pip wheel" in r]
    assert "--no-deps" in wheel


def test_base_image_is_a_build_argument() -> None:
    instructions = _instructions()
    first_keyword, first = instructions[0]
    assert first_keyword == "ARG" and first.startswith("BASE_IMAGE=python:3.11-slim")
    froms = [rest for kw, rest in instructions if kw == "FROM"]
    assert len(froms) == 2 and all(f.startswith("${BASE_IMAGE}") for f in froms)


def test_one_uid_gid_owns_the_storage_root_0700_and_runs_the_server() -> None:
    instructions = _instructions()
    args = dict(rest.split("=", 1) for kw, rest in instructions if kw == "ARG" and "=" in rest)
    assert args["UID"] == args["GID"] == "10001"
    (user,) = [rest for kw, rest in instructions if kw == "USER"]
    assert user == "${UID}:${GID}"
    run = " ".join(rest for kw, rest in instructions if kw == "RUN")
    assert '--uid "${UID}"' in run and '--gid "${GID}"' in run
    assert 'install -d -m 0700 -o "${UID}" -g "${GID}" /var/lib/pyreg' in run
    assert "/var/lib/pyreg" in [rest for kw, rest in instructions if kw == "VOLUME"]
    # And the uid the Kubernetes pods run as (deploy/k8s) is this one.
    k8s = (DEPLOY / "k8s" / "deployment.yaml").read_text()
    assert f"runAsUser: {args['UID']}" in k8s and f"fsGroup: {args['GID']}" in k8s


# -- the health check script, for real ------------------------------------------------------


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200
    paths: list[str] = []

    def do_GET(self) -> None:
        type(self).paths.append(self.path)
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        return None


@pytest.fixture
def health_server() -> Iterator[http.server.HTTPServer]:
    server = http.server.HTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Health.status, _Health.paths = 200, []
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def _check(config: Path, env: dict[str, str] | None = None) -> int:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PYREG_")}
    environ.update(env or {}, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, str(DEPLOY / "healthcheck.py"), str(config)],
        env=environ,
        capture_output=True,
        timeout=60,
    )
    return done.returncode


def test_healthcheck_asks_healthz_on_the_configured_port(
    health_server: http.server.HTTPServer, tmp_path: Path
) -> None:
    port = health_server.server_address[1]
    config = tmp_path / "config.yaml"
    config.write_text(f"port: {port}\n")
    assert _check(config) == 0
    assert _Health.paths == ["/healthz"]
    _Health.status = 503
    assert _check(config) == 1


def test_healthcheck_follows_pyreg_port_over_the_file(
    health_server: http.server.HTTPServer, tmp_path: Path
) -> None:
    port = health_server.server_address[1]
    config = tmp_path / "config.yaml"
    config.write_text("port: 1\n")  # nothing listens there
    assert _check(config) == 1
    assert _check(config, {"PYREG_PORT": str(port)}) == 0  # as `pyreg serve` would listen


def test_healthcheck_fails_on_a_bad_config(tmp_path: Path) -> None:
    assert _check(tmp_path / "missing.yaml") == 1


def test_the_classic_builder_gets_the_same_dockerignore() -> None:
    # It reads only the context's .dockerignore (BuildKit prefers deploy/Dockerfile.dockerignore):
    # without it `docker build` on Debian's docker.io sent .venv and .git to the daemon.
    ignore = ROOT / ".dockerignore"
    assert ignore.resolve() == (DEPLOY / "Dockerfile.dockerignore").resolve()
    # an allowlist: everything left out, then what the build takes
    entries = [x for x in ignore.read_text().split("\n") if x and not x.startswith("#")]
    assert entries[0] == "*"
    allowed = {x[1:] for x in entries if x.startswith("!")}
    copies = [rest.split() for kw, rest in _instructions() if kw == "COPY"]
    sources = {src for args in copies if not args[0].startswith("--from") for src in args[:-1]}
    # every file the runtime stage copies from the context is let through
    assert sources - {"."} <= allowed
    packages = {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()}
    assert packages - {"tests", "bench"} <= allowed


def test_the_lock_extras_are_locked() -> None:
    # Dependencies pip-compile's interpreter skips by marker (redis needs async-timeout on
    # Python < 3.11.3, Debian bookworm's 3.11.2): without them --require-hashes fails there.
    locked = _locked()
    extras = (DEPLOY / "lock-extras.in").read_text().splitlines()
    requirements = [Requirement(x) for x in extras if x.strip() and not x.startswith("#")]
    assert "async-timeout" in {canonicalize_name(r.name) for r in requirements}
    for requirement in requirements:
        version, hashes = locked[canonicalize_name(requirement.name)]
        assert requirement.specifier.contains(version) and hashes, requirement
