"""The `policies:` section, parsed and validated where it is defined.

    policies:
      immutable:                      # tags that, once pushed, never move nor go
        - {repository: "release/**", tags: ["v*"]}
      retention:                      # applied by `pyreg gc`; the first matching rule decides
        - repository: "ci/**"
          keep_last: 10               # the N most recently pushed tags
          keep_within: 30d            # tags pushed within the period
          keep: ["^stable-"]          # tags matching any regex
          drop: ["^pr-"]              # only these tags are candidates (default: every tag)
          protect: ["latest", "v*"]   # globs: always kept, whatever else matches
          untagged_after: 7d          # untagged manifests older than this are deleted
      quotas:                         # bytes of unique blobs referenced, per namespace
        - {repository: "team/**", limit: 10GiB}

Repository patterns are the access rules' globs (registry.auth.rules.compile_pattern); tag
patterns in `tags`/`protect` are shell globs (`*`, `?`, `[...]`) over the whole tag; `keep` and
`drop` are regular expressions searched in the tag (anchor them with ^...$ for whole tags).
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from typing import Any


class PolicyError(ValueError):
    """A malformed `policies:` section."""


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(value: Any, where: str) -> float:
    """Seconds from a number or `<n>s|m|h|d|w`."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        return float(value)
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", value)
        if match:
            return float(match.group(1)) * _UNITS[match.group(2)]
    raise PolicyError(f"{where}: expected seconds or a duration such as 12h, 30d, 2w")


