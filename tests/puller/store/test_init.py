"""GraphStore: where it lives by default."""

from __future__ import annotations

from pathlib import Path

import pytest

from puller.store import GraphStore


def test_default_root_from_pyreg_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYREG_HOME", str(tmp_path / "home"))
    store = GraphStore.default()
    assert store.root == tmp_path / "home"
    d = store.content.write_bytes(b"x")
    assert (tmp_path / "home/blobs/sha256" / d.hex).is_file()


def test_default_root_without_pyreg_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYREG_HOME", raising=False)
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert GraphStore.default().root == tmp_path / ".local/share/pyreg"
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert GraphStore.default().root == tmp_path / "xdg/pyreg"
