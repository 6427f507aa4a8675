"""Resource scopes as the token protocol writes them: `repository:NAME:pull,push`.

The name may itself contain one `:` (a host with a port), so the type is what precedes the
first colon and the actions what follows the last one. A `(class)` suffix on the type is
deprecated and ignored (scope.md).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from ocispec.reference import valid_repository_name
from registry.auth.base import Access

_TYPE_RE = re.compile(r"^([a-z0-9]+)(?:\([a-z0-9]+\))?$")
_ACTION_RE = re.compile(r"^(?:[a-z]*|\*)$")
_HOST_RE = re.compile(r"^[a-zA-Z0-9]([a-zA-Z0-9.-]*[a-zA-Z0-9])?(?::[0-9]+)?$")


class ScopeError(ValueError):
    """A scope that does not follow the grammar."""


@dataclass(frozen=True, slots=True)
class ResourceScope:
    type: str
    name: str
    actions: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.type}:{self.name}:{','.join(self.actions)}"


def _valid_name(name: str) -> bool:
    """A repository name, optionally behind a `host[:port]/` (the scope grammar allows it)."""
    if valid_repository_name(name):
        return True
    host, sep, path = name.partition("/")
    return bool(sep) and bool(_HOST_RE.fullmatch(host)) and valid_repository_name(path)


def parse_one(text: str) -> ResourceScope:
    type_part, sep1, rest = text.partition(":")
    name, sep2, actions_part = rest.rpartition(":")
    match = _TYPE_RE.fullmatch(type_part)
    if not sep1 or not sep2 or not match or not name:
        raise ScopeError(f"invalid scope: {text!r}")
    actions = tuple(a for a in actions_part.split(",") if a)
    if not all(_ACTION_RE.fullmatch(a) for a in actions):
        raise ScopeError(f"invalid actions in scope: {text!r}")
    type_ = match.group(1)
    if type_ == "repository" and not _valid_name(name):
        raise ScopeError(f"invalid repository name in scope: {text!r}")
    return ResourceScope(type_, name, actions)


def parse_scopes(values: Iterable[str]) -> list[ResourceScope]:
    """Every scope in the given parameters (each may hold several, space-separated)."""
    scopes: list[ResourceScope] = []
    for value in values:
        scopes.extend(parse_one(item) for item in value.split(" ") if item)
    return scopes


def merge(needs: Iterable[Access]) -> list[ResourceScope]:
    """Group needs by resource, keeping first-seen order: pull+push on x -> x:pull,push."""
    grouped: dict[tuple[str, str], list[str]] = {}
    for need in needs:
        actions = grouped.setdefault((need.type, need.name), [])
        if need.action not in actions:
            actions.append(need.action)
    return [ResourceScope(t, n, tuple(a)) for (t, n), a in grouped.items()]
