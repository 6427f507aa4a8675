"""docker's config.json: read, write (0600, atomic, other keys kept), remove, a missing helper
warned about (helpers and the other auth files: test_credstores.py)."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import pytest

from regclient import credentials
from regclient.credentials import Credentials, CredentialsError


@pytest.fixture(autouse=True)
def docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    # none of the machine's auth files: only this config.json
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    return tmp_path / "docker" / "config.json"


def test_store_writes_base64_auth_with_mode_0600(docker_config: Path) -> None:
    where = credentials.store("localhost:5000", "alice", "pa:ss")
    assert where == str(docker_config)
    data = json.loads(docker_config.read_text())
    assert base64.b64decode(data["auths"]["localhost:5000"]["auth"]) == b"alice:pa:ss"
    assert stat.S_IMODE(docker_config.stat().st_mode) == 0o600
    assert credentials.load("localhost:5000") == Credentials("alice", "pa:ss")


def test_store_keeps_other_entries_and_keys(docker_config: Path) -> None:
    docker_config.parent.mkdir(parents=True)
    docker_config.write_text(json.dumps({"auths": {"other:1": {"auth": "eDp5"}}, "psFormat": "x"}))
    credentials.store("reg.example", "bob", "pw")
    data = json.loads(docker_config.read_text())
    assert data["psFormat"] == "x"
    assert set(data["auths"]) == {"other:1", "reg.example"}
    assert list(docker_config.parent.glob(".config.json.*")) == []  # no temp file left


def test_docker_hub_uses_the_index_key_and_its_aliases(docker_config: Path) -> None:
    credentials.store("docker.io", "carol", "pw")
    data = json.loads(docker_config.read_text())
    assert list(data["auths"]) == ["https://index.docker.io/v1/"]
    assert credentials.load("docker.io") == Credentials("carol", "pw")
    assert credentials.load("registry-1.docker.io") == Credentials("carol", "pw")


def test_entries_written_with_a_scheme_are_found(docker_config: Path) -> None:
    docker_config.parent.mkdir(parents=True)
    auth = base64.b64encode(b"dave:pw").decode()
    docker_config.write_text(json.dumps({"auths": {"https://reg.example/v2/": {"auth": auth}}}))
    assert credentials.load("reg.example") == Credentials("dave", "pw")
    assert credentials.load("reg.example:5000") is None


def test_identity_token_is_read() -> None:
    path = credentials.config_path()
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"auths": {"r.example": {"identitytoken": "tok"}}}))
    assert credentials.load("r.example") == Credentials(identity_token="tok")


def test_remove(docker_config: Path) -> None:
    credentials.store("a.example", "u", "p")
    credentials.store("b.example", "u", "p")
    assert credentials.remove("a.example") is True
    assert credentials.remove("a.example") is False
    assert list(json.loads(docker_config.read_text())["auths"]) == ["b.example"]


def test_missing_file_means_anonymous() -> None:
    assert credentials.load("anything.example") is None
    assert credentials.remove("anything.example") is False


@pytest.mark.parametrize(
    "content",
    ["{not json", "[]", json.dumps({"auths": {"r.example": {"auth": "!!!not-base64"}}})],
)
def test_broken_file_is_a_clear_error(docker_config: Path, content: str) -> None:
    docker_config.parent.mkdir(parents=True)
    docker_config.write_text(content)
    with pytest.raises(CredentialsError, match=r"config\.json"):
        credentials.load("r.example")


def test_a_credential_helper_not_installed_is_warned_about(
    docker_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    docker_config.parent.mkdir(parents=True)
    docker_config.write_text(json.dumps({"credsStore": "desktop"}))
    assert credentials.load("r.example") is None
    assert "docker-credential-desktop is not on PATH" in capsys.readouterr().err
