"""Retention: which tags a repository's rule lets go, and why (applied by `pyreg gc`).

The first rule whose repository pattern matches decides (as the access rules). A tag is a
*candidate* when it matches one of the rule's `drop` regexes or, without `drop`, when the rule
has any keep criterion (`keep_last`, `keep_within`, `keep`); a rule naming none prunes no tag.
A candidate is deleted unless something keeps it:
- it matches `protect` (globs) or an immutability rule (policies.immutable): always kept;
- it matches a `keep` regex;
- it is among the `keep_last` most recently pushed tags of the repository; tags pushed at the
  same instant as the last one kept are kept too (a tie never decides a deletion);
- it was pushed within `keep_within` of now.
Re-pushing a tag (even to the same digest) refreshes its push time.

Untagged manifests (`untagged_after`) are pruned by registry.gc with its online-safe path:
what no remaining tag reaches (through index children, and referrers of kept subjects) and
was pushed longer ago than the period (never within GC's grace window); referrers go with
their subject whatever their own age.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from ocispec.digest import Digest
from registry.policies.config import Policies, RetentionRule
from registry.stores.tags import TagInfo, TagStore

_CONCURRENCY = 16  # tag reads in flight while planning (one GET each)


@dataclass(frozen=True, slots=True)
class TagState:
    tag: str
    digest: Digest
    pushed: float  # seconds since the epoch


@dataclass(frozen=True, slots=True)
class TagDeletion:
    repository: str
    tag: str
    digest: Digest
    rule: str  # e.g. "policies.retention[0]"
    reason: str

    def describe(self) -> str:
        return f"tag {self.repository}:{self.tag} ({self.digest}): {self.rule}: {self.reason}"


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


def select(
    rule: RetentionRule,
    repository: str,
    tags: list[TagState],
    now: float,
    immutable: Callable[[str], bool] = lambda tag: False,
) -> list[TagDeletion]:
    """The tags `rule` deletes, each with its reason, sorted by tag."""
    if not rule.prunes_tags:
        return []
    recent: set[str] = set()
    if rule.keep_last:
        ordered = sorted(tags, key=lambda t: t.pushed, reverse=True)
        if len(ordered) > rule.keep_last:
            boundary = ordered[rule.keep_last - 1].pushed
            recent = {t.tag for t in ordered if t.pushed >= boundary}
        else:
            recent = {t.tag for t in ordered}
    out = []
    for state in sorted(tags, key=lambda t: t.tag):
        tag = state.tag
        if rule.drop:
            if not any(r.search(tag) for r in rule.drop):
                continue
        if any(p.fullmatch(tag) for p in rule.protect) or immutable(tag):
            continue
        if any(r.search(tag) for r in rule.keep) or tag in recent:
            continue
        age = now - state.pushed
        if rule.keep_within is not None and age <= rule.keep_within:
            continue
        why = []
        if rule.drop:
            why.append("matches drop")
        if rule.keep_last is not None:
            why.append(f"not among the {rule.keep_last} most recently pushed")
        if rule.keep_within is not None:
            why.append(f"pushed {_age(age)} ago (keep_within {_age(rule.keep_within)})")
        if rule.keep:
            why.append("matches no keep regex")
        out.append(TagDeletion(repository, tag, state.digest, rule.where, ", ".join(why)))
    return out


async def plan_repository(
    tags: TagStore, policies: Policies, repository: str, now: float
) -> list[TagDeletion]:
    """The tag deletions the retention rule of `repository` asks for now (reads only)."""
    rule = policies.retention_rule(repository)
    if rule is None or not rule.prunes_tags:
        return []
    names = await tags.names(repository)
    gate = asyncio.Semaphore(_CONCURRENCY)

    async def read(tag: str) -> TagInfo | None:
        async with gate:
            return await tags.info(repository, tag)

    infos = await asyncio.gather(*(read(tag) for tag in names))
    states = [
        TagState(tag, info.digest, info.pushed or 0.0)
        for tag, info in zip(names, infos, strict=True)
        if info is not None  # deleted meanwhile, or corrupt: nothing to decide
    ]
    return select(
        rule,
        repository,
        states,
        now,
        immutable=lambda tag: policies.immutable_rule(repository, tag) is not None,
    )
