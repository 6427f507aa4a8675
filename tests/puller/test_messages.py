"""Client errors are one line naming the operation, repository and registry, in words, with a
hint where one helps; `--debug` adds the traceback. Against a real `pyreg serve` with token
auth (private/** for alice), in process (`pyreg.cli.main`)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ocispec.reference import Reference
from puller.store import GraphStore
from pyreg.cli import main
from regclient import credentials
from tests.puller.conftest import put_image
from tests.support.auth import auth_section
from tests.support.docker_registry import free_port
from tests.support.images import build_image, file
from tests.support.server import RegistryServer

USERS = {"alice": "alice-pw"}
RULES: list[dict[str, Any]] = [
    {"repository": "private/**", "pull": ["alice"], "push": ["alice"]},
    {"repository": "open/**", "pull": ["anonymous"], "push": ["anonymous"]},
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    root = tmp_path_factory.mktemp("messages")
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
    return GraphStore(tmp_path / "home")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _one_error_line(err: str) -> str:
    assert err.startswith("pyreg: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err.strip()


def test_private_pull_and_push_without_login_say_to_log_in(
    server: RegistryServer, home: GraphStore, capsys: pytest.CaptureFixture[str]
) -> None:
    host = f"127.0.0.1:{server.port}"
    code, _, err = run(capsys, "pull", f"{host}/private/app:v1")
    line = _one_error_line(err)
    assert code == 1
    assert f"pull private/app on {host}: not authorized" in line
    assert f"`pyreg login {host}`" in line
    ref = f"{host}/private/pushed:v1"
    put_image(home, str(Reference.parse(ref)), build_image([[file("x", b"x")]]))
    code, _, err = run(capsys, "push", ref)
    line = _one_error_line(err)
    assert f"push private/pushed on {host}: not authorized" in line and "pyreg login" in line


def test_a_wrong_stored_password_is_said_in_words(
    server: RegistryServer, home: GraphStore, capsys: pytest.CaptureFixture[str]
) -> None:
    host = f"127.0.0.1:{server.port}"
    credentials.store(host, "alice", "wrong")
    code, _, err = run(capsys, "pull", f"{host}/private/app:v1")
    line = _one_error_line(err)
    assert code == 1
    assert "the user name or password was refused" in line and f"pyreg login {host}" in line
    assert "{" not in line  # not the token service's raw JSON


def test_a_stopped_registry_asks_whether_it_runs(
    home: GraphStore, capsys: pytest.CaptureFixture[str]
) -> None:
    host = f"127.0.0.1:{free_port()}"
    code, _, err = run(capsys, "pull", f"{host}/a/b:v1")
    line = _one_error_line(err)
    assert code == 1
    assert f"pull a/b on {host}: cannot connect: is the registry running at" in line
    assert host in line and "All connection attempts failed" not in line


def test_debug_shows_the_traceback(home: GraphStore, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "pull", "--debug", f"127.0.0.1:{free_port()}/a/b:v1")
    assert code == 1 and "Traceback" in err and err.rstrip().splitlines()[-1].startswith("pyreg:")


def test_upper_case_names_get_a_lower_case_hint(
    home: GraphStore, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "pull", "localhost:5000/Team/App:v1")
    assert code == 1 and "must be lower case" in _one_error_line(err)


def test_login_accepts_a_url(
    server: RegistryServer, home: GraphStore, capsys: pytest.CaptureFixture[str]
) -> None:
    host = f"127.0.0.1:{server.port}"
    code, _, err = run(capsys, "login", "-u", "alice", "-p", "alice-pw", f"http://{host}/")
    assert code == 0, err
    assert credentials.load(host) == credentials.Credentials("alice", "alice-pw")
    assert run(capsys, "logout", f"http://{host}")[0] == 0


def test_platform_mismatch_on_a_single_platform_image_warns(
    server: RegistryServer, home: GraphStore, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    host = f"127.0.0.1:{server.port}"
    ref = f"{host}/open/single:v1"
    put_image(home, str(Reference.parse(ref)), build_image([[file("x", b"x")]]))
    assert run(capsys, "push", "-q", ref)[0] == 0
    code, _, err = run(capsys, "pull", "--platform", "linux/s390x", ref)
    assert code == 0
    assert "does not match the requested platform (linux/s390x)" in err
    code, _, err = run(capsys, "pull", "--platform", "linux/amd64", ref)
    assert code == 0 and "does not match" not in err
    code, out, _ = run(capsys, "unpack", ref, str(tmp_path / "rootfs"))
    assert code == 0 and "Unpacked 1 layer into" in out


def test_without_a_terminal_progress_is_plain_lines_and_quiet_is_quiet(
    server: RegistryServer, home: GraphStore, capsys: pytest.CaptureFixture[str]
) -> None:
    host = f"127.0.0.1:{server.port}"
    ref = f"{host}/open/plain:v1"
    image = build_image([[file("big", os.urandom(300_000))]])  # incompressible: ~293 KiB
    put_image(home, str(Reference.parse(ref)), image)
    code, out, err = run(capsys, "push", ref)
    assert code == 0 and err == ""
    layer = image.layers[0].digest
    # one line when a blob starts (binary units, as the summary) and one when it ends
    lines = out.splitlines()
    assert any(f"{layer.short}: " in line and "KiB)" in line for line in lines), out
    assert "\r" not in out and "\x1b[" not in out
    assert "KiB sent" in out  # the summary speaks the same units
    code, out, err = run(capsys, "pull", "-q", ref)
    assert (code, out, err) == (0, f"{image.digest}\n", "")
