"""The checks of the OCI conformance suite's current runner that need no data set
(conformance/run.go: `TestPing`, `TestEmpty`, `TestManifestErrors`)."""

from __future__ import annotations

import os

import httpx
import pytest

from tests.registry.conformance.api import Api, expect
from tests.registry.conformance.targets import Target
from tests.registry.conformance.testdata import Gen, TestData, digest_of

REPO = "conformance/basics"


@pytest.fixture(scope="module")
def api(client: httpx.Client) -> Api:
    return Api(client)


def test_ping(api: Api) -> None:
    resp = expect(api.c.get("/v2/"), 200)
    assert resp.headers.get("Docker-Distribution-Api-Version") == "registry/2.0"


def test_empty_tag_list(api: Api) -> None:
    # the suite accepts 200 or 404 for a repository nothing was pushed to
    assert api.tag_list(REPO) == []


def test_empty_referrers(api: Api) -> None:
    subject = digest_of(os.urandom(32))
    assert api.referrers(REPO, subject).json()["manifests"] == []


def test_missing_manifest_by_digest(api: Api) -> None:
    dig = digest_of(os.urandom(1024))
    expect(api.c.get(f"/v2/{REPO}/manifests/{dig}", headers=[("Accept", "*/*")]), 404)


def test_missing_manifest_by_tag(api: Api) -> None:
    tag = f"missing-{os.urandom(10).hex()}"
    expect(api.c.get(f"/v2/{REPO}/manifests/{tag}"), 404)


def test_invalid_digest_format(api: Api) -> None:
    data = TestData("invalid-manifest-digest")
    dig = data.gen_manifest_full(Gen(layer_count=1))
    for blob, body in data.blobs.items():
        api.blob_push_any(REPO, blob, body)
    # manifest-put: a malformed digest reference is refused
    api.manifest_put(REPO, "sha256:baddigeststring", dig, data.manifests[dig], bad=True)
    # manifest-get: 404 or 400
    expect(api.c.get(f"/v2/{REPO}/manifests/sha256:baddigeststring"), 400, 404)
    for blob in data.blobs:
        api.blob_delete(REPO, blob)


def test_access_control_matches_the_setup(setup: str, registry: Target) -> None:
    """The auth setup really runs with access control: anonymous callers get a challenge."""
    resp = httpx.get(f"{registry.url}/v2/")
    if setup == "external":
        expect(resp, 200, 401)
    elif setup.endswith("+auth"):
        expect(resp, 401)
        assert resp.headers["WWW-Authenticate"].startswith("Bearer realm=")
    else:
        expect(resp, 200)
