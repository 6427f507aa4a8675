"""The `notifications` section: webhook endpoints, in distribution's shape plus a few keys.

```yaml
notifications:
  endpoints:
    - name: ci                        # [A-Za-z0-9._-]+, unique
      url: https://ci.example/hook    # http:// or https://
      headers: {Authorization: [Bearer s3cret]}   # values: a string or a list
      timeout: 5s                     # per POST; Go-style duration or seconds
      threshold: 3                    # failures in a row retried at once, then back off
      backoff: 1s                     # first back-off; doubles per failure, up to 5 min
      maxattempts: 100                # then the event goes to the dead letter (pyreg)
      secret: "..."                   # HMAC-SHA256 signature header (pyreg)
      ignoredmediatypes: [application/octet-stream]
      ignore: {mediatypes: [...], actions: [pull]}
      disabled: false
  pulls: true                         # record pull events (batched, best effort)
  poll_interval: 2s                   # how often a deliverer looks at the queue
  lease: 30s                          # one deliverer at a time; another takes over after
```
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

ACTIONS = frozenset({"push", "pull", "delete", "mount"})
_NAME_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: Any, key: str) -> float:
    """Seconds from a number or a Go duration string (`500ms`, `1m30s`), as distribution's
    configuration writes them."""
    if isinstance(value, bool):
        raise ValueError(f"{key}: expected a duration, got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = str(value).strip()
        pieces = _DURATION_RE.findall(text)
        if not pieces or "".join(n + u for n, u in pieces) != text:
            raise ValueError(f"{key}: expected a duration such as 500ms, 5s or 1m, got {value!r}")
        seconds = sum(float(n) * _UNITS[u] for n, u in pieces)
    if seconds < 0:
        raise ValueError(f"{key}: must not be negative")
    return seconds


def _int(value: Any, key: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"{key}: expected an integer")
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"{key}: expected an integer, got {value!r}") from None
    if number < minimum:
        raise ValueError(f"{key}: must be at least {minimum}")
    return number


def _strings(value: Any, key: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ValueError(f"{key}: expected a list of strings")


@dataclass(frozen=True, slots=True)
class Endpoint:
    name: str
    url: str
    headers: tuple[tuple[str, str], ...] = ()
    timeout: float = 5.0
    threshold: int = 3
    backoff: float = 1.0
    max_backoff: float = 300.0
    max_attempts: int = 100
    secret: str = ""
    ignored_media_types: frozenset[str] = frozenset()
    ignored_actions: frozenset[str] = frozenset()

    def wants(self, event: Mapping[str, Any]) -> bool:
        """False for an event this endpoint ignores (by action or target media type)."""
        if event.get("action") in self.ignored_actions:
            return False
        media_type = (event.get("target") or {}).get("mediaType")
        return media_type not in self.ignored_media_types

    def retry_delay(self, attempts: int) -> float:
        """Seconds to wait after `attempts` failures in a row: none before `threshold`, then
        `backoff` doubling up to `max_backoff`."""
        if attempts < self.threshold:
            return 0.0
        exponent = min(attempts - self.threshold, 30)
        return float(min(self.max_backoff, self.backoff * (2**exponent)))


@dataclass(frozen=True, slots=True)
class Notifications:
    endpoints: tuple[Endpoint, ...] = ()
    pulls: bool = True
    poll_interval: float = 2.0
    lease: float = 30.0
    pull_flush_interval: float = 1.0


_ENDPOINT_KEYS = {
    "name",
    "url",
    "headers",
    "timeout",
    "threshold",
    "backoff",
    "max_backoff",
    "maxattempts",
    "secret",
    "ignoredmediatypes",
    "ignore",
    "disabled",
}


def _endpoint(raw: Any, index: int) -> Endpoint | None:
    where = f"endpoints[{index}]"
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where}: expected a mapping")
    unknown = set(raw) - _ENDPOINT_KEYS
    if unknown:
        raise ValueError(f"{where}: unknown keys {', '.join(sorted(unknown))}")
    name = str(raw.get("name") or "")
    if not _NAME_RE.match(name):
        raise ValueError(f"{where}.name: expected letters, digits, '.', '_' or '-'")
    url = str(raw.get("url") or "")
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"{where}.url: expected an http:// or https:// URL")
    headers: list[tuple[str, str]] = []
    raw_headers = raw.get("headers") or {}
    if not isinstance(raw_headers, Mapping):
        raise ValueError(f"{where}.headers: expected a mapping")
    for header, values in raw_headers.items():
        for value in _strings(values, f"{where}.headers.{header}"):
            headers.append((str(header), value))
    ignore = raw.get("ignore") or {}
    if not isinstance(ignore, Mapping) or set(ignore) - {"mediatypes", "actions"}:
        raise ValueError(f"{where}.ignore: expected a mapping with mediatypes and actions")
    actions = frozenset(_strings(ignore.get("actions"), f"{where}.ignore.actions"))
    if actions - ACTIONS:
        raise ValueError(f"{where}.ignore.actions: one of {', '.join(sorted(ACTIONS))}")
    media_types = _strings(raw.get("ignoredmediatypes"), f"{where}.ignoredmediatypes")
    media_types += _strings(ignore.get("mediatypes"), f"{where}.ignore.mediatypes")
    if raw.get("disabled"):
        return None
    endpoint = Endpoint(
        name=name,
        url=url,
        headers=tuple(headers),
        ignored_media_types=frozenset(media_types),
        ignored_actions=actions,
        secret=str(raw.get("secret") or ""),
    )
    changes: dict[str, Any] = {}
    for key in ("timeout", "backoff", "max_backoff"):
        if key in raw:
            changes[key] = parse_duration(raw[key], f"{where}.{key}")
    if "threshold" in raw:
        changes["threshold"] = _int(raw["threshold"], f"{where}.threshold", 0)
    if "maxattempts" in raw:
        changes["max_attempts"] = _int(raw["maxattempts"], f"{where}.maxattempts", 1)
    if changes.get("timeout", 1.0) <= 0:
        raise ValueError(f"{where}.timeout: must be positive")
    return replace(endpoint, **changes)


def parse_notifications(raw: Mapping[str, Any] | None) -> Notifications:
    """The typed section; ValueError with the key at fault."""
    if not raw:
        return Notifications()
    unknown = set(raw) - {"endpoints", "pulls", "poll_interval", "lease", "pull_flush_interval"}
    if unknown:
        raise ValueError(f"unknown keys {', '.join(sorted(unknown))}")
    raw_endpoints = raw.get("endpoints") or []
    if not isinstance(raw_endpoints, list):
        raise ValueError("endpoints: expected a list")
    endpoints = [e for i, r in enumerate(raw_endpoints) if (e := _endpoint(r, i)) is not None]
    names = [e.name for e in endpoints]
    if len(set(names)) != len(names):
        raise ValueError("endpoints: names must be unique")
    out = Notifications(endpoints=tuple(endpoints), pulls=bool(raw.get("pulls", True)))
    changes: dict[str, Any] = {}
    for key in ("poll_interval", "lease", "pull_flush_interval"):
        if key in raw:
            changes[key] = parse_duration(raw[key], key)
    if changes.get("poll_interval", 1.0) <= 0 or changes.get("lease", 1.0) <= 0:
        raise ValueError("poll_interval and lease must be positive")
    return replace(out, **changes)
