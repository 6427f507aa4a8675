"""Typed server settings: defaults, then an optional YAML file, then environment, then flags.

YAML keys (all optional; documented in docs/registry.md):

    host: 127.0.0.1
    port: 5000
    workers: 1
    log_level: info
    storage: file://./var/registry      # or {url: ..., options: {...}}
    max_manifest_size: 4194304
    uploads: {ttl: 86400, purge_interval: 3600}
    trusted_proxies: ""                  # e.g. "10.0.0.1,10.0.0.2" or "*"
    log_format: text                     # or json (one object per line)
    metrics: {addr: null, on_main_port: false}   # addr: HOST:PORT of the metrics listener
    auth: null                           # passed as-is to registry.auth.build_access

Environment: PYREG_HOST, PYREG_PORT, PYREG_WORKERS, PYREG_LOG_LEVEL, PYREG_STORAGE,
PYREG_UPLOAD_TTL, PYREG_UPLOAD_PURGE_INTERVAL, PYREG_MAX_MANIFEST_SIZE, PYREG_TRUSTED_PROXIES,
PYREG_LOG_FORMAT, PYREG_METRICS_ADDR.
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
    upload_ttl: int = 24 * 3600  # seconds an untouched upload session is kept
    upload_purge_interval: float = 3600.0  # seconds between sweeps of stale sessions; 0: never
    max_manifest_size: int = 4 * 1024 * 1024
    # Addresses whose X-Forwarded-For/-Proto are believed (uvicorn's forwarded_allow_ips).
    # Empty: none, so behind a proxy every client would share the proxy's address (and its
    # login lockout); set it to the proxy's address there.
    trusted_proxies: str = ""
    auth: dict[str, Any] | None = None
    log_format: str = "text"
    # HOST:PORT of the metrics listener (registry.observe.listener); empty: none
    metrics_addr: str = ""
    metrics_on_main_port: bool = False  # also serve /metrics on the registry's port

    def __post_init__(self) -> None:
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
        if self.log_format not in LOG_FORMATS:
            raise SettingsError(f"log_format must be one of {', '.join(LOG_FORMATS)}")

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
    known |= {"uploads", "auth", "trusted_proxies"}
    known |= {"log_format", "metrics"}
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
    elif storage is not None:
        raise SettingsError("storage: expected a URL or a mapping with url/options")
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
    proxies = raw.get("trusted_proxies")
    if isinstance(proxies, list) and all(isinstance(p, str) for p in proxies):
        out["trusted_proxies"] = ",".join(proxies)
    elif isinstance(proxies, str):
        out["trusted_proxies"] = proxies
    elif proxies is not None:
        raise SettingsError("trusted_proxies: expected a string or a list of addresses")
    if "log_format" in raw:
        out["log_format"] = str(raw["log_format"]).lower()
    out.update(_metrics_section(raw.get("metrics")))
    auth = raw.get("auth")
    if auth is not None and not isinstance(auth, Mapping):
        raise SettingsError("auth: expected a mapping")
    if auth:
        out["auth"] = dict(auth)
    return out


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
    "PYREG_LOG_FORMAT": ("log_format", str.lower),
    "PYREG_METRICS_ADDR": ("metrics_addr", str),
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
