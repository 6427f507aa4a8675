"""Registry credentials where docker, podman and skopeo keep them, in their documented order.

Read, first entry found wins (containers-auth.json(5)):
1. the primary file: `--authfile`, else `$REGISTRY_AUTH_FILE`, else `$DOCKER_CONFIG/config.json`
   when DOCKER_CONFIG is set (podman's default authfile), else
   `${XDG_RUNTIME_DIR}/containers/auth.json` (podman's `login`; `/run/containers/UID/auth.json`
   without XDG_RUNTIME_DIR);
2. `${XDG_CONFIG_HOME:-~/.config}/containers/auth.json`;
3. docker's `$DOCKER_CONFIG/config.json` (default `~/.docker/config.json`);
4. docker's legacy `~/.dockercfg` (its top level is the `auths` map; read, never written).
In each file: `credHelpers[HOST]` names a helper for that registry; else the `auths` entry
for the repository's namespace when one is known, most specific first (`quay.io/user/image`,
then `quay.io/user`; exact keys, as containers-auth.json(5)), then the one keyed by host
(`https://index.docker.io/v1/` for Docker Hub), with `auth` =
base64("user:password") and optionally `identitytoken` (an OAuth2 refresh token); else
`credsStore` names the helper for every registry. Helpers are `docker-credential-NAME`
programs (credhelpers.py); one that is not installed is warned about and skipped.

`login` writes the `--authfile` / `$REGISTRY_AUTH_FILE` file if one is named, else docker's
config.json (through its helper when it names one); `logout` removes the entry everywhere.
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


def auth_files(authfile: Path | None = None) -> list[Path]:
    """The files searched for credentials, in order (see the module docstring)."""
    # podman's default --authfile: REGISTRY_AUTH_FILE, else $DOCKER_CONFIG/config.json when
    # DOCKER_CONFIG is set (containers/common GetDefaultAuthFile)
    explicit = (
        authfile
        or _env_path("REGISTRY_AUTH_FILE")
        or (config_path() if os.environ.get("DOCKER_CONFIG") else None)
    )
    runtime = _env_path("XDG_RUNTIME_DIR")
    primary = explicit or (
        runtime / "containers/auth.json"
        if runtime
        else Path(f"/run/containers/{os.getuid()}/auth.json")
    )
    config_home = _env_path("XDG_CONFIG_HOME") or Path.home() / ".config"
    files = [primary, config_home / "containers/auth.json", config_path(), legacy_path()]
    return list(dict.fromkeys(files))  # one file named twice is read once


def write_target(authfile: Path | None = None) -> Path:
    """Where `login` writes: the named auth file, else docker's config.json."""
    return authfile or _env_path("REGISTRY_AUTH_FILE") or config_path()


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value) if value else None


def config_path() -> Path:
    directory = os.environ.get("DOCKER_CONFIG")
    base = Path(directory) if directory else Path.home() / ".docker"
    return base / "config.json"


def legacy_path() -> Path:
    """docker's pre-1.7 credentials file, read last (as docker and containers/image do)."""
    return Path.home() / ".dockercfg"


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
    """The file as a config.json (the legacy ~/.dockercfg is the `auths` map itself)."""
    data = _read_json(path)
    return {"auths": data} if path == legacy_path() and data else data


def _read_json(path: Path) -> dict[str, Any]:
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


def load(
    registry: str,
    path: Path | None = None,
    authfile: Path | None = None,
    repository: str | None = None,
) -> Credentials | None:
    """The credentials stored for `registry` (for `repository` in it, when given: namespace
    keys count), or None (anonymous). `path`: that file only."""
    for file in [path] if path else auth_files(authfile):
        found = _load_from(file, registry, repository)
        if found is not None:
            return found
    return None


def _helper_for(data: dict[str, Any], registry: str) -> tuple[str | None, str | None]:
    """(credHelpers' helper for `registry`, credsStore), as named in one file."""
    wanted = _normalise(registry_key(registry))
    helpers = data.get("credHelpers")
    own = None
    if isinstance(helpers, dict):
        own = next(
            (v for k, v in helpers.items() if _normalise(k) == wanted and isinstance(v, str)),
            None,
        )
    store = data.get("credsStore")
    return own or None, store if isinstance(store, str) and store else None


