"""registry.offline: the settings and storage of `pyreg gc`, `pyreg import` and `pyreg quota`;
memory:// storage and unusable settings refused in one line, exit 2, by each of them."""

from __future__ import annotations

from pathlib import Path

import pytest

from pyreg.cli import main
from registry.offline import load_offline_settings, open_storage

MEMORY = "memory:// storage belongs to one server process"


def test_memory_storage_is_refused_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert load_offline_settings("gc", None, "memory://") is None
    assert capsys.readouterr().err == f"pyreg gc: {MEMORY}\n"


def test_unusable_settings_are_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert load_offline_settings("quota", str(tmp_path / "missing.yaml")) is None
    err = capsys.readouterr().err
    assert err.startswith("pyreg quota: cannot read ") and err.count("\n") == 1


async def test_the_storage_is_open_in_the_block_and_closed_after(tmp_path: Path) -> None:
    settings = load_offline_settings("gc", None, f"file://{tmp_path / 'storage'}")
    assert settings is not None
    async with open_storage(settings) as backend:
        await backend.put("a/b", b"x")
        assert await backend.get("a/b") == b"x"
    assert (tmp_path / "storage" / "a" / "b").read_bytes() == b"x"


@pytest.mark.parametrize("command", ["gc", "import", "quota"])
def test_every_offline_command_refuses_memory_and_bad_settings(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("storage: memory://\npolicies:\n  quotas:\n    - {repository: a, limit: 1}\n")
    source = [] if command != "import" else ["--from", str(tmp_path)]
    assert main([command, *source, "--config", str(config)]) == 2
    assert capsys.readouterr().err == f"pyreg {command}: {MEMORY}\n"
    config.write_text("storage: [not, a, url]\n")
    assert main([command, *source, "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"pyreg {command}: ") and err.count("\n") == 1
