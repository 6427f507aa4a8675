"""Access rules: which principals may pull, push or delete in which repositories.

Semantics (documented in docs/auth.md):
- Rules are ordered; the first rule whose `repository` pattern matches the name decides alone.
  No matching rule: nothing is allowed (a repository is private unless a rule opens it).
- Patterns: `*` matches within one path segment, `**` any number (at least one) of whole
  segments; everything else is literal. `**` alone matches every repository.
- Who: a user name, `*` (any authenticated user) or `anonymous` (everyone, logged in or not).
- `push` implies `pull` (a client pushing asks for `pull,push` and checks what already exists);
  `delete` implies nothing else.
- `registry:catalog:*` is granted to everyone; the listing itself is filtered to the
  repositories the caller may pull.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from registry.auth.base import Access, Principal

ACTIONS = ("pull", "push", "delete")
ANYONE = "anonymous"
AUTHENTICATED = "*"


class RuleError(ValueError):
    """A malformed rule in the configuration."""


def compile_pattern(pattern: str) -> re.Pattern[str]:
    if not pattern or pattern.startswith("/") or pattern.endswith("/") or "//" in pattern:
        raise RuleError(f"invalid repository pattern: {pattern!r}")
    parts: list[str] = []
    for segment in pattern.split("/"):
        if segment == "**":
            parts.append(r"[^/]+(?:/[^/]+)*")
        elif "**" in segment:
            raise RuleError(f"'**' must be a whole path segment in {pattern!r}")
        else:
            parts.append("[^/]*".join(re.escape(piece) for piece in segment.split("*")))
    return re.compile("/".join(parts))


@dataclass(frozen=True, slots=True)
class Rule:
    pattern: str
    regex: re.Pattern[str]
    who: dict[str, frozenset[str]]  # action -> principals

    def matches(self, repository: str) -> bool:
        return self.regex.fullmatch(repository) is not None

    def actions_for(self, principal: Principal) -> frozenset[str]:
        granted = {action for action, who in self.who.items() if _admits(who, principal)}
        if "push" in granted:
            granted.add("pull")
        return frozenset(granted)


def _admits(who: frozenset[str], principal: Principal) -> bool:
    if ANYONE in who:
        return True
    if principal.anonymous:
        return False
    return AUTHENTICATED in who or principal.name in who


def _principals(value: Any, where: str) -> frozenset[str]:
    if value is None:
        return frozenset()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise RuleError(f"{where} must be a list of user names, '*' or 'anonymous'")
    return frozenset(value)


def parse_rules(raw: Any) -> tuple[Rule, ...]:
    if not isinstance(raw, list):
        raise RuleError("auth.rules must be a list")
    rules = []
    for index, item in enumerate(raw):
        where = f"auth.rules[{index}]"
        if not isinstance(item, dict):
            raise RuleError(f"{where} must be a mapping")
        unknown = set(item) - {"repository", *ACTIONS}
        if unknown:
            raise RuleError(f"unknown keys in {where}: {sorted(unknown)}")
        pattern = item.get("repository")
        if not isinstance(pattern, str):
            raise RuleError(f"{where}.repository must be a pattern string")
        who = {action: _principals(item.get(action), f"{where}.{action}") for action in ACTIONS}
        rules.append(Rule(pattern, compile_pattern(pattern), who))
    return tuple(rules)


class Rules:
    """The ordered rule list, answering 'what may this principal do here?'."""

    def __init__(self, rules: Sequence[Rule]) -> None:
        self._rules = tuple(rules)

    def actions(self, principal: Principal, repository: str) -> frozenset[str]:
        for rule in self._rules:
            if rule.matches(repository):
                return rule.actions_for(principal)
        return frozenset()

    def allows(self, principal: Principal, need: Access) -> bool:
        if need.type == "registry":
            return need.name == "catalog" and need.action == "*"
        if need.type != "repository":
            return False
        return need.action in self.actions(principal, need.name)

    def allows_all(self, principal: Principal, needs: Iterable[Access]) -> bool:
        return all(self.allows(principal, need) for need in needs)

    def grant(self, principal: Principal, type_: str, name: str, asked: Iterable[str]) -> list[str]:
        """The intersection of the asked actions and what the rules allow, in asked order."""
        if type_ == "registry":
            return ["*"] if name == "catalog" and "*" in asked else []
        if type_ != "repository":
            return []
        allowed = self.actions(principal, name)
        granted: list[str] = []
        for action in asked:
            if action == "*":
                candidates = sorted(allowed)
            else:
                candidates = [action] if action in allowed else []
            granted.extend(a for a in candidates if a not in granted)
        return granted
