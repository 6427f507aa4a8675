"""The `auth` section of the settings, parsed and checked once at startup.

Unknown keys and wrong types are refused with `AuthConfigError` (a typo in a security setting
must not silently leave a repository open).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from registry.auth.rules import Rule, RuleError, parse_rules


class AuthConfigError(ValueError):
    """The `auth` section is malformed."""


@dataclass(frozen=True, slots=True)
class LockoutConfig:
    max_failures: int = 5  # failed logins from one address within `window` seconds ...
    window: float = 60.0
    lock_for: float = 60.0  # ... lock that address out for this long


@dataclass(frozen=True, slots=True)
class AuthConfig:
    htpasswd: Path
    rules: tuple[Rule, ...]
    realm: str | None = None  # None: derived from each request's scheme and host
    service: str = "pyreg"
    issuer: str = "pyreg"
    token_path: str = "/token"
    token_ttl: int = 300
    refresh_ttl: int = 30 * 24 * 3600
    key: Path | None = None  # None: generated on first start and kept in the storage backend
    lockout: LockoutConfig = field(default_factory=LockoutConfig)


_KEYS = {
    "htpasswd",
    "rules",
    "realm",
    "service",
    "issuer",
    "token_path",
    "token_ttl",
    "refresh_ttl",
    "key",
    "lockout",
}


def _str(raw: dict[str, Any], key: str, default: str) -> str:
    value = raw.get(key, default)
    if not isinstance(value, str) or not value:
        raise AuthConfigError(f"auth.{key} must be a non-empty string")
    return value


def _positive(raw: dict[str, Any], key: str, default: float, where: str = "auth") -> float:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise AuthConfigError(f"{where}.{key} must be a positive number")
    return float(value)


def _lockout(raw: Any) -> LockoutConfig:
    if raw is None:
        return LockoutConfig()
    if not isinstance(raw, dict):
        raise AuthConfigError("auth.lockout must be a mapping")
    unknown = set(raw) - {"max_failures", "window", "lock_for"}
    if unknown:
        raise AuthConfigError(f"unknown keys in auth.lockout: {sorted(unknown)}")
    defaults = LockoutConfig()
    max_failures = _positive(raw, "max_failures", defaults.max_failures, "auth.lockout")
    if max_failures != int(max_failures):
        raise AuthConfigError("auth.lockout.max_failures must be an integer")
    return LockoutConfig(
        max_failures=int(max_failures),
        window=_positive(raw, "window", defaults.window, "auth.lockout"),
        lock_for=_positive(raw, "lock_for", defaults.lock_for, "auth.lockout"),
    )


def parse_config(raw: dict[str, Any]) -> AuthConfig:
    if not isinstance(raw, dict):
        raise AuthConfigError("auth must be a mapping")
    unknown = set(raw) - _KEYS
    if unknown:
        raise AuthConfigError(f"unknown keys in auth: {sorted(unknown)}")
    if "htpasswd" not in raw:
        raise AuthConfigError("auth.htpasswd (the users file) is required")
    token_path = _str(raw, "token_path", "/token")
    if not token_path.startswith("/") or token_path.startswith("/v2"):
        raise AuthConfigError("auth.token_path must start with / and lie outside /v2/")
    realm = raw.get("realm")
    if realm is not None and (not isinstance(realm, str) or not realm):
        raise AuthConfigError("auth.realm must be a URL")
    key = raw.get("key")
    if key is not None and (not isinstance(key, str) or not key):
        raise AuthConfigError("auth.key must be a file path")
    try:
        rules = parse_rules(raw.get("rules") or [])
    except RuleError as exc:
        raise AuthConfigError(str(exc)) from None
    token_ttl = _positive(raw, "token_ttl", 300)
    if token_ttl < 60:
        # The token spec: never hand out a token with less than 60 seconds to live.
        raise AuthConfigError("auth.token_ttl must be at least 60 seconds")
    return AuthConfig(
        htpasswd=Path(_str(raw, "htpasswd", "")),
        rules=rules,
        realm=realm,
        service=_str(raw, "service", "pyreg"),
        issuer=_str(raw, "issuer", "pyreg"),
        token_path=token_path,
        token_ttl=int(token_ttl),
        refresh_ttl=int(_positive(raw, "refresh_ttl", 30 * 24 * 3600)),
        key=Path(key) if key else None,
        lockout=_lockout(raw.get("lockout")),
    )
