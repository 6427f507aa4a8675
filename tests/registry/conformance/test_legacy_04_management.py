"""The Content Management workflow of the OCI conformance suite
(conformance/04_management_test.go): deleting a tag, a manifest and blobs."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.registry.conformance.legacy_data import OCI_MANIFEST, TEST_TAG, LegacyData
from tests.registry.conformance.requests import error_codes, is_2xx, push_blob, put_manifest

NAME = "conformance/management"


@pytest.fixture(scope="module")
def data() -> LegacyData:
    return LegacyData(seed=4)


@pytest.fixture(scope="module")
def state() -> dict[str, Any]:
    return {}


def _tags(client: httpx.Client) -> list[str]:
    resp = client.get(f"/v2/{NAME}/tags/list")
    assert resp.status_code == 200
    tags: list[str] = resp.json()["tags"]
    return tags


# Setup
def test_populate_registry_with_test_config_blob(client: httpx.Client, data: LegacyData) -> None:
    config = data.configs[3]
    assert is_2xx(push_blob(client, NAME, config.content, config.digest))


def test_populate_registry_with_test_layer(client: httpx.Client, data: LegacyData) -> None:
    assert is_2xx(push_blob(client, NAME, data.layer.content, data.layer.digest))


def test_populate_registry_with_test_tag(client: httpx.Client, data: LegacyData) -> None:
    resp = put_manifest(client, NAME, TEST_TAG, data.manifests[3].content, OCI_MANIFEST)
    assert is_2xx(resp), resp.text


def test_check_how_many_tags_there_are_before_anything_gets_deleted(
    client: httpx.Client, state: dict[str, Any]
) -> None:
    state["num_tags"] = len(_tags(client))


# Manifest delete
def test_delete_request_to_manifest_tag_should_return_202_unless_tag_deletion_is_disallowed(
    client: httpx.Client,
) -> None:
    resp = client.delete(f"/v2/{NAME}/manifests/{TEST_TAG}")
    assert resp.status_code in (400, 202, 405)
    if resp.status_code == 400:
        assert error_codes(resp)[0] == "UNSUPPORTED"
    assert resp.status_code == 202  # pyreg deletes tags


def test_delete_request_to_manifest_digest_should_yield_202_response_unless_already_deleted(
    client: httpx.Client, data: LegacyData
) -> None:
    resp = client.delete(f"/v2/{NAME}/manifests/{data.manifests[3].digest}")
    assert resp.status_code in (202, 404)
    # Deleting the tag removed only the tag, so the manifest was still there to delete.
    assert resp.status_code == 202


def test_get_request_to_deleted_manifest_url_should_yield_404_response_unless_delete_is_disallowed(
    client: httpx.Client, data: LegacyData
) -> None:
    resp = client.get(f"/v2/{NAME}/manifests/{data.manifests[3].digest}")
    assert resp.status_code == 404


def test_get_request_to_tags_list_should_reflect_manifest_deletion(
    client: httpx.Client, state: dict[str, Any]
) -> None:
    assert len(_tags(client)) < state["num_tags"]


# Blob delete
def test_delete_request_to_blob_url_should_yield_202_response(
    client: httpx.Client, data: LegacyData
) -> None:
    for digest in (data.configs[3].digest, data.layer.digest):
        resp = client.delete(f"/v2/{NAME}/blobs/{digest}")
        assert resp.status_code in (202, 404, 405)
        assert resp.status_code == 202


def test_get_request_to_deleted_blob_url_should_yield_404_response(
    client: httpx.Client, data: LegacyData
) -> None:
    assert client.get(f"/v2/{NAME}/blobs/{data.configs[3].digest}").status_code == 404
