"""The `ui` setting: on by default, `ui: false` in the YAML file turns it off."""

from __future__ import annotations

from pathlib import Path

import pytest

from registry.settings import Settings, SettingsError, load_settings


def test_ui_is_on_by_default_and_off_with_false(tmp_path: Path) -> None:
    assert Settings().ui is True
    path = tmp_path / "config.yaml"
    path.write_text("ui: false\n")
    assert load_settings(path, environ={}).ui is False
    assert Settings.from_json(load_settings(path, environ={}).to_json()).ui is False


def test_ui_must_be_a_boolean(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("ui: maybe\n")
    with pytest.raises(SettingsError, match="ui"):
        load_settings(path, environ={})
