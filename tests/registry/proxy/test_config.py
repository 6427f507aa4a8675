"""The `proxy:` settings section: what is accepted, what is refused and why."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from registry.proxy.config import ProxyConfigError, parse_proxy_config
from registry.settings import SettingsError, load_settings


def _one(**upstream: Any) -> dict[str, Any]:
    return {
        "upstreams": [{"url": "https://registry-1.docker.io", "namespace": "docker.io", **upstream}]
    }


def test_defaults_and_derived_fields() -> None:
    config = parse_proxy_config(_one())
    (hub,) = config.upstreams
    assert (hub.name, hub.registry, hub.insecure) == ("docker.io", "registry-1.docker.io", False)
    assert hub.allow_push is False and hub.default is False and hub.credentials is None
    assert config.default is None
    assert parse_proxy_config(None).upstreams == ()


def test_credentials_from_config_file_and_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "secret"
    secret.write_text("from-file\n")
    monkeypatch.setenv("HUB_TOKEN", "from-env")
    by_file = parse_proxy_config(_one(credentials={"username": "u", "password_file": str(secret)}))
    assert by_file.upstreams[0].credentials is not None
    assert by_file.upstreams[0].credentials.password == "from-file"
    by_env = parse_proxy_config(_one(credentials={"token_env": "HUB_TOKEN"}))
    assert by_env.upstreams[0].credentials is not None
    assert by_env.upstreams[0].credentials.identity_token == "from-env"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (_one(url="ftp://x"), "url"),
        (_one(url="https://host/path"), "url"),
        (_one(namespace="Not_Valid"), "namespace"),
        (_one(tag_ttl=-1), "tag_ttl"),
        (_one(colour="red"), "unknown"),
        (_one(credentials={"password": "p"}), "needs a username"),
        (_one(credentials={"username": "u", "password": "p", "password_env": "X"}), "only one"),
        (
            _one(credentials={"password_env": "PYREG_TEST_UNSET_VARIABLE", "username": "u"}),
            "not set",
        ),
        (_one(credentials={"username": "u", "password_file": "/nonexistent/x"}), "cannot read"),
        ({"upstreams": [*_one()["upstreams"], *_one()["upstreams"]]}, "share a namespace"),
        (
            {
                "upstreams": [
                    *_one(default=True)["upstreams"],
                    {"url": "http://127.0.0.1:1", "namespace": "b", "default": True},
                ]
            },
            "at most one",
        ),
        (
            {
                "upstreams": [
                    *_one()["upstreams"],
                    {"url": "http://127.0.0.1:1", "namespace": "docker.io/x"},
                ]
            },
            "contains another",
        ),
        ({"max_bytes": 0}, "max_bytes"),
        ({"max_bytes": "1G"}, "max_bytes"),
    ],
)
def test_refused(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ProxyConfigError, match=message):
        parse_proxy_config(raw)


def test_settings_file_carries_the_section_and_reports_its_errors(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("proxy:\n  upstreams:\n    - {url: 'http://127.0.0.1:5001', namespace: up}\n")
    settings = load_settings(good, environ={})
    assert settings.proxy == {"upstreams": [{"url": "http://127.0.0.1:5001", "namespace": "up"}]}
    bad = tmp_path / "bad.yaml"
    bad.write_text("proxy:\n  upstreams:\n    - {url: 'http://127.0.0.1:5001'}\n")
    with pytest.raises(SettingsError, match="namespace"):
        load_settings(bad, environ={})
