"""The `policies:` section: parsed where defined, malformed input refused with a message
naming the place."""

from __future__ import annotations

from pathlib import Path

import pytest

from registry.policies.config import PolicyError, parse_duration, parse_policies, parse_size
from registry.settings import SettingsError, load_settings


def test_rules_match_repository_globs_and_tag_globs() -> None:
    policies = parse_policies(
        {"immutable": [{"repository": "release/**", "tags": ["v*", "latest"]}]}
    )
    assert policies.immutable_rule("release/app", "v1.2") is not None
    assert policies.immutable_rule("release/a/b", "latest") is not None
    assert policies.immutable_rule("release/app", "dev") is None
    assert policies.immutable_rule("release", "v1") is None  # ** needs a segment
    assert policies.immutable_rule("other/app", "v1") is None


def test_sizes_and_every_matching_quota() -> None:
    policies = parse_policies(
        {
            "quotas": [
                {"repository": "t/**", "limit": "10GiB"},
                {"repository": "t/a", "limit": "5MB"},
            ]
        }
    )
    assert [q.limit for q in policies.quotas_for("t/a")] == [10 * 2**30, 5 * 10**6]
    assert [q.limit for q in policies.quotas_for("t/b")] == [10 * 2**30]
    assert parse_size(1234, "x") == 1234


def test_durations() -> None:
    assert parse_duration("30d", "x") == 30 * 86400
    assert parse_duration("12h", "x") == 12 * 3600
    assert parse_duration(90, "x") == 90
    with pytest.raises(PolicyError, match="x: expected"):
        parse_duration("soon", "x")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ([], "expected a mapping"),
        ({"immutable": [{"repository": "a/**"}]}, r"policies.immutable\[0\].tags"),
        ({"immutable": [{"repository": "a/**", "tags": ["v*"], "x": 1}]}, "unknown keys"),
        ({"immutable": [{"repository": "a/**b", "tags": ["v*"]}]}, "whole path segment"),
        ({"retention": [{"repository": "a", "keep_last": -1}]}, "keep_last"),
        ({"retention": [{"repository": "a", "keep": ["("]}]}, "invalid regular expression"),
        ({"retention": [{"repository": "a", "keep_within": "forever"}]}, "keep_within"),
        ({"colour": 1}, "unknown keys in policies"),
        ({"quotas": [{"repository": "t/**", "limit": "lots"}]}, r"quotas\[0\].limit"),
        ({"quotas": [{"repository": "t/**", "limit": 0}]}, "expected a size"),
    ],
)
def test_malformed_policies_are_refused(raw: object, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        parse_policies(raw)


def test_settings_validate_the_section(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("policies:\n  immutable:\n    - {repository: 'r/**', tags: ['v*']}\n")
    assert load_settings(path, environ={}).policies == {
        "immutable": [{"repository": "r/**", "tags": ["v*"]}]
    }
    path.write_text("policies:\n  immutable:\n    - {repository: 'r/**'}\n")
    with pytest.raises(SettingsError, match="tags"):
        load_settings(path, environ={})
