"""Credentials in docker's `config.json`, shared with docker, podman and skopeo.

The file is `$DOCKER_CONFIG/config.json` (default `~/.docker/config.json`). Entries live
under `auths`, keyed by registry host (`https://index.docker.io/v1/` for Docker Hub), each
with `auth` = base64("user:password") and optionally `identitytoken` (an OAuth2 refresh
token). Credential helpers (`credsStore`, `credHelpers`) are not run: a warning says so.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DOCKER_HUB_KEY = "https://index.docker.io/v1/"
_HUB_ALIASES = {"docker.io", "index.docker.io", "registry-1.docker.io"}


class CredentialsError(Exception):
    """config.json cannot be read or written."""


@dataclass(frozen=True, slots=True)
class Credentials:
    username: str | None = None
    password: str | None = None
    identity_token: str | None = None  # an OAuth2 refresh token, used instead of the password


def config_path() -> Path:
    directory = os.environ.get("DOCKER_CONFIG")
    base = Path(directory) if directory else Path.home() / ".docker"
    return base / "config.json"


def registry_key(registry: str) -> str:
    return DOCKER_HUB_KEY if registry in _HUB_ALIASES else registry


def _normalise(key: str) -> str:
    """`https://host/v1/` and `host` name the same registry."""
    for prefix in ("https://", "http://"):
        if key.startswith(prefix):
            key = key[len(prefix) :]
    host = key.split("/", 1)[0]
    return "docker.io" if host in _HUB_ALIASES else host


def _read(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise CredentialsError(f"cannot read {path}: {exc}") from None
    try:
        data = json.loads(text) if text.strip() else {}
    except ValueError as exc:
        raise CredentialsError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise CredentialsError(f"{path} is not a JSON object")
    return data


def _write(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(prefix=".config.json.", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)  # credentials: owner only, before any byte is written
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent="\t")
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load(registry: str, path: Path | None = None) -> Credentials | None:
    """The credentials stored for `registry`, or None (anonymous)."""
    path = path or config_path()
    data = _read(path)
    wanted = _normalise(registry_key(registry))
    if data.get("credsStore") or (data.get("credHelpers") or {}).get(registry):
        print(
            f"warning: {path} names a credential helper; pyreg does not run helpers and "
            "uses only the entries under 'auths'",
            file=sys.stderr,
        )
    auths = data.get("auths")
    if not isinstance(auths, dict):
        return None
    for key, entry in auths.items():
        if not isinstance(entry, dict) or _normalise(key) != wanted:
            continue
        return _decode(entry, key, path)
    return None


def _decode(entry: dict[str, Any], key: str, path: Path) -> Credentials | None:
    username = entry.get("username")
    password = entry.get("password")
    raw = entry.get("auth")
    if isinstance(raw, str) and raw:
        try:
            decoded = base64.b64decode(raw, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise CredentialsError(f"{path}: the 'auth' entry of {key} is not base64") from None
        username, sep, password = decoded.partition(":")
        if not sep:
            raise CredentialsError(f"{path}: the 'auth' entry of {key} is not user:password")
    token = entry.get("identitytoken")
    if not username and not token:
        return None
    return Credentials(
        username=username or None,
        password=password or None,
        identity_token=token if isinstance(token, str) and token else None,
    )


def store(registry: str, username: str, password: str, path: Path | None = None) -> Path:
    """Write (or replace) the entry for `registry`; returns the file written."""
    if ":" in username:
        raise CredentialsError("a user name cannot contain ':'")
    path = path or config_path()
    data = _read(path)
    auths = data.get("auths")
    if not isinstance(auths, dict):
        auths = {}
    wanted = _normalise(registry_key(registry))
    for key in [k for k in auths if _normalise(k) == wanted]:
        del auths[key]
    auths[registry_key(registry)] = {
        "auth": base64.b64encode(f"{username}:{password}".encode()).decode()
    }
    data["auths"] = auths
    _write(path, data)
    return path


def remove(registry: str, path: Path | None = None) -> bool:
    """Remove the entry for `registry`; False when there was none."""
    path = path or config_path()
    data = _read(path)
    auths = data.get("auths")
    if not isinstance(auths, dict):
        return False
    wanted = _normalise(registry_key(registry))
    keys = [k for k in auths if _normalise(k) == wanted]
    if not keys:
        return False
    for key in keys:
        del auths[key]
    _write(path, data)
    return True