def _globs(value: Any, where: str) -> tuple[re.Pattern[str], ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise PolicyError(f"{where}: expected a list of tag globs")
    return tuple(re.compile(fnmatch.translate(v)) for v in value)


def _regexes(value: Any, where: str) -> tuple[re.Pattern[str], ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise PolicyError(f"{where}: expected a list of regular expressions")
    try:
        return tuple(re.compile(v) for v in value)
    except re.error as exc:
        raise PolicyError(f"{where}: invalid regular expression: {exc}") from None


def _repository(item: dict[str, Any], where: str) -> tuple[str, re.Pattern[str]]:
    pattern = item.get("repository")
    if not isinstance(pattern, str):
        raise PolicyError(f"{where}.repository must be a pattern string")
    # Imported here: registry.auth's package imports the stores, which import this module.
    from registry.auth.rules import RuleError, compile_pattern

    try:
        return pattern, compile_pattern(pattern)
    except RuleError as exc:
        raise PolicyError(f"{where}: {exc}") from None


def _items(raw: Any, where: str, keys: set[str]) -> list[dict[str, Any]]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise PolicyError(f"{where} must be a list")
    out = []
    for index, item in enumerate(raw):
        if not isinstance(item, dict):
            raise PolicyError(f"{where}[{index}] must be a mapping")
        unknown = set(item) - keys
        if unknown:
            raise PolicyError(f"unknown keys in {where}[{index}]: {sorted(unknown)}")
        out.append(item)
    return out


@dataclass(frozen=True, slots=True)
class ImmutableRule:
    where: str  # e.g. "policies.immutable[0]", named in refusals
    repository: str
    regex: re.Pattern[str]
    tag_globs: tuple[str, ...]
    tags: tuple[re.Pattern[str], ...]

    def covers(self, repository: str, tag: str) -> bool:
        return self.regex.fullmatch(repository) is not None and any(
            t.fullmatch(tag) for t in self.tags
        )

    def describe(self) -> str:
        return f"{self.where} (repository {self.repository}, tags {', '.join(self.tag_globs)})"


@dataclass(frozen=True, slots=True)
class RetentionRule:
    where: str
    repository: str
    regex: re.Pattern[str]
    keep_last: int | None = None
    keep_within: float | None = None  # seconds
    keep: tuple[re.Pattern[str], ...] = ()
    drop: tuple[re.Pattern[str], ...] = ()
    protect: tuple[re.Pattern[str], ...] = ()
    untagged_after: float | None = None  # seconds

    def matches(self, repository: str) -> bool:
        return self.regex.fullmatch(repository) is not None

    @property
    def prunes_tags(self) -> bool:
        """Whether any tag is a candidate: a rule naming only `protect` deletes nothing."""
        return (
            bool(self.drop)
            or self.keep_last is not None
            or self.keep_within is not None
            or (bool(self.keep))
        )


_SIZE_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}
_SIZE_UNITS |= {"kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_size(value: Any, where: str) -> int:
    """Bytes from a number or `<n>` with B, KB, MB, GB, TB, KiB, MiB, GiB, TiB."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", value)
        if match and match.group(2).lower() in _SIZE_UNITS:
            size = int(float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()])
            if size > 0:
                return size
    raise PolicyError(f"{where}: expected a size such as 500MB or 10GiB")


@dataclass(frozen=True, slots=True)
class QuotaRule:
    where: str
    repository: str  # the namespace, as a pattern: every matching repository counts in it
    regex: re.Pattern[str]
    limit: int  # bytes

    def matches(self, repository: str) -> bool:
        return self.regex.fullmatch(repository) is not None


@dataclass(frozen=True, slots=True)
class Policies:
    immutable: tuple[ImmutableRule, ...] = ()
    retention: tuple[RetentionRule, ...] = ()
    quotas: tuple[QuotaRule, ...] = ()

    def quotas_for(self, repository: str) -> list[QuotaRule]:
        """Every namespace `repository` counts in (all matching rules, not the first)."""
        return [q for q in self.quotas if q.matches(repository)]

    def immutable_rule(self, repository: str, tag: str) -> ImmutableRule | None:
        """The first immutability rule covering `tag` in `repository`, if any."""
        return next((r for r in self.immutable if r.covers(repository, tag)), None)

    def retention_rule(self, repository: str) -> RetentionRule | None:
        return next((r for r in self.retention if r.matches(repository)), None)


def parse_policies(raw: Any) -> Policies:
    if raw is None:
        return Policies()
    if not isinstance(raw, dict):
        raise PolicyError("policies: expected a mapping with immutable, retention")
    unknown = set(raw) - {"immutable", "retention", "quotas"}
    if unknown:
        raise PolicyError(f"unknown keys in policies: {sorted(unknown)}")
    immutable = []
    for i, item in enumerate(
        _items(raw.get("immutable"), "policies.immutable", {"repository", "tags"})
    ):
        where = f"policies.immutable[{i}]"
        pattern, regex = _repository(item, where)
        if "tags" not in item:
            raise PolicyError(f"{where}.tags: expected a list of tag globs")
        globs = item["tags"] if isinstance(item["tags"], list) else [item["tags"]]
        immutable.append(
            ImmutableRule(
                where, pattern, regex, tuple(map(str, globs)), _globs(item["tags"], f"{where}.tags")
            )
        )
    retention = []
    keys = {"repository", "keep_last", "keep_within", "keep", "drop", "protect", "untagged_after"}
    for i, item in enumerate(_items(raw.get("retention"), "policies.retention", keys)):
        where = f"policies.retention[{i}]"
        pattern, regex = _repository(item, where)
        keep_last = item.get("keep_last")
        if keep_last is not None and (
            isinstance(keep_last, bool) or not isinstance(keep_last, int) or keep_last < 0
        ):
            raise PolicyError(f"{where}.keep_last: expected a count (0 or more)")
        retention.append(
            RetentionRule(
                where,
                pattern,
                regex,
                keep_last=keep_last,
                keep_within=_opt_duration(item, "keep_within", where),
                keep=_regexes(item.get("keep", []), f"{where}.keep"),
                drop=_regexes(item.get("drop", []), f"{where}.drop"),
                protect=_globs(item.get("protect", []), f"{where}.protect"),
                untagged_after=_opt_duration(item, "untagged_after", where),
            )
        )
    quotas = []
    for i, item in enumerate(_items(raw.get("quotas"), "policies.quotas", {"repository", "limit"})):
        where = f"policies.quotas[{i}]"
        pattern, regex = _repository(item, where)
        quotas.append(
            QuotaRule(where, pattern, regex, parse_size(item.get("limit"), f"{where}.limit"))
        )
    return Policies(tuple(immutable), tuple(retention), tuple(quotas))


def _opt_duration(item: dict[str, Any], key: str, where: str) -> float | None:
    value = item.get(key)
    return None if value is None else parse_duration(value, f"{where}.{key}")
