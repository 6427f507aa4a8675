"""The data checks of the OCI conformance suite's current runner (`TestAll` in
conformance/run.go): for every data set (image, uncompressed image, large manifest, index,
nested index, empty index, artifact, artifact index, artifact without layers, artifacts with
a subject, index with a subject, missing subject, data field, non-distributable layers,
custom fields, no layers, sha512, tag parameters in sha256 and sha512, bad digest): push,
tag list, HEAD, GET, referrers (with artifactType filters), then delete, in that order,
as the suite runs them one data set after the other."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.registry.conformance.api import Api, expect
from tests.registry.conformance.testdata import TestData, generate

REPO = "conformance/data"
DATA = generate()


@pytest.fixture(scope="module")
def api(client: httpx.Client) -> Api:
    return Api(client)


@pytest.fixture(scope="module", params=list(DATA))
def data(request: pytest.FixtureRequest) -> TestData:
    # module scope: pytest runs every check below for one data set before the next
    dataset: TestData = DATA[request.param]
    return dataset


def _pulled_manifests(data: TestData) -> list[str]:
    return [d for d in data.man_order if d not in data.bad_digest]


def test_push(api: Api, data: TestData) -> None:
    for dig, body in data.blobs.items():
        api.blob_push_any(REPO, dig, body)
    for dig in data.man_order:
        tags = [t for t, d in data.tags.items() if d == dig] if dig in data.tag_param else []
        api.manifest_put(REPO, dig, dig, data.manifests[dig], tags=tags, bad=dig in data.bad_digest)
    for tag, dig in data.tags.items():
        if dig not in data.tag_param:
            api.manifest_put(REPO, tag, dig, data.manifests[dig])


def test_tag_list(api: Api, data: TestData) -> None:
    tags = api.tag_list(REPO)
    for tag in data.tags:
        assert tag in tags, f"missing tag {tag!r} from listing {tags}"
    if len(tags) >= 2:
        ordered = sorted(tags)
        end = len(ordered) // 2
        partial = api.tag_list(REPO, last=ordered[end - 1])
        for tag in ordered[:end]:
            assert tag not in partial, f"{tag!r} returned after last={ordered[end - 1]!r}"
        for tag in ordered[end:]:
            assert tag in partial, f"{tag!r} missing after last={ordered[end - 1]!r}"


def test_head(api: Api, data: TestData) -> None:
    for tag, dig in data.tags.items():
        api.manifest_head_exists(REPO, tag, dig, data.manifests[dig])
    for dig in _pulled_manifests(data):
        api.manifest_head_exists(REPO, dig, dig, data.manifests[dig])
    for dig, body in data.blobs.items():
        api.blob_head_exists(REPO, dig, body)


def test_pull(api: Api, data: TestData) -> None:
    for tag, dig in data.tags.items():
        api.manifest_get_exists(REPO, tag, dig, data.manifests[dig])
    for dig in _pulled_manifests(data):
        api.manifest_get_exists(REPO, dig, dig, data.manifests[dig])
    for dig, body in data.blobs.items():
        api.blob_get_full(REPO, dig, body)


def _matches(entry: dict[str, Any], goal: dict[str, Any]) -> bool:
    return bool(
        entry.get("digest") == goal["digest"]
        and entry.get("mediaType") == goal["mediaType"]
        and entry.get("size") == goal["size"]
        and entry.get("artifactType", "") == goal["artifactType"]
        and goal["annotations"].items() <= (entry.get("annotations") or {}).items()
    )


def test_referrers(api: Api, data: TestData) -> None:
    if not data.referrers:
        # The suite checks nothing here; we check that no manifest of the set has referrers.
        for dig in _pulled_manifests(data):
            assert api.referrers(REPO, dig).json()["manifests"] == []
        return
    for subject, goals in data.referrers.items():
        listed = api.referrers(REPO, subject).json()["manifests"]
        for goal in goals:
            assert any(_matches(e, goal) for e in listed), f"{goal} not in {listed}"
        for artifact_type in {g["artifactType"] for g in goals}:
            resp = api.referrers(REPO, subject, artifact_type)
            applied = [f.strip() for f in resp.headers.get("OCI-Filters-Applied", "").split(",")]
            assert "artifactType" in applied, "OCI-Filters-Applied lacks artifactType"
            filtered = resp.json()["manifests"]
            for goal in goals:
                if goal["artifactType"] == artifact_type:
                    assert any(_matches(e, goal) for e in filtered), f"{goal} not in {filtered}"
            # and no entry of another type comes back
            assert all(e.get("artifactType", "") == artifact_type for e in filtered), filtered


def test_delete(api: Api, data: TestData) -> None:
    for tag, dig in data.tags.items():
        if dig not in data.bad_digest:
            api.manifest_delete(REPO, tag)
    for dig in reversed(data.man_order):
        if dig in data.bad_digest:
            # never stored: the suite accepts 404 from the delete, and HEAD must be 404
            expect(api.c.delete(f"/v2/{REPO}/manifests/{dig}"), 404)
        else:
            api.manifest_delete(REPO, dig)
    for dig in data.blobs:
        api.blob_delete(REPO, dig)
