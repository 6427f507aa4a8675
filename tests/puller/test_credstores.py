"""Where credentials are found: podman's auth.json (runtime dir, REGISTRY_AUTH_FILE,
--authfile), ~/.config/containers/auth.json, docker's config.json, in that order; docker
credential helpers (a helper script made here, Debian's docker-credential-pass); a real
`podman login` followed by a private `pyreg pull`."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from regclient import credentials
from regclient.credentials import Credentials, CredentialsError
from tests.support.auth import auth_section
from tests.support.images import build_image, file, write_oci_layout
from tests.support.server import REPO_ROOT, RegistryServer


@pytest.fixture(autouse=True)
def homes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """Every credentials location under tmp_path; none named by the environment unless a
    test says so."""
    paths = {
        "runtime": tmp_path / "run" / "containers" / "auth.json",
        "config": tmp_path / "config" / "containers" / "auth.json",
        "docker": tmp_path / "home" / ".docker" / "config.json",
    }
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DOCKER_CONFIG", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    return paths


def _write(path: Path, data: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def _auth(user: str, password: str) -> dict[str, Any]:
    return {
        "auths": {"r.example": {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}}
    }


def test_documented_order(
    homes: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(homes["docker"], _auth("docker", "pw"))
    assert credentials.load("r.example") == Credentials("docker", "pw")
    _write(homes["config"], _auth("config", "pw"))
    assert credentials.load("r.example") == Credentials("config", "pw")
    _write(homes["runtime"], _auth("runtime", "pw"))
    assert credentials.load("r.example") == Credentials("runtime", "pw")
    env_file = _write(tmp_path / "env-auth.json", _auth("env", "pw"))
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(env_file))
    assert credentials.load("r.example") == Credentials("env", "pw")
    flag = _write(tmp_path / "flag-auth.json", _auth("flag", "pw"))
    assert credentials.load("r.example", authfile=flag) == Credentials("flag", "pw")
    # the named file takes the primary's place; one without the registry passes the search
    # on to the next (the runtime file is not searched then)
    empty = _write(tmp_path / "empty.json", {"auths": {"other.example": {}}})
    assert credentials.load("r.example", authfile=empty) == Credentials("config", "pw")
    assert credentials.auth_files(flag)[0] == flag
    # podman's default authfile: $DOCKER_CONFIG/config.json when DOCKER_CONFIG is set
    monkeypatch.delenv("REGISTRY_AUTH_FILE")
    _write(tmp_path / "dc" / "config.json", _auth("docker-config", "pw"))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "dc"))
    assert credentials.load("r.example") == Credentials("docker-config", "pw")


def test_login_writes_the_named_auth_file_else_config_json(
    homes: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert credentials.store("r.example", "u", "p") == str(homes["docker"])
    flag = tmp_path / "flag.json"
    assert credentials.store("r.example", "f", "p", authfile=flag) == str(flag)
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(tmp_path / "env.json"))
    assert credentials.store("r.example", "e", "p") == str(tmp_path / "env.json")
    assert credentials.load("r.example") == Credentials("e", "p")
    assert credentials.remove("r.example") is True
    assert credentials.load("r.example") is None  # gone from every file searched
    assert "r.example" not in homes["docker"].read_text()
    assert credentials.load("r.example", authfile=flag) == Credentials("f", "p")  # not searched
    assert credentials.remove("r.example", authfile=flag) is True
    assert credentials.remove("r.example", authfile=flag) is False


HELPER = """#!{python}
import json, sys
db = {db!r}
try:
    with open(db) as f:
        data = json.load(f)
except FileNotFoundError:
    data = {{}}
action = sys.argv[1]
raw = sys.stdin.read()
with open(db + ".log", "a") as log:
    server = raw.strip() if action != "store" else json.loads(raw)["ServerURL"]
    log.write(action + " " + server + "\\n")
if action == "get":
    if raw.strip() not in data:
        print("credentials not found in native keychain")
        sys.exit(1)
    entry = data[raw.strip()]
    print(json.dumps({{"ServerURL": raw.strip(), "Username": entry[0], "Secret": entry[1]}}))
elif action == "store":
    body = json.loads(raw)
    data[body["ServerURL"]] = [body["Username"], body["Secret"]]
elif action == "erase":
    if data.pop(raw.strip(), None) is None:
        print("credentials not found in native keychain")
        sys.exit(1)
with open(db, "w") as f:
    json.dump(data, f)
