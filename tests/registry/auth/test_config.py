from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from registry.auth import build_access
from registry.auth.base import OpenAccess
from registry.auth.config import AuthConfigError, parse_config
from storage_backends.memory import MemoryBackend


def test_defaults() -> None:
    config = parse_config({"htpasswd": "h"})
    assert config.htpasswd == Path("h")
    assert (config.service, config.issuer, config.token_path) == ("pyreg", "pyreg", "/token")
    assert config.token_ttl == 300 and config.key is None and config.realm is None
    assert config.rules == ()
    assert config.lockout.max_failures == 5


def test_full_section() -> None:
    config = parse_config(
        {
            "htpasswd": "./var/htpasswd",
            "realm": "https://reg.example/token",
            "service": "svc",
            "issuer": "iss",
            "token_path": "/auth/token",
            "token_ttl": 600,
            "key": "./var/key.pem",
            "lockout": {"max_failures": 3, "window": 10, "lock_for": 120},
            "rules": [{"repository": "library/*", "pull": ["anonymous"]}],
        }
    )
    assert config.token_path == "/auth/token" and config.key == Path("./var/key.pem")
    assert config.lockout.lock_for == 120 and config.rules[0].pattern == "library/*"


@pytest.mark.parametrize(
    "raw",
    [
        {},
        {"htpasswd": "h", "rulez": []},
        {"htpasswd": "h", "token_ttl": 30},
        {"htpasswd": "h", "token_ttl": "300"},
        {"htpasswd": "h", "token_path": "/v2/token"},
        {"htpasswd": "h", "token_path": "token"},
        {"htpasswd": "h", "lockout": {"max_failures": 0}},
        {"htpasswd": "h", "lockout": {"max_failures": 2.5}},
        {"htpasswd": "h", "lockout": {"tries": 3}},
        {"htpasswd": "h", "lockout": 5},
        {"htpasswd": "h", "rules": [{"repository": "a//b"}]},
        {"htpasswd": "h", "service": ""},
        {"htpasswd": 5},
        {"htpasswd": "h", "realm": 7},
    ],
)
def test_malformed_sections_are_refused(raw: dict[str, Any]) -> None:
    with pytest.raises(AuthConfigError):
        parse_config(raw)


async def test_no_section_means_open_access() -> None:
    assert isinstance(await build_access(None, MemoryBackend()), OpenAccess)
    assert isinstance(await build_access({}, MemoryBackend()), OpenAccess)


async def test_key_is_generated_in_storage_without_a_key_path(tmp_path: Path) -> None:
    backend = MemoryBackend()
    first = await build_access({"htpasswd": str(tmp_path / "h")}, backend)
    second = await build_access({"htpasswd": str(tmp_path / "h")}, backend)
    assert first.tokens.key.kid == second.tokens.key.kid  # type: ignore[attr-defined]


async def test_missing_users_file_and_empty_rules_are_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("WARNING", logger="registry.auth"):
        await build_access(
            {"htpasswd": str(tmp_path / "none"), "key": str(tmp_path / "k")}, MemoryBackend()
        )
    assert "does not exist" in caplog.text and "no rules" in caplog.text