def _from_helper(name: str, registry: str, path: Path) -> Credentials | None:
    from regclient import credhelpers

    try:
        return credhelpers.get(name, registry_key(registry))
    except credhelpers.HelperMissing as exc:
        print(f"warning: {path}: {exc}; ignored", file=sys.stderr)
        return None


def _namespace_keys(registry: str, repository: str | None) -> list[str]:
    """`host/a/b/c`, `host/a/b`, `host/a`: the repository and its namespaces, most specific
    first."""
    if not repository:
        return []
    host = "docker.io" if registry in _HUB_ALIASES else registry
    parts = repository.split("/")
    return [f"{host}/{'/'.join(parts[:n])}" for n in range(len(parts), 0, -1)]


def _load_from(path: Path, registry: str, repository: str | None = None) -> Credentials | None:
    data = _read(path)
    own, store = _helper_for(data, registry)
    if own is not None:
        return _from_helper(own, registry, path)
    auths = data.get("auths")
    if isinstance(auths, dict) and path != legacy_path():  # the legacy file has hosts only
        for key in _namespace_keys(registry, repository):
            entry = auths.get(key)
            found = _decode(entry, key, path) if isinstance(entry, dict) else None
            if found is not None:
                return found
    wanted = _normalise(registry_key(registry))
    for key, entry in auths.items() if isinstance(auths, dict) else ():
        if not isinstance(entry, dict) or _normalise(key) != wanted or _has_path(key):
            continue
        found = _decode(entry, key, path)
        if found is not None:
            return found
    if store is not None:
        return _from_helper(store, registry, path)
    return None


def _has_path(key: str) -> bool:
    """A namespace key (`quay.io/user`), not a host: it only counts for its repositories.
    docker's URL keys (`https://index.docker.io/v1/`) name the host."""
    return "://" not in key and "/" in key.rstrip("/")


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


def store(
    registry: str,
    username: str,
    password: str,
    path: Path | None = None,
    authfile: Path | None = None,
) -> str:
    """Write (or replace) the entry for `registry`; returns where it went (a file or a
    credential helper)."""
    if ":" in username:
        raise CredentialsError("a user name cannot contain ':'")
    path = path or write_target(authfile)
    data = _read(path)
    own, helper_store = _helper_for(data, registry)
    helper = own or helper_store
    if helper is not None:
        from regclient import credhelpers

        credhelpers.store(helper, registry_key(registry), username, password)
        return f"the credential helper docker-credential-{helper}"
    auths = data.get("auths")
    if not isinstance(auths, dict):
        auths = {}
    wanted = _normalise(registry_key(registry))
    for key in [k for k in auths if _normalise(k) == wanted and not _has_path(k)]:
        del auths[key]
    auths[registry_key(registry)] = {
        "auth": base64.b64encode(f"{username}:{password}".encode()).decode()
    }
    data["auths"] = auths
    _write(path, data)
    return str(path)


def remove(registry: str, path: Path | None = None, authfile: Path | None = None) -> bool:
    """Remove the entry for `registry` from every file (and helper) that has one; False when
    none had."""
    removed = False
    for file in [path] if path else auth_files(authfile):
        if file == legacy_path():
            if _load_from(file, registry) is not None:
                print(
                    f"warning: {file} (docker's legacy format, not modified) still has "
                    f"credentials for {registry}",
                    file=sys.stderr,
                )
            continue
        removed = _remove_from(file, registry) or removed
    return removed


def _remove_from(path: Path, registry: str) -> bool:
    data = _read(path)
    removed = False
    own, helper_store = _helper_for(data, registry)
    helper = own or helper_store
    if helper is not None:
        from regclient import credhelpers

        try:
            removed = credhelpers.erase(helper, registry_key(registry))
        except credhelpers.HelperMissing as exc:
            print(f"warning: {path}: {exc}; ignored", file=sys.stderr)
    auths = data.get("auths")
    if not isinstance(auths, dict):
        return removed
    wanted = _normalise(registry_key(registry))
    keys = [k for k in auths if _normalise(k) == wanted and not _has_path(k)]
    if not keys:
        return removed
    for key in keys:
        del auths[key]
    _write(path, data)
    return True
