"""Test helpers for access control: htpasswd files with cheap bcrypt, and `auth` sections.

bcrypt at cost 4 keeps tests fast; the format is the same as production's.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from registry.auth.htpasswd import set_user

TEST_COST = 4


def write_htpasswd(path: Path, users: dict[str, str]) -> Path:
    for name, password in users.items():
        set_user(path, name, password, cost=TEST_COST)
    return path


def auth_section(
    tmp_path: Path,
    users: dict[str, str],
    rules: list[dict[str, Any]],
    **extra: Any,
) -> dict[str, Any]:
    """An `auth` settings section with these users and rules, files under tmp_path."""
    section: dict[str, Any] = {
        "htpasswd": str(write_htpasswd(tmp_path / "htpasswd", users)),
        "key": str(tmp_path / "token-key.pem"),
        "rules": rules,
    }
    section.update(extra)
    return section


def basic(user: str, password: str) -> dict[str, str]:
    """An Authorization header with Basic credentials."""
    encoded = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {encoded}"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
