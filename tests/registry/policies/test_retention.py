"""Retention: which tags a rule deletes and why, applied by GC through the store's delete paths
(immutable tags can never go), untagged manifests after a period, referrers with their
subject, index children kept, and a dry run that lists exactly what the real run deletes."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path
from typing import Any

import httpx
import pytest

from ocispec import mediatypes as mt
from ocispec.digest import Digest
from registry.gc import GarbageCollector, GcReport
from registry.policies.config import parse_policies
from registry.policies.retention import TagState, select
from registry.stores import paths
from registry.stores.repository import RegistryStore
from storage_backends.base import StorageBackend
from storage_backends.filesystem import FilesystemBackend
from storage_backends.s3 import S3Backend
from tests.registry.helpers import (
    CONFIG,
    descriptor,
    digest_of,
    encode,
    push_blob,
    push_image,
    put_manifest,
)

D = Digest("sha256", "a" * 64)
NOW = 100_000_000.0


@pytest.fixture(params=["filesystem", "s3", "rgw"])
def backend_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


def rule(**fields: Any) -> Any:
    policies = parse_policies({"retention": [{"repository": "ci/**", **fields}]})
    return policies.retention[0]


def states(**pushed: float) -> list[TagState]:
    return [TagState(tag, D, when) for tag, when in pushed.items()]


def deleted(found: list[Any]) -> list[str]:
    return [d.tag for d in found]


def test_keep_last_keeps_every_tag_tied_with_the_last_one_kept() -> None:
    tags = states(a=100, b=200, c=300, d=300, e=50)
    assert deleted(select(rule(keep_last=2), "ci/app", tags, NOW)) == ["a", "b", "e"]
    # b and c tie at the boundary of 2: neither is deleted on a tie
    tags = states(a=100, b=300, c=300, d=400)
    assert deleted(select(rule(keep_last=2), "ci/app", tags, NOW)) == ["a"]
    assert deleted(select(rule(keep_last=0), "ci/app", tags, NOW)) == ["a", "b", "c", "d"]
    assert deleted(select(rule(keep_last=9), "ci/app", tags, NOW)) == []


def test_keep_within_keep_regexes_and_drop() -> None:
    tags = states(old=NOW - 40 * 86400, new=NOW - 86400, **{"stable-1": 0.0, "pr-7": 0.0})
    found = select(rule(keep_within="30d", keep=["^stable-"]), "ci/app", tags, NOW)
    assert deleted(found) == ["old", "pr-7"]
    assert "keep_within 30.0d" in found[0].reason and found[0].rule == "policies.retention[0]"
    # with drop, only matching tags are candidates
    assert deleted(select(rule(drop=["^pr-"]), "ci/app", tags, NOW)) == ["pr-7"]
    # a rule with no keep criterion and no drop deletes nothing
    assert deleted(select(rule(protect=["latest"]), "ci/app", tags, NOW)) == []


def test_protected_and_immutable_tags_are_kept_even_when_a_drop_rule_matches() -> None:
    tags = states(**{"pr-1": 0.0, "pr-keep": 0.0, "pr-v2": 0.0})
    found = select(
        rule(drop=["^pr-"], protect=["pr-keep"]),
        "ci/app",
        tags,
        NOW,
        immutable=lambda tag: tag == "pr-v2",
    )
    assert deleted(found) == ["pr-1"]


async def push(client: httpx.AsyncClient, name: str, tag: str, layer: bytes) -> str:
    data, _ = await push_image(client, name, [layer])
    assert (await put_manifest(client, name, tag, data)).status_code == 201
    return digest_of(data)


async def set_pushed(backend: StorageBackend, name: str, tag: str, pushed: float) -> None:
    """As if `tag` had been pushed at `pushed` (the tag object records its push time)."""
    key = paths.tag_link(name, tag)
    body = json.loads(await backend.get(key))
    await backend.put(key, json.dumps({**body, "pushed": pushed}).encode())


def collector(backend: StorageBackend, raw: dict[str, Any], **options: Any) -> GarbageCollector:
    # Grace 0: S3 cannot age objects; the retention periods are what the tests vary.
    return GarbageCollector(backend, grace=0, policies=parse_policies(raw), **options)


async def tags_of(client: httpx.AsyncClient, name: str) -> list[str]:
    tags: list[str] = (await client.get(f"/v2/{name}/tags/list")).json()["tags"]
    return sorted(tags)


async def test_the_push_time_is_recorded_and_a_repush_refreshes_it(
    client: httpx.AsyncClient, backend: StorageBackend
) -> None:
    store = RegistryStore(backend)
    await push(client, "ci/app", "a", b"a")
    first = await store.tags.info("ci/app", "a")
    assert first is not None and first.pushed is not None
    await set_pushed(backend, "ci/app", "a", 5.0)
    await push(client, "ci/app", "b", b"b")
    raw = {"retention": [{"repository": "ci/**", "keep_last": 1}]}
    assert [d.tag for d in (await collector(backend, raw, dry_run=True).run()).tags] == ["a"]
    await push(client, "ci/app", "a", b"a")  # the same digest again: a fresh push time
    again = await store.tags.info("ci/app", "a")
    assert again is not None and again.pushed is not None and again.pushed >= first.pushed
    assert [d.tag for d in (await collector(backend, raw, dry_run=True).run()).tags] == ["b"]


async def test_tags_written_before_push_times_use_the_objects_modification_time(
    backend: StorageBackend,
) -> None:
    store = RegistryStore(backend)
    await backend.put(paths.tag_link("ci/app", "legacy"), str(D).encode())
    info = await store.tags.info("ci/app", "legacy")
    assert info is not None and info.digest == D
    assert info.pushed == (await backend.stat(paths.tag_link("ci/app", "legacy"))).modified


async def index_scene(client: httpx.AsyncClient, backend: StorageBackend) -> dict[str, str]:
    """ci/app: `child` (tag pr-1) inside an index (tag main), `orphan` (tag pr-2, only it),
    a referrer of each of the two, and `release` (tag pr-keep, protected)."""
    name = "ci/app"
    out = {"child": await push(client, name, "pr-1", b"child")}
    child = await client.get(f"/v2/{name}/manifests/pr-1")
    index = encode(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_INDEX,
            "manifests": [descriptor(mt.OCI_MANIFEST, child.content)],
        }
    )
    assert (await put_manifest(client, name, "main", index, mt.OCI_INDEX)).status_code == 201
    out["index"] = digest_of(index)
    out["orphan"] = await push(client, name, "pr-2", b"orphan")
    out["release"] = await push(client, name, "pr-keep", b"release")
    await push_blob(client, name, b"{}")
    for key, subject in (("child_sig", "child"), ("orphan_sig", "orphan")):
        got = await client.get(f"/v2/{name}/manifests/{out[subject]}")
        referrer = encode(
            {
                "schemaVersion": 2,
                "mediaType": mt.OCI_MANIFEST,
                "artifactType": "application/x.sig",
                "config": descriptor("application/vnd.oci.empty.v1+json", b"{}"),
                "layers": [descriptor("application/x.sig", CONFIG)],
                "subject": descriptor(mt.OCI_MANIFEST, got.content),
            }
        )
        response = await put_manifest(client, name, digest_of(referrer), referrer)
        assert response.status_code == 201
        out[key] = digest_of(referrer)
    for tag in ("pr-1", "pr-2", "pr-keep", "main"):
        await set_pushed(backend, name, tag, 1.0)  # long ago
    await past_a_second(backend)
    return out


async def past_a_second(backend: StorageBackend) -> None:
    """S3 reports modification times in whole seconds: GC (grace 0) must run in a later
    second than the pushes, or it sees them as just written and keeps them."""
    if isinstance(backend, S3Backend):
        await asyncio.sleep(1.2)


POLICY = {
    "immutable": [{"repository": "ci/**", "tags": ["main"]}],
    "retention": [
        {"repository": "ci/**", "drop": ["^pr-", "^main$"], "protect": ["pr-keep"]},
    ],
}


def deletions(report: GcReport) -> tuple[list[str], list[str], list[Digest]]:
    return (
        [d.describe() for d in report.tags],
        sorted(report.manifests),
        sorted(report.deleted, key=str),
    )


async def test_dry_run_lists_exactly_what_the_real_run_deletes(
    client: httpx.AsyncClient, backend: StorageBackend, caplog: pytest.LogCaptureFixture
) -> None:
    scene = await index_scene(client, backend)
    raw = {**POLICY, "retention": [{**POLICY["retention"][0], "untagged_after": 0}]}
    lines: list[str] = []
    dry = await collector(backend, raw, dry_run=True, log=lines.append).run()
    assert await tags_of(client, "ci/app") == ["main", "pr-1", "pr-2", "pr-keep"]
    caplog.set_level(logging.INFO, logger="registry.audit")
    real_lines: list[str] = []
    real = await collector(backend, raw, log=real_lines.append).run()
    assert deletions(dry) == deletions(real)
    assert sorted(x.removeprefix("would delete ") for x in lines if x.startswith("would")) == (
        sorted(x.removeprefix("deleted ") for x in real_lines if x.startswith("deleted"))
    )
    # the rule's drop list matched main (immutable) and pr-keep (protected): both kept
    assert [d.tag for d in real.tags] == ["pr-1", "pr-2"]
    assert all("policies.retention[0]" in d.describe() for d in real.tags)
    assert await tags_of(client, "ci/app") == ["main", "pr-keep"]
    # pr-1's manifest lives on inside the index (with its referrer); pr-2's goes, and its
    # referrer with it
    assert sorted(real.manifests) == sorted(f"ci/app@{scene[k]}" for k in ("orphan", "orphan_sig"))
    for kept in ("index", "child", "child_sig", "release"):
        assert (await client.get(f"/v2/ci/app/manifests/{scene[kept]}")).status_code == 200
    for gone in ("orphan", "orphan_sig"):
        assert (await client.get(f"/v2/ci/app/manifests/{scene[gone]}")).status_code == 404
    assert Digest.parse(digest_of(b"orphan")) in real.deleted  # its layer swept
    audited = [r.getMessage() for r in caplog.records if r.name == "registry.audit"]
    assert sum("retention.delete_tag" in m for m in audited) == 2
    assert sum("gc.delete_manifest" in m for m in audited) == 2


async def test_untagged_manifests_are_kept_until_their_period_passes(
    client: httpx.AsyncClient, backend: StorageBackend
) -> None:
    scene = await index_scene(client, backend)
    raw = {**POLICY, "retention": [{**POLICY["retention"][0], "untagged_after": "1d"}]}
    report = await collector(backend, raw).run()
    assert [d.tag for d in report.tags] == ["pr-1", "pr-2"]
    assert report.manifests == []  # pushed just now: younger than a day
    assert (await client.get(f"/v2/ci/app/manifests/{scene['orphan']}")).status_code == 200
    # without untagged_after nothing untagged is pruned at all
    report = await collector(backend, POLICY).run()
    assert report.manifests == [] and report.tags == []


async def test_repositories_without_a_rule_are_untouched(
    client: httpx.AsyncClient, backend: StorageBackend
) -> None:
    await push(client, "other/app", "pr-1", b"x")
    await set_pushed(backend, "other/app", "pr-1", 1.0)
    report = await collector(backend, POLICY).run()
    assert report.tags == []
    assert await tags_of(client, "other/app") == ["pr-1"]


async def test_a_young_referrer_dies_with_its_old_subject(
    client: httpx.AsyncClient, backend: StorageBackend
) -> None:
    if not isinstance(backend, FilesystemBackend):
        pytest.skip("ages objects by rewriting modification times, which S3 cannot do")
    scene = await index_scene(client, backend)
    for path in Path(backend.root).rglob("*"):
        if path.is_file():  # everything pushed two days ago
            st = path.stat()
            os.utime(path, (st.st_atime - 2 * 86400, st.st_mtime - 2 * 86400))
    got = await client.get(f"/v2/ci/app/manifests/{scene['orphan']}")
    young = encode(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "artifactType": "application/x.sbom",
            "config": descriptor("application/vnd.oci.empty.v1+json", b"{}"),
            "layers": [descriptor("application/x.sig", CONFIG)],
            "subject": descriptor(mt.OCI_MANIFEST, got.content),
        }
    )
    assert (await put_manifest(client, "ci/app", digest_of(young), young)).status_code == 201
    young_child, _ = await push_image(client, "ci/app", [b"young-untagged"])
    response = await put_manifest(client, "ci/app", digest_of(young_child), young_child)
    assert response.status_code == 201
    raw = {**POLICY, "retention": [{**POLICY["retention"][0], "untagged_after": "1d"}]}

    report = await collector(backend, raw).run()

    gone = ("orphan", "orphan_sig")
    expected = [f"ci/app@{scene[k]}" for k in gone] + [f"ci/app@{digest_of(young)}"]
    assert sorted(report.manifests) == sorted(expected)
    # an untagged manifest younger than the period, with no subject, stays
    assert (await client.get(f"/v2/ci/app/manifests/{digest_of(young_child)}")).status_code == 200
    assert (await client.get(f"/v2/ci/app/manifests/{scene['child_sig']}")).status_code == 200
