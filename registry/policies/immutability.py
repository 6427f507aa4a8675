"""Tag immutability: a tag covered by a rule, once it exists, is never moved nor deleted.

Checked by the stores (registry.stores.tags and .manifests), so every route that writes tags
obeys it; the pull-through cache is exempt (its namespaces mirror an upstream that may move
tags). Setting a tag to the digest it already has is allowed (idempotent CI re-runs).
Without compare-and-swap in storage, two *first* pushes of different digests racing for a
tag that does not exist yet may both succeed (the last write wins); once the tag exists,
every later move is refused.
"""

from __future__ import annotations

from ocispec.digest import Digest
from registry import errors
from registry.policies.config import ImmutableRule, Policies


def denied(rule: ImmutableRule, name: str, tag: str, action: str) -> errors.RegistryError:
    return errors.DENIED(
        f"tag {name}:{tag} is immutable ({rule.describe()}): it cannot be {action}",
        detail={"repository": name, "tag": tag, "rule": rule.where},
    )


def check_set(
    policies: Policies | None, name: str, tag: str, old: Digest | None, new: Digest
) -> None:
    """DENIED when setting `tag` (now at `old`, None: absent) to `new` would move it."""
    if policies is None or old is None or old == new:
        return
    rule = policies.immutable_rule(name, tag)
    if rule is not None:
        raise denied(rule, name, tag, "moved")


def check_delete(policies: Policies | None, name: str, tags: list[str]) -> None:
    """DENIED when any of `tags` (existing tags about to be deleted) is immutable."""
    if policies is None:
        return
    for tag in tags:
        rule = policies.immutable_rule(name, tag)
        if rule is not None:
            raise denied(rule, name, tag, "deleted")
