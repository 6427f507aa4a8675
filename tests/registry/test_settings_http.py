"""The `http:` section (request head limits and timeouts, registry/http_limits.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from registry.settings import SettingsError, load_settings


def test_http_section_sets_the_limits(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        "http: {max_header_size: 1024, max_url_size: 512, header_timeout: 1.5, keep_alive: 2}\n"
    )
    settings = load_settings(config, environ={})
    assert settings.max_header_size == 1024
    assert settings.max_url_size == 512
    assert settings.header_timeout == 1.5
    assert settings.keep_alive_timeout == 2


def test_defaults_are_64k_8k_30s_5s() -> None:
    settings = load_settings(environ={})
    assert (settings.max_header_size, settings.max_url_size) == (65536, 8192)
    assert (settings.header_timeout, settings.keep_alive_timeout) == (30.0, 5)


@pytest.mark.parametrize(
    "section",
    ["http: {max_header_size: 0}", "http: {header_timeout: -1}", "http: {typo: 1}", "http: 5"],
)
def test_bad_http_settings_are_refused(tmp_path: Path, section: str) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(section + "\n")
    with pytest.raises(SettingsError):
        load_settings(config, environ={})
