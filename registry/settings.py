"""Typed server settings: defaults, then an optional YAML file, then environment, then flags.

YAML keys (all optional; documented in docs/registry.md):

    host: 127.0.0.1
    port: 5000
    workers: 1
    log_level: info
    storage: file://./var/registry      # or {url: ..., options: {...}, fsync: true}
    max_manifest_size: 4194304
    uploads: {ttl: 86400, purge_interval: 3600}
    trusted_proxies: ""                  # e.g. "10.0.0.1,10.0.0.2" or "10.0.0.0/8" (never "*")
    log_format: text                     # or json (one object per line)
    metrics: {addr: null, on_main_port: false}   # addr: HOST:PORT of the metrics listener
    auth: null                           # passed as-is to registry.auth.build_access
    redis: ""                            # redis://host:6379/0: state shared by replicas
    readonly: false                      # refuse every write (backups, migrations)
    shutdown_timeout: 30                 # seconds in-flight requests get after SIGTERM
    tls: {certificate: ..., key: ..., client_ca: ...}   # HTTPS (registry.tls)
    notifications: {endpoints: [...]}    # webhooks (registry.events.config)
    http: {max_header_size: 65536, max_url_size: 8192, header_timeout: 30, keep_alive: 5}
    proxy: null                          # pull-through cache upstreams (registry.proxy.config)
    ui: true                             # the web interface at /ui/ (registry.ui)
    policies: null                       # immutability, retention (registry.policies.config)
    validation: {manifests: {urls: {allow: [], deny: []}}}   # foreign layers' URLs (stores/foreign)

Environment: PYREG_HOST, PYREG_PORT, PYREG_WORKERS, PYREG_LOG_LEVEL, PYREG_STORAGE,
PYREG_UPLOAD_TTL, PYREG_UPLOAD_PURGE_INTERVAL, PYREG_MAX_MANIFEST_SIZE, PYREG_TRUSTED_PROXIES,
PYREG_REDIS, PYREG_READONLY, PYREG_SHUTDOWN_TIMEOUT, PYREG_TLS_CERT, PYREG_TLS_KEY,
PYREG_TLS_CLIENT_CA, PYREG_LOG_FORMAT, PYREG_METRICS_ADDR, PYREG_STORAGE_FSYNC.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from registry.client_address import TrustedProxiesError, parse_trusted
from registry.policies.config import PolicyError, parse_policies
from registry.proxy.config import ProxyConfigError, parse_proxy_config
from registry.stores.foreign import ValidationConfigError, parse_validation

#: how `pyreg serve` hands its settings to every uvicorn worker (registry.app reads it)
SETTINGS_ENV = "PYREG_SETTINGS_JSON"

LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")
LOG_FORMATS = ("text", "json")


class SettingsError(ValueError):
    """A configuration file or value that cannot be used."""


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 5000
    workers: int = 1
    log_level: str = "info"
    storage_url: str = "file://./var/registry"
    storage_options: dict[str, Any] = field(default_factory=dict)
    # Filesystem storage: fsync every object and its directory entry before answering
    # (power-loss safe); false: the kernel writes back later (docs/storage.md).
    storage_fsync: bool = True
    upload_ttl: int = 24 * 3600  # seconds an untouched upload session is kept
    upload_purge_interval: float = 3600.0  # seconds between sweeps of stale sessions; 0: never
    max_manifest_size: int = 4 * 1024 * 1024
    # Addresses/networks whose X-Forwarded-For/-Proto are believed (registry/client_address.py).
    # Empty: none, so behind a proxy every client would share the proxy's address (and its
    # login lockout); set it to the proxy's address there.
    trusted_proxies: str = ""
    auth: dict[str, Any] | None = None
    # State shared by replicas (login lockout, blob-descriptor cache): redis://HOST:PORT/DB.
    # Empty: each process keeps its own lockout and no blob cache (registry/shared/).
    redis_url: str = ""
    redis_timeout: float = 1.0  # seconds per Redis call before falling back
    readonly: bool = False  # refuse writes; no background writers (registry.readonly)
    shutdown_timeout: int = 30  # seconds in-flight requests may finish after SIGTERM
    tls_certificate: str = ""  # PEM chain; with tls_key, serve HTTPS (registry.tls)
    tls_key: str = ""
    tls_client_ca: str = ""  # PEM CA bundle: clients must present a certificate it signed
    notifications: dict[str, Any] | None = None  # webhooks (registry.events.config)
    # HTTP layer limits (registry/http_limits.py): bytes of a request head (431 above), of its
    # URL (414 above), seconds for a head to arrive (408), seconds an idle connection stays.
    max_header_size: int = 64 * 1024
    max_url_size: int = 8 * 1024
    header_timeout: float = 30.0
    keep_alive_timeout: int = 5
    proxy: dict[str, Any] | None = None  # registry.proxy.config, checked in __post_init__
    log_format: str = "text"
    # HOST:PORT of the metrics listener (registry.observe.listener); empty: none
    metrics_addr: str = ""
    metrics_on_main_port: bool = False  # also serve /metrics on the registry's port
    ui: bool = True  # the web interface at /ui/ (registry.ui)
    policies: dict[str, Any] | None = None  # registry.policies.config, checked in __post_init__
    validation: dict[str, Any] | None = None  # foreign layers' URLs (registry.stores.foreign)

    def __post_init__(self) -> None:
        _check_operations(self)
        if not 0 <= self.port <= 65535:
            raise SettingsError(f"port {self.port} out of range")
        if self.workers < 1:
            raise SettingsError("workers must be at least 1")
        if self.log_level not in LOG_LEVELS:
            raise SettingsError(f"log_level must be one of {', '.join(LOG_LEVELS)}")
        if self.upload_ttl <= 0 or self.max_manifest_size <= 0:
            raise SettingsError("upload ttl and max_manifest_size must be positive")
        if self.upload_purge_interval < 0:
            raise SettingsError("uploads.purge_interval must not be negative")
        try:
            parse_trusted(self.trusted_proxies)
        except TrustedProxiesError as exc:
            raise SettingsError(str(exc)) from None
        if min(self.max_header_size, self.max_url_size, self.keep_alive_timeout) < 1:
            raise SettingsError("http limits must be positive")
        if self.header_timeout <= 0:
            raise SettingsError("http.header_timeout must be positive")
        try:
            parse_proxy_config(self.proxy)
        except ProxyConfigError as exc:
            raise SettingsError(str(exc)) from None
        if self.log_format not in LOG_FORMATS:
            raise SettingsError(f"log_format must be one of {', '.join(LOG_FORMATS)}")
        try:
            parse_policies(self.policies)
        except PolicyError as exc:
            raise SettingsError(str(exc)) from None
        try:
            parse_validation(self.validation)
        except ValidationConfigError as exc:
            raise SettingsError(str(exc)) from None

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Settings:
        return cls(**json.loads(text))


def _int(value: Any, key: str) -> int:
    if isinstance(value, bool):
        raise SettingsError(f"{key}: expected an integer")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise SettingsError(f"{key}: expected an integer, got {value!r}") from None


def _from_mapping(raw: Mapping[str, Any]) -> dict[str, Any]:
    known = {"host", "port", "workers", "log_level", "storage", "max_manifest_size"}
    known |= {"uploads", "auth", "trusted_proxies", "redis"}
    known |= OPERATIONS_KEYS
    known |= {"http"}
    known |= {"proxy"}
    known |= {"log_format", "metrics"}
    known |= {"ui"}
    known |= {"policies"}
    known |= {"validation"}
    unknown = set(raw) - known
    if unknown:
        raise SettingsError(f"unknown settings: {', '.join(sorted(unknown))}")
    out: dict[str, Any] = {}
    if "host" in raw:
        out["host"] = str(raw["host"])
    for key in ("port", "workers", "max_manifest_size"):
        if key in raw:
            out[key] = _int(raw[key], key)
    if "log_level" in raw:
        out["log_level"] = str(raw["log_level"]).lower()
    storage = raw.get("storage")
    if isinstance(storage, str):
        out["storage_url"] = storage
    elif isinstance(storage, Mapping):
        if "url" in storage:
            out["storage_url"] = str(storage["url"])
        options = storage.get("options") or {}
        if not isinstance(options, Mapping):
            raise SettingsError("storage.options: expected a mapping")
        out["storage_options"] = dict(options)
        if "fsync" in storage:
            out["storage_fsync"] = _bool(storage["fsync"], "storage.fsync")
    elif storage is not None:
        raise SettingsError("storage: expected a URL or a mapping with url/options/fsync")
    uploads = raw.get("uploads") or {}
    if not isinstance(uploads, Mapping):
        raise SettingsError("uploads: expected a mapping")
    if "ttl" in uploads:
        out["upload_ttl"] = _int(uploads["ttl"], "uploads.ttl")
    if "purge_interval" in uploads:
        try:
            out["upload_purge_interval"] = float(uploads["purge_interval"])
        except (TypeError, ValueError):
            raise SettingsError("uploads.purge_interval: expected a number of seconds") from None
    unknown_uploads = set(uploads) - {"ttl", "purge_interval"}
    if unknown_uploads:
        raise SettingsError(
            f"unknown settings: uploads.{', uploads.'.join(sorted(unknown_uploads))}"
        )
    out.update(_http_section(raw.get("http")))
    proxies = raw.get("trusted_proxies")
    if isinstance(proxies, list) and all(isinstance(p, str) for p in proxies):
        out["trusted_proxies"] = ",".join(proxies)
    elif isinstance(proxies, str):
        out["trusted_proxies"] = proxies
    elif proxies is not None:
        raise SettingsError("trusted_proxies: expected a string or a list of addresses")
    redis = raw.get("redis")
    if isinstance(redis, Mapping) and set(redis) <= {"url", "timeout"}:
        if "timeout" in redis:
            try:
                out["redis_timeout"] = float(redis["timeout"])
            except (TypeError, ValueError):
                raise SettingsError("redis.timeout: expected a number of seconds") from None
        redis = redis.get("url")
    if redis is not None and not isinstance(redis, str):
        raise SettingsError("redis: expected a URL (redis://host:port/db) or {url, timeout}")
    if redis:
        if not redis.startswith(("redis://", "rediss://", "unix://")):
            raise SettingsError(f"redis: expected a redis://, rediss:// or unix:// URL: {redis}")
        out["redis_url"] = redis
    if "log_format" in raw:
        out["log_format"] = str(raw["log_format"]).lower()
    out.update(_metrics_section(raw.get("metrics")))
    auth = raw.get("auth")
    if auth is not None and not isinstance(auth, Mapping):
        raise SettingsError("auth: expected a mapping")
    if auth:
        out["auth"] = dict(auth)
    out.update(_operations_from_mapping(raw))
    if "ui" in raw:
        out["ui"] = _bool(raw["ui"], "ui")
    proxy = raw.get("proxy")
    if proxy is not None and not isinstance(proxy, Mapping):
        raise SettingsError("proxy: expected a mapping")
    if proxy:
        out["proxy"] = dict(proxy)
    policies = raw.get("policies")
    if policies is not None and not isinstance(policies, Mapping):
        raise SettingsError("policies: expected a mapping")
    if policies:
        out["policies"] = dict(policies)
    validation = raw.get("validation")
    if validation is not None and not isinstance(validation, Mapping):
        raise SettingsError("validation: expected a mapping")
    if validation:
        out["validation"] = dict(validation)
    return out


OPERATIONS_KEYS = frozenset({"readonly", "shutdown_timeout", "tls", "notifications"})


def _bool(value: Any, key: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise SettingsError(f"{key}: expected true or false, got {value!r}")


def _operations_from_mapping(raw: Mapping[str, Any]) -> dict[str, Any]:
    """readonly, shutdown_timeout, tls and notifications."""
    out: dict[str, Any] = {}
    if "readonly" in raw:
        out["readonly"] = _bool(raw["readonly"], "readonly")
    if "shutdown_timeout" in raw:
        out["shutdown_timeout"] = _int(raw["shutdown_timeout"], "shutdown_timeout")
    tls = raw.get("tls") or {}
    if not isinstance(tls, Mapping):
        raise SettingsError("tls: expected a mapping with certificate, key, client_ca")
    unknown = set(tls) - {"certificate", "key", "client_ca"}
    if unknown:
        raise SettingsError(f"unknown settings: tls.{', tls.'.join(sorted(unknown))}")
    for key in ("certificate", "key", "client_ca"):
        if tls.get(key):
            out[f"tls_{key}"] = str(tls[key])
    notifications = raw.get("notifications")
    if notifications is not None and not isinstance(notifications, Mapping):
        raise SettingsError("notifications: expected a mapping with endpoints")
    if notifications:
        out["notifications"] = dict(notifications)
    return out


def _check_operations(settings: Settings) -> None:
    if settings.shutdown_timeout < 0:
        raise SettingsError("shutdown_timeout must not be negative")
    if bool(settings.tls_certificate) != bool(settings.tls_key):
        raise SettingsError("tls: certificate and key go together")
    if settings.tls_client_ca and not settings.tls_certificate:
        raise SettingsError("tls.client_ca needs tls.certificate and tls.key")
    if settings.notifications:
        from registry.events.config import parse_notifications

        try:
            parse_notifications(settings.notifications)
        except ValueError as exc:
            raise SettingsError(f"notifications: {exc}") from None


def _http_section(http: Any) -> dict[str, Any]:
    if http is None:
        return {}
    if not isinstance(http, Mapping):
        raise SettingsError("http: expected a mapping")
    keys = {"max_header_size": "max_header_size", "max_url_size": "max_url_size"}
    keys |= {"keep_alive": "keep_alive_timeout"}
    unknown = set(http) - set(keys) - {"header_timeout"}
    if unknown:
        raise SettingsError(f"unknown settings: http.{', http.'.join(sorted(unknown))}")
    out = {field: _int(http[k], f"http.{k}") for k, field in keys.items() if k in http}
    result: dict[str, Any] = dict(out)
    if "header_timeout" in http:
        try:
            result["header_timeout"] = float(http["header_timeout"])
        except (TypeError, ValueError):
            raise SettingsError("http.header_timeout: expected a number of seconds") from None
    return result


def _metrics_section(metrics: Any) -> dict[str, Any]:
    if metrics is None:
        return {}
    if not isinstance(metrics, Mapping):
        raise SettingsError("metrics: expected a mapping with addr/on_main_port")
    unknown = set(metrics) - {"addr", "on_main_port"}
    if unknown:
        raise SettingsError(f"unknown settings: metrics.{', metrics.'.join(sorted(unknown))}")
    out: dict[str, Any] = {}
    if metrics.get("addr") is not None:
        out["metrics_addr"] = str(metrics["addr"])
    if "on_main_port" in metrics:
        if not isinstance(metrics["on_main_port"], bool):
            raise SettingsError("metrics.on_main_port: expected true or false")
        out["metrics_on_main_port"] = metrics["on_main_port"]
    return out


_ENV: dict[str, tuple[str, Callable[[str], Any]]] = {
    "PYREG_HOST": ("host", str),
    "PYREG_PORT": ("port", int),
    "PYREG_WORKERS": ("workers", int),
    "PYREG_LOG_LEVEL": ("log_level", str.lower),
    "PYREG_STORAGE": ("storage_url", str),
    "PYREG_UPLOAD_TTL": ("upload_ttl", int),
    "PYREG_UPLOAD_PURGE_INTERVAL": ("upload_purge_interval", float),
    "PYREG_MAX_MANIFEST_SIZE": ("max_manifest_size", int),
    "PYREG_TRUSTED_PROXIES": ("trusted_proxies", str),
    "PYREG_REDIS": ("redis_url", str),
    "PYREG_READONLY": ("readonly", lambda v: _bool(v, "PYREG_READONLY")),
    "PYREG_SHUTDOWN_TIMEOUT": ("shutdown_timeout", int),
    "PYREG_TLS_CERT": ("tls_certificate", str),
    "PYREG_TLS_KEY": ("tls_key", str),
    "PYREG_TLS_CLIENT_CA": ("tls_client_ca", str),
    "PYREG_LOG_FORMAT": ("log_format", str.lower),
    "PYREG_METRICS_ADDR": ("metrics_addr", str),
    "PYREG_STORAGE_FSYNC": ("storage_fsync", lambda v: _bool(v, "PYREG_STORAGE_FSYNC")),
}


def load_settings(
    path: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Defaults < YAML file < environment < `overrides` (None values are ignored)."""
    values: dict[str, Any] = {}
    if path is not None:
        try:
            raw = yaml.safe_load(Path(path).read_text()) or {}
        except OSError as exc:
            raise SettingsError(f"cannot read {path}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise SettingsError(f"{path}: invalid YAML: {exc}") from None
        if not isinstance(raw, Mapping):
            raise SettingsError(f"{path}: expected a mapping at the top level")
        values.update(_from_mapping(raw))
    env = os.environ if environ is None else environ
    for var, (key, convert) in _ENV.items():
        if var in env:
            try:
                values[key] = convert(env[var])
            except ValueError:
                raise SettingsError(f"{var}: invalid value {env[var]!r}") from None
    values.update({k: v for k, v in overrides.items() if v is not None})
    return Settings(**values)
