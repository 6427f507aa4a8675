"""The `proxy:` settings section: which upstreams are mirrored, under which local namespace.

    proxy:
      upstreams:
        - name: hub                        # for logs and error messages
          url: https://registry-1.docker.io
          namespace: docker.io             # local names docker.io/<rest> mirror <rest>
          default: true                    # names without a known namespace (docker's
                                           # registry-mirrors) go here when not local
          credentials: {username: bob, password_file: /run/secrets/hub}
          tag_ttl: 300                     # seconds a cached tag is served without asking
          allow_push: false                # pushes to docker.io/... are refused (default)
      lease_ttl: 60                        # cross-replica fetch lease (seconds)
      max_bytes: 50000000000               # optional cap on cached blob bytes (LRU eviction)
      evict_interval: 300                  # seconds between eviction passes
      evict_grace: 600                     # blobs touched this recently are kept

Credentials: `username` with one of `password`, `password_file`, `password_env` (a variable
name), or `token` / `token_env` (an OAuth2 refresh token, docker's identitytoken). A secret
that is configured but cannot be read is a settings error at startup, not a silent anonymous
pull later.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from ocispec.reference import valid_repository_name
from regclient.credentials import Credentials

DEFAULT_TAG_TTL = 300.0
DEFAULT_LEASE_TTL = 60.0
DEFAULT_EVICT_INTERVAL = 300.0
DEFAULT_EVICT_GRACE = 600.0


class ProxyConfigError(ValueError):
    """The `proxy` section cannot be used."""


@dataclass(frozen=True, slots=True)
class Upstream:
    name: str
    url: str  # scheme://host[:port]
    namespace: str  # local prefix, without a trailing slash
    default: bool = False
    credentials: Credentials | None = None
    tag_ttl: float = DEFAULT_TAG_TTL
    allow_push: bool = False

    @property
    def registry(self) -> str:
        """host[:port], as regclient names a registry."""
        return urlparse(self.url).netloc

    @property
    def insecure(self) -> bool:
        """Plain HTTP was asked for (regclient picks http:// itself only for loopback)."""
        return urlparse(self.url).scheme == "http"


@dataclass(frozen=True, slots=True)
class ProxyConfig:
    upstreams: tuple[Upstream, ...] = ()
    lease_ttl: float = DEFAULT_LEASE_TTL
    #: cap on the bytes of blobs only mirrored repositories hold; None: no cap
    max_bytes: int | None = None
    evict_interval: float = DEFAULT_EVICT_INTERVAL  # seconds between eviction passes
    #: a blob touched (pushed, mounted, fetched) this recently is never evicted: a push may
    #: be relying on it (the same rule as GC's grace, registry/gc.py)
    evict_grace: float = DEFAULT_EVICT_GRACE

    def by_namespace(self, namespace: str) -> Upstream | None:
        return next((u for u in self.upstreams if u.namespace == namespace), None)

    @property
    def default(self) -> Upstream | None:
        return next((u for u in self.upstreams if u.default), None)


def _secret(raw: Mapping[str, Any], key: str, where: str) -> str | None:
    """`key`, `key_file` or `key_env` from the mapping; at most one of them."""
    given = [k for k in (key, f"{key}_file", f"{key}_env") if raw.get(k) is not None]
    if len(given) > 1:
        raise ProxyConfigError(f"{where}: give only one of {', '.join(given)}")
    if not given:
        return None
    source = given[0]
    value = str(raw[source])
    if source.endswith("_file"):
        try:
            return Path(value).read_text().strip()
        except OSError as exc:
            raise ProxyConfigError(f"{where}.{source}: cannot read {value}: {exc}") from None
    if source.endswith("_env"):
        if value not in os.environ:
            raise ProxyConfigError(f"{where}.{source}: environment variable {value} is not set")
        return os.environ[value]
    return value


def _credentials(raw: Any, where: str) -> Credentials | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise ProxyConfigError(f"{where}: expected a mapping")
    known = {"username"} | {f"{k}{s}" for k in ("password", "token") for s in ("", "_file", "_env")}
    unknown = set(raw) - known
    if unknown:
        raise ProxyConfigError(f"{where}: unknown keys {', '.join(sorted(unknown))}")
    password = _secret(raw, "password", where)
    token = _secret(raw, "token", where)
    if password is not None and token is not None:
        raise ProxyConfigError(f"{where}: a password or a token, not both")
    username = raw.get("username")
    if password is not None and not username:
        raise ProxyConfigError(f"{where}: a password needs a username")
    if password is None and token is None:
        return None
    return Credentials(
        username=str(username) if username else None, password=password, identity_token=token
    )


def _number(raw: Mapping[str, Any], key: str, default: float, where: str) -> float:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ProxyConfigError(f"{where}.{key}: expected a non-negative number of seconds")
    return float(value)


def _upstream(raw: Any, index: int) -> Upstream:
    where = f"proxy.upstreams[{index}]"
    if not isinstance(raw, Mapping):
        raise ProxyConfigError(f"{where}: expected a mapping")
    known = {"name", "url", "namespace", "default", "credentials", "tag_ttl", "allow_push"}
    unknown = set(raw) - known
    if unknown:
        raise ProxyConfigError(f"{where}: unknown keys {', '.join(sorted(unknown))}")
    url = str(raw.get("url") or "").rstrip("/")
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc or parsed.path:
        raise ProxyConfigError(f"{where}.url: expected http(s)://host[:port], got {url!r}")
    namespace = str(raw.get("namespace") or "").strip("/")
    # The namespace is the first component(s) of local names: it must be a valid name itself.
    if not namespace or not valid_repository_name(namespace):
        raise ProxyConfigError(f"{where}.namespace: not a valid repository prefix: {namespace!r}")
    return Upstream(
        name=str(raw.get("name") or namespace),
        url=url,
        namespace=namespace,
        default=bool(raw.get("default", False)),
        credentials=_credentials(raw.get("credentials"), f"{where}.credentials"),
        tag_ttl=_number(raw, "tag_ttl", DEFAULT_TAG_TTL, where),
        allow_push=bool(raw.get("allow_push", False)),
    )


def parse_proxy_config(raw: Mapping[str, Any] | None) -> ProxyConfig:
    if not raw:
        return ProxyConfig()
    if not isinstance(raw, Mapping):
        raise ProxyConfigError("proxy: expected a mapping")
    unknown = set(raw) - {"upstreams", "lease_ttl", "max_bytes", "evict_interval", "evict_grace"}
    if unknown:
        raise ProxyConfigError(f"proxy: unknown keys {', '.join(sorted(unknown))}")
    items = raw.get("upstreams") or []
    if not isinstance(items, list):
        raise ProxyConfigError("proxy.upstreams: expected a list")
    upstreams = tuple(_upstream(item, i) for i, item in enumerate(items))
    namespaces = [u.namespace for u in upstreams]
    for ns in namespaces:
        if any(other != ns and other.startswith(ns + "/") for other in namespaces):
            raise ProxyConfigError(f"proxy: namespace {ns!r} contains another upstream's")
    if len(set(namespaces)) != len(namespaces):
        raise ProxyConfigError("proxy: two upstreams share a namespace")
    if sum(u.default for u in upstreams) > 1:
        raise ProxyConfigError("proxy: at most one upstream can be the default")
    return ProxyConfig(
        upstreams=upstreams,
        lease_ttl=max(_number(raw, "lease_ttl", DEFAULT_LEASE_TTL, "proxy"), 1.0),
        max_bytes=_max_bytes(raw.get("max_bytes")),
        evict_interval=max(_number(raw, "evict_interval", DEFAULT_EVICT_INTERVAL, "proxy"), 1.0),
        evict_grace=_number(raw, "evict_grace", DEFAULT_EVICT_GRACE, "proxy"),
    )


def _max_bytes(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ProxyConfigError("proxy.max_bytes: expected a positive number of bytes")
    return value
