"""containers-registries.conf(5), version 2, read as podman and skopeo read it (containers/image
sysregistriesv2): per-registry `location` rewrites, `insecure`, `blocked` and mirrors.

Files, in order (later ones override earlier entries with the same `prefix`):
1. the main file: `--registries-conf FILE`, else `$CONTAINERS_REGISTRIES_CONF`, else
   `$HOME/.config/containers/registries.conf` when it exists (it then *replaces* the system
   file and the system drop-in directory), else `/etc/containers/registries.conf`;
2. the drop-ins `*.conf` of `/etc/containers/registries.conf.d/` (not when the per-user main
   file is used), then of `$HOME/.config/containers/registries.conf.d/`, each in name order.
A missing file is an empty one.

`[[registry]]`: `prefix` (default: `location`) is matched against the full reference
(`host[:port]/path:tag@digest`) at a `/`, `:` or `@` boundary, or `*.example.com` against
the host; the longest prefix wins. A pull tries the `[[registry.mirror]]` locations in order,
then `location`, each with the part of the reference after the prefix appended.
`pull-from-mirror` = `all` (default), `digest-only` (only pulls by digest use the mirror) or
`tag-only`; `mirror-by-digest-only = true` makes every mirror of the entry digest-only.
`insecure` allows plain HTTP and unverified TLS for that location; `blocked` refuses pulls.
Not used: `unqualified-search-registries`, `short-name-mode` and `[aliases]` (a name without a
host means docker.io, as docker has it); of the version 1 format only `[registries.insecure]`
and `[registries.block]` are honoured.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ocispec.reference import Reference, ReferenceError

ENV = "CONTAINERS_REGISTRIES_CONF"
SYSTEM_FILE = Path("/etc/containers/registries.conf")
PULL_FROM_MIRROR = ("all", "digest-only", "tag-only")


class RegistriesConfError(ValueError):
    """A registries.conf file cannot be read or says something invalid."""


class BlockedRegistry(RegistriesConfError):
    """The reference's registry is marked `blocked`."""


@dataclass(frozen=True, slots=True)
class Mirror:
    location: str
    insecure: bool = False
    pull_from_mirror: str = "all"


@dataclass(frozen=True, slots=True)
class Registry:
    prefix: str
    location: str
    insecure: bool = False
    blocked: bool = False
    mirrors: tuple[Mirror, ...] = ()
    source: Path | None = None  # the file that defined it, for messages


@dataclass(frozen=True, slots=True)
class PullSource:
    """One place to pull a reference from: a mirror or the primary location."""

    reference: Reference
    insecure: bool = False
    mirror: bool = False


def config_files(
    conf: Path | None = None,
    *,
    home: Path | None = None,
    system_file: Path = SYSTEM_FILE,
) -> list[Path]:
    """The files read, in order (module docstring); missing ones included."""
    home = home if home is not None else Path.home()
    user_file = home / ".config/containers/registries.conf"
    user_dir = home / ".config/containers/registries.conf.d"
    system_dir = system_file.parent / "registries.conf.d"
    named = conf or (Path(os.environ[ENV]) if os.environ.get(ENV) else None)
    if named is not None:
        main, dirs = named, [system_dir, user_dir]
    elif user_file.exists():
        main, dirs = user_file, [user_dir]  # the per-user file replaces the system's
    else:
        main, dirs = system_file, [system_dir, user_dir]
    files = [main]
    for directory in dirs:
        try:
            files += sorted(p for p in directory.iterdir() if p.suffix == ".conf")
        except OSError:
            continue  # no drop-in directory
    return files


def load(
    conf: Path | None = None, *, home: Path | None = None, system_file: Path = SYSTEM_FILE
) -> RegistriesConf:
    return RegistriesConf.from_files(config_files(conf, home=home, system_file=system_file))


@dataclass
class RegistriesConf:
    registries: list[Registry] = field(default_factory=list)

    @classmethod
    def from_files(cls, files: Iterable[Path]) -> RegistriesConf:
        by_prefix: dict[str, Registry] = {}
        for path in files:
            for entry in _read(path):
                by_prefix.pop(entry.prefix, None)  # a later file's entry replaces it
                by_prefix[entry.prefix] = entry
        return cls(list(by_prefix.values()))

    @classmethod
    def from_text(cls, text: str, source: Path | None = None) -> RegistriesConf:
        return cls(_parse(_toml(text, source or Path("registries.conf")), source))

    def find(self, ref: Reference) -> tuple[Registry, str] | None:
        """The entry for `ref` and the prefix it matched, longest first; None: no entry."""
        full = _full_name(ref)
        best: tuple[Registry, str] | None = None
        for entry in self.registries:
            matched = _match(full, entry.prefix)
            if matched is not None and (best is None or len(matched) > len(best[1])):
                best = (entry, matched)
        return best

    def pull_sources(self, ref: Reference, insecure: bool = False) -> list[PullSource]:
        """Where to pull `ref` from, in order: the mirrors that apply, then the primary.
        Raises BlockedRegistry for a blocked registry."""
        found = self.find(ref)
        if found is None:
            return [PullSource(ref, insecure)]
        entry, matched = found
        if entry.blocked:
            where = f" in {entry.source}" if entry.source else ""
            raise BlockedRegistry(f"registry {entry.prefix} is blocked{where}")
        rest = _full_name(ref)[len(matched) :]
        by_digest = ref.digest is not None
        sources = [
            PullSource(_rewrite(m.location, rest, ref), m.insecure or insecure, mirror=True)
            for m in entry.mirrors
            if m.pull_from_mirror == "all" or (m.pull_from_mirror == "digest-only") == by_digest
        ]
        primary = entry.location or matched  # a wildcard entry has no location
        sources.append(PullSource(_rewrite(primary, rest, ref), entry.insecure or insecure))
        return sources