"""


@pytest.fixture
def helper(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`docker-credential-pyregtest` on PATH, keeping its secrets in a JSON file."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    db = tmp_path / "helper-db.json"
    script = bin_dir / "docker-credential-pyregtest"
    script.write_text(HELPER.format(python=sys.executable, db=str(db)))
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return db


def test_creds_store_helper_get_store_erase(homes: dict[str, Path], helper: Path) -> None:
    _write(homes["docker"], {"credsStore": "pyregtest"})
    where = credentials.store("r.example:5000", "alice", "s3cret")
    assert where == "the credential helper docker-credential-pyregtest"
    assert "s3cret" not in homes["docker"].read_text()  # the secret went to the helper
    assert json.loads(helper.read_text()) == {"r.example:5000": ["alice", "s3cret"]}
    assert credentials.load("r.example:5000") == Credentials("alice", "s3cret")
    assert credentials.load("other.example") is None  # "credentials not found": anonymous
    assert credentials.remove("r.example:5000") is True
    assert credentials.load("r.example:5000") is None
    log = Path(f"{helper}.log").read_text().splitlines()
    assert log[:3] == ["store r.example:5000", "get r.example:5000", "get other.example"]


def test_cred_helpers_per_registry_win_over_auths(homes: dict[str, Path], helper: Path) -> None:
    helper.write_text(
        json.dumps(
            {"r.example": ["helped", "pw"], "https://index.docker.io/v1/": ["<token>", "refresh"]}
        )
    )
    data = _auth("inline", "pw")
    data["credHelpers"] = {"r.example": "pyregtest", "docker.io": "pyregtest"}
    _write(homes["docker"], data)
    assert credentials.load("r.example") == Credentials("helped", "pw")
    # Docker Hub's key, and a "<token>" user means an identity token
    assert credentials.load("docker.io") == Credentials(identity_token="refresh")


def test_a_missing_helper_is_warned_about_and_skipped(
    homes: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    data = _auth("inline", "pw")
    data["credsStore"] = "not-installed-anywhere"
    _write(homes["docker"], data)
    assert credentials.load("r.example") == Credentials("inline", "pw")
    assert credentials.load("x.example") is None
    assert "docker-credential-not-installed-anywhere is not on PATH" in capsys.readouterr().err


def test_a_failing_helper_is_an_error(homes: dict[str, Path], helper: Path) -> None:
    helper.write_text("not json")  # the helper crashes on it
    _write(homes["docker"], {"credsStore": "pyregtest"})
    with pytest.raises(CredentialsError, match="docker-credential-pyregtest get"):
        credentials.load("r.example")


def _basic(user: str) -> dict[str, str]:
    return {"auth": base64.b64encode(f"{user}:pw".encode()).decode()}


def test_namespace_keys_most_specific_first_and_only_for_their_repositories(
    homes: dict[str, Path],
) -> None:
    auths = {
        "quay.example/user/image": _basic("image"),
        "quay.example/user": _basic("user"),
        "quay.example": _basic("host"),
        "docker.io/team": _basic("hub-team"),
    }
    _write(homes["runtime"], {"auths": auths})
    load = credentials.load
    assert load("quay.example", repository="user/image") == Credentials("image", "pw")
    assert load("quay.example", repository="user/image/sub") == Credentials("image", "pw")
    assert load("quay.example", repository="user/other") == Credentials("user", "pw")
    assert load("quay.example", repository="other/x") == Credentials("host", "pw")
    assert load("quay.example") == Credentials("host", "pw")  # no repository: the host's
    assert load("docker.io", repository="team/app") == Credentials("hub-team", "pw")
    # no host key: a namespace key never leaks to another repository or to the host
    del auths["quay.example"]
    _write(homes["runtime"], {"auths": auths})
    assert load("quay.example", repository="userx/image") is None
    assert load("quay.example", repository="other/user") is None
    assert load("quay.example") is None
    assert load("docker.io", repository="library/busybox") is None
    # the files' order comes first: a host key in an earlier file beats a namespace key
    _write(homes["docker"], {"auths": {"quay.example/user/image": _basic("later")}})
    _write(homes["config"], {"auths": {"quay.example": _basic("earlier")}})
    del auths["quay.example/user/image"], auths["quay.example/user"]
    _write(homes["runtime"], {"auths": auths})
    assert load("quay.example", repository="user/image") == Credentials("earlier", "pw")


def test_login_and_logout_of_a_host_keep_its_namespace_keys(homes: dict[str, Path]) -> None:
    path = _write(homes["docker"], {"auths": {"quay.example/user": _basic("user")}})
    credentials.store("quay.example", "host", "pw")
    assert set(json.loads(path.read_text())["auths"]) == {"quay.example/user", "quay.example"}
    assert credentials.remove("quay.example") is True
    assert set(json.loads(path.read_text())["auths"]) == {"quay.example/user"}
    assert credentials.load("quay.example", repository="user/x") == Credentials("user", "pw")


def test_legacy_dockercfg_is_read_last_and_never_written(
    homes: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    legacy = homes["docker"].parent.parent / ".dockercfg"  # $HOME/.dockercfg
    legacy.parent.mkdir(parents=True)
    legacy.write_text(json.dumps({"https://r.example/v1/": {**_basic("legacy"), "email": "x"}}))
    before = legacy.read_text()
    assert credentials.auth_files()[-1] == legacy
    assert credentials.load("r.example") == Credentials("legacy", "pw")
    assert credentials.load("other.example") is None
    _write(homes["docker"], _auth("docker", "pw"))
    assert credentials.load("r.example") == Credentials("docker", "pw")  # config.json first
    # logout clears config.json, says the legacy file still has an entry, leaves it alone
    assert credentials.remove("r.example") is True
    assert "still has credentials for r.example" in capsys.readouterr().err
    assert legacy.read_text() == before
    assert credentials.load("r.example") == Credentials("legacy", "pw")
    credentials.store("r.example", "new", "pw")  # login writes config.json
    assert legacy.read_text() == before


@pytest.fixture
def pass_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """gpg and `pass init` in a temporary GNUPGHOME and PASSWORD_STORE_DIR."""
    for tool in ("docker-credential-pass", "pass", "gpg", "gpgconf"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    # gpg-agent's socket path must be short: not under pytest's long tmp_path
    gnupg = Path(tempfile.mkdtemp(prefix="pyreg-gpg-"))
    gnupg.chmod(0o700)
    monkeypatch.setenv("GNUPGHOME", str(gnupg))
    monkeypatch.setenv("PASSWORD_STORE_DIR", str(tmp_path / "password-store"))
    try:
        key = subprocess.run(
            [
                "gpg",
                "--batch",
                "--passphrase",
                "",
                "--quick-gen-key",
                "pyreg-test@example.invalid",
                "default",
                "default",
                "never",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if key.returncode != 0:
            pytest.skip(f"gpg cannot make a key here: {key.stderr.strip()[:200]}")
        init = subprocess.run(
            ["pass", "init", "pyreg-test@example.invalid"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if init.returncode != 0:
            pytest.skip(f"pass init failed: {init.stderr.strip()[:200]}")
        yield
    finally:
        subprocess.run(["gpgconf", "--kill", "gpg-agent"], capture_output=True, timeout=30)
        shutil.rmtree(gnupg, ignore_errors=True)


def test_debian_docker_credential_pass(homes: dict[str, Path], pass_store: None) -> None:
    _write(homes["docker"], {"credsStore": "pass"})
    credentials.store("r.example:5000", "alice", "via-pass")
    assert "via-pass" not in homes["docker"].read_text()
    assert credentials.load("r.example:5000") == Credentials("alice", "via-pass")
    assert credentials.remove("r.example:5000") is True
    assert credentials.load("r.example:5000") is None


USERS = {"alice": "alice-pw"}
RULES: list[dict[str, Any]] = [
    {"repository": "private/**", "pull": ["alice"], "push": ["alice"]},
]


@pytest.mark.interop
def test_podman_login_then_private_pyreg_push_and_pull(tmp_path: Path) -> None:
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed")
    short = Path(tempfile.mkdtemp(prefix="pyreg-"))  # podman's runroot must be short
    (tmp_path / "auth").mkdir()
    auth = auth_section(tmp_path / "auth", USERS, RULES)
    home = tmp_path / "home"
    runtime = tmp_path / "xdg-run"
    for d in (home, runtime):
        d.mkdir()
    runtime.chmod(0o700)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "XDG_RUNTIME_DIR": str(runtime),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "PYREG_HOME": str(tmp_path / "store"),
    }
    pyreg = [sys.executable, "-m", "pyreg"]

    def run(*argv: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv, capture_output=True, text=True, env=env, input=stdin, timeout=120, cwd=REPO_ROOT
        )

    layout = write_oci_layout(
        tmp_path / "layout", {"v1": build_image([[file("etc/x", b"x\n")]], "gzip")}
    )
    try:
        with RegistryServer(f"file://{tmp_path / 'storage'}", {"auth": auth}) as server:
            host = f"127.0.0.1:{server.port}"
            image = f"{host}/private/app:v1"
            assert run(*pyreg, "load", "-r", f"{host}/private/app", str(layout)).returncode == 0
            refused = run(*pyreg, "push", image)
            assert refused.returncode == 1
            podman = [
                "podman",
                "--root",
                str(short / "root"),
                "--runroot",
                str(short / "run"),
                "--storage-driver",
                "vfs",
                "--events-backend",
                "none",
            ]
            login = run(
                *podman,
                "login",
                "--tls-verify=false",
                "-u",
                "alice",
                "--password-stdin",
                host,
                stdin="alice-pw\n",
            )
            assert login.returncode == 0, login.stderr
            assert host in (runtime / "containers" / "auth.json").read_text()
            # --authfile takes the runtime file's place: podman's login is not seen then
            other = _write(tmp_path / "other-auth.json", {"auths": {}})
            assert run(*pyreg, "push", "--authfile", str(other), image).returncode == 1
            pushed = run(*pyreg, "push", image)
            assert pushed.returncode == 0, pushed.stderr
            assert run(*pyreg, "rmi", image).returncode == 0
            pulled = run(*pyreg, "pull", image)
            assert pulled.returncode == 0, pulled.stderr
    finally:
        shutil.rmtree(short, ignore_errors=True)
