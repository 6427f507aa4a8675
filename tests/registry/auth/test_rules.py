from __future__ import annotations

import pytest

from registry.auth.base import ANONYMOUS, CATALOG, Principal, delete, pull, push
from registry.auth.rules import RuleError, Rules, compile_pattern, parse_rules

ALICE = Principal("alice")
BOB = Principal("bob")
ADMIN = Principal("admin")


def rules(raw: list[dict[str, object]]) -> Rules:
    return Rules(parse_rules(raw))


@pytest.mark.parametrize(
    ("pattern", "name", "matches"),
    [
        ("library/*", "library/alpine", True),
        ("library/*", "library/a/b", False),
        ("library/*", "library", False),
        ("team-a/**", "team-a/x", True),
        ("team-a/**", "team-a/x/y/z", True),
        ("team-a/**", "team-a", False),
        ("team-a/**", "team-ab/x", False),
        ("**", "anything/at/all", True),
        ("*", "one", True),
        ("*", "one/two", False),
        ("app-*", "app-web", True),
        ("app-*", "web-app", False),
        ("a.b", "axb", False),  # '.' is literal, not a regex wildcard
        ("exact/name", "exact/name", True),
    ],
)
def test_glob_patterns(pattern: str, name: str, matches: bool) -> None:
    assert (compile_pattern(pattern).fullmatch(name) is not None) is matches


@pytest.mark.parametrize("pattern", ["", "/x", "x/", "a//b", "a/b**/c"])
def test_malformed_patterns_are_refused(pattern: str) -> None:
    with pytest.raises(RuleError):
        compile_pattern(pattern)


def test_first_matching_rule_wins() -> None:
    r = rules(
        [
            {"repository": "team-a/secret", "pull": ["alice"]},
            {"repository": "team-a/**", "pull": ["*"]},
        ]
    )
    assert r.allows(ALICE, pull("team-a/secret"))
    assert not r.allows(BOB, pull("team-a/secret"))  # the broader rule below does not apply
    assert r.allows(BOB, pull("team-a/other"))


def test_no_matching_rule_denies_everything() -> None:
    r = rules([{"repository": "library/*", "pull": ["anonymous"]}])
    assert r.actions(ADMIN, "private/repo") == frozenset()
    assert not r.allows(ADMIN, pull("private/repo"))


def test_anonymous_star_and_names() -> None:
    r = rules(
        [
            {"repository": "pub/*", "pull": ["anonymous"]},
            {"repository": "users/*", "pull": ["*"], "push": ["alice"]},
        ]
    )
    assert r.allows(ANONYMOUS, pull("pub/x"))
    assert r.allows(BOB, pull("pub/x"))  # anonymous means everyone
    assert not r.allows(ANONYMOUS, pull("users/x"))  # '*' needs a login
    assert r.allows(BOB, pull("users/x"))
    assert r.allows(ALICE, push("users/x"))
    assert not r.allows(BOB, push("users/x"))


def test_push_implies_pull_but_delete_does_not() -> None:
    r = rules([{"repository": "r", "push": ["alice"], "delete": ["bob"]}])
    assert r.actions(ALICE, "r") == frozenset({"pull", "push"})
    assert r.actions(BOB, "r") == frozenset({"delete"})


def test_catalog_is_granted_to_everyone() -> None:
    r = rules([])
    assert r.allows(ANONYMOUS, CATALOG)
    assert r.grant(ANONYMOUS, "registry", "catalog", ["*"]) == ["*"]
    assert r.grant(ANONYMOUS, "registry", "other", ["*"]) == []


def test_unknown_types_and_actions_are_not_granted() -> None:
    r = rules([{"repository": "**", "pull": ["anonymous"], "push": ["anonymous"]}])
    assert r.grant(ALICE, "repository", "x", ["pull", "push", "admin"]) == ["pull", "push"]
    assert r.grant(ALICE, "plugin", "x", ["pull"]) == []
    assert not r.allows(ALICE, delete("x"))


def test_grant_is_the_intersection() -> None:
    r = rules([{"repository": "r", "pull": ["*"], "push": ["alice"]}])
    assert r.grant(BOB, "repository", "r", ["pull", "push"]) == ["pull"]
    assert r.grant(ALICE, "repository", "r", ["push", "pull"]) == ["push", "pull"]
    assert r.grant(ANONYMOUS, "repository", "r", ["pull"]) == []
    assert r.grant(ALICE, "repository", "r", ["*"]) == ["pull", "push"]


@pytest.mark.parametrize(
    "raw",
    [
        "not a list",
        [{"pull": ["x"]}],
        [{"repository": "x", "pull": [1]}],
        [{"repository": "x", "pulll": ["x"]}],
        ["x"],
    ],
)
def test_malformed_rules_are_refused(raw: object) -> None:
    with pytest.raises(RuleError):
        parse_rules(raw)


def test_a_single_name_may_be_a_string() -> None:
    r = rules([{"repository": "x", "pull": "alice"}])
    assert r.allows(ALICE, pull("x"))