def _full_name(ref: Reference) -> str:
    """As containers/image matches it: a reference without tag or digest means `:latest`."""
    out = ref.name
    if ref.tag or ref.digest is None:
        out += f":{ref.tag or 'latest'}"
    if ref.digest is not None:
        out += f"@{ref.digest}"
    return out


def _match(full: str, prefix: str) -> str | None:
    """The part of `full` that `prefix` matches, or None."""
    if prefix.startswith("*."):
        host = full.split("/", 1)[0]
        return host if host.endswith(prefix[1:]) else None
    if full == prefix:
        return prefix
    if full.startswith(prefix) and full[len(prefix)] in "/:@":
        return prefix
    return None


def _rewrite(location: str, rest: str, ref: Reference) -> Reference:
    try:
        return Reference.parse(location + rest)
    except ReferenceError as exc:
        raise RegistriesConfError(f"{location!r} cannot stand for {ref}: {exc}") from None


def _read(path: Path) -> list[Registry]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise RegistriesConfError(f"cannot read {path}: {exc}") from None
    return _parse(_toml(text, path), path)


def _toml(text: str, path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RegistriesConfError(f"{path} is not valid TOML: {exc}") from None


def _parse(data: dict[str, Any], source: Path | None) -> list[Registry]:
    where = source or "registries.conf"
    if "registries" in data:  # version 1
        if "registry" in data:
            raise RegistriesConfError(f"{where} mixes the version 1 and version 2 formats")
        return _parse_v1(data["registries"], where, source)
    raw = data.get("registry", [])
    if not isinstance(raw, list):
        raise RegistriesConfError(f"{where}: `registry` must be an array of tables ([[registry]])")
    return [_registry(item, where, source) for item in raw]


def _registry(item: Any, where: object, source: Path | None) -> Registry:
    if not isinstance(item, dict):
        raise RegistriesConfError(f"{where}: a [[registry]] entry is not a table")
    location = _str(item, "location", where)
    prefix = _str(item, "prefix", where) or location
    if not prefix:
        raise RegistriesConfError(f"{where}: a [[registry]] entry has neither prefix nor location")
    if prefix.startswith("*.") and location:
        raise RegistriesConfError(f"{where}: wildcard prefix {prefix} cannot have a location")
    if not prefix.startswith("*.") and not location:
        raise RegistriesConfError(f"{where}: [[registry]] {prefix} has no location")
    digest_only = _bool(item, "mirror-by-digest-only", where)
    mirrors = item.get("mirror", [])
    if not isinstance(mirrors, list):
        raise RegistriesConfError(f"{where}: `mirror` of {prefix} must be [[registry.mirror]]")
    return Registry(
        prefix=prefix,
        location=location,
        insecure=_bool(item, "insecure", where),
        blocked=_bool(item, "blocked", where),
        mirrors=tuple(_mirror(m, prefix, digest_only, where) for m in mirrors),
        source=source,
    )


def _mirror(item: Any, prefix: str, digest_only: bool, where: object) -> Mirror:
    if not isinstance(item, dict):
        raise RegistriesConfError(f"{where}: a mirror of {prefix} is not a table")
    location = _str(item, "location", where)
    if not location:
        raise RegistriesConfError(f"{where}: a mirror of {prefix} has no location")
    mode = _str(item, "pull-from-mirror", where) or "all"
    if mode not in PULL_FROM_MIRROR:
        raise RegistriesConfError(
            f"{where}: pull-from-mirror of {location} must be one of {', '.join(PULL_FROM_MIRROR)}"
        )
    if digest_only:
        mode = "digest-only"  # mirror-by-digest-only on the registry overrides
    return Mirror(location, _bool(item, "insecure", where), mode)


def _parse_v1(section: Any, where: object, source: Path | None) -> list[Registry]:
    if not isinstance(section, dict):
        raise RegistriesConfError(f"{where}: [registries] must be a table")
    flags: dict[str, dict[str, bool]] = {}
    for table, flag in (("insecure", "insecure"), ("block", "blocked")):
        names = section.get(table, {}).get("registries", [])
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise RegistriesConfError(f"{where}: [registries.{table}] registries must be strings")
        for name in names:
            flags.setdefault(name, {})[flag] = True
    return [
        Registry(
            name,
            name,
            insecure=given.get("insecure", False),
            blocked=given.get("blocked", False),
            source=source,
        )
        for name, given in flags.items()
    ]


def _str(item: dict[str, Any], key: str, where: object) -> str:
    value = item.get(key, "")
    if not isinstance(value, str):
        raise RegistriesConfError(f"{where}: `{key}` must be a string")
    return value.removesuffix("/")


def _bool(item: dict[str, Any], key: str, where: object) -> bool:
    value = item.get(key, False)
    if not isinstance(value, bool):
        raise RegistriesConfError(f"{where}: `{key}` must be true or false")
    return value
