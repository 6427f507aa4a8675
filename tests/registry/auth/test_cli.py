from __future__ import annotations

import io
from pathlib import Path

import pytest

from pyreg.cli import main
from registry.auth.htpasswd import Htpasswd, parse


def run(monkeypatch: pytest.MonkeyPatch, stdin: str, *argv: str) -> int:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    return main(list(argv))


def test_user_add_from_stdin_then_list_and_remove(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "htpasswd"
    common = ["--htpasswd", str(path)]
    assert (
        run(
            monkeypatch,
            "s3cret\n",
            "user",
            "add",
            "alice",
            "--password-stdin",
            "--cost",
            "4",
            *common,
        )
        == 0
    )
    assert Htpasswd(path).verify_sync("alice", "s3cret")  # newline not part of the password
    assert parse(path.read_text())["alice"].startswith("$2y$04$")
    assert (
        run(
            monkeypatch,
            "other\n",
            "user",
            "add",
            "alice",
            "--password-stdin",
            "--cost",
            "4",
            *common,
        )
        == 0
    )
    assert "updated user alice" in capsys.readouterr().out
    assert Htpasswd(path).verify_sync("alice", "other")
    assert run(monkeypatch, "", "user", "list", *common) == 0
    assert capsys.readouterr().out == "alice\n"
    assert run(monkeypatch, "", "user", "remove", "alice", *common) == 0
    assert run(monkeypatch, "", "user", "remove", "alice", *common) == 1
    assert parse(path.read_text()) == {}


def test_user_add_prompts_twice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    answers = iter(["pw-one", "pw-one"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    path = tmp_path / "h"
    assert main(["user", "add", "bob", "--cost", "4", "--htpasswd", str(path)]) == 0
    assert Htpasswd(path).verify_sync("bob", "pw-one")


def test_user_add_refuses_mismatched_prompts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    answers = iter(["pw-one", "pw-two"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    path = tmp_path / "h"
    assert main(["user", "add", "bob", "--cost", "4", "--htpasswd", str(path)]) == 1
    assert "do not match" in capsys.readouterr().err
    assert not path.exists()


@pytest.mark.parametrize(("name", "stdin"), [("bad:name", "pw\n"), ("carol", "\n")])
def test_user_add_refuses_bad_input(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, stdin: str
) -> None:
    path = tmp_path / "h"
    assert (
        run(
            monkeypatch,
            stdin,
            "user",
            "add",
            name,
            "--password-stdin",
            "--cost",
            "4",
            "--htpasswd",
            str(path),
        )
        == 1
    )
    assert not path.exists()


def test_htpasswd_path_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "env-htpasswd"
    monkeypatch.setenv("PYREG_HTPASSWD", str(path))
    assert run(monkeypatch, "pw\n", "user", "add", "dave", "--password-stdin", "--cost", "4") == 0
    assert "dave" in parse(path.read_text())
