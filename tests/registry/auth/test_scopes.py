from __future__ import annotations

import pytest

from registry.auth.base import CATALOG, pull, push
from registry.auth.scopes import ResourceScope, ScopeError, merge, parse_one, parse_scopes


def test_parse_repository_scope() -> None:
    assert parse_one("repository:team/app:pull,push") == ResourceScope(
        "repository", "team/app", ("pull", "push")
    )


def test_name_may_hold_a_host_with_port() -> None:
    scope = parse_one("repository:localhost:5000/app:pull")
    assert (scope.type, scope.name, scope.actions) == (
        "repository",
        "localhost:5000/app",
        ("pull",),
    )


def test_catalog_scope_and_resource_class() -> None:
    assert parse_one("registry:catalog:*") == ResourceScope("registry", "catalog", ("*",))
    assert parse_one("repository(plugin):x:pull").type == "repository"


def test_several_scopes_in_one_parameter_and_across_parameters() -> None:
    scopes = parse_scopes(["repository:a:pull repository:b:push", "registry:catalog:*"])
    assert [s.name for s in scopes] == ["a", "b", "catalog"]


@pytest.mark.parametrize(
    "text",
    [
        "repository",
        "repository:x",
        ":x:pull",
        "repository::pull",
        "Repo:x:pull",
        "repository:UPPER:pull",
        "repository:x:PULL",
        "repository:../x:pull",
        "repository:x:pull\n",
        "repository\n:x:pull",
        "repository:localhost\n:5000/x:pull",
    ],
)
def test_malformed_scopes(text: str) -> None:
    with pytest.raises(ScopeError):
        parse_one(text)


def test_merge_groups_actions_per_resource() -> None:
    merged = merge([pull("a"), push("a"), pull("b"), CATALOG])
    assert [str(s) for s in merged] == [
        "repository:a:pull,push",
        "repository:b:pull",
        "registry:catalog:*",
    ]
