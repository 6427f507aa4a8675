"""The Pull workflow of the OCI conformance suite (conformance/01_pull_test.go), check by check,
against a real pyreg process. Test names follow the suite's `Specify` texts; setup and
teardown steps are checks too, as in the suite."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.registry.conformance.legacy_data import (
    ERROR_CODES,
    NONEXISTENT_MANIFEST,
    OCI_MANIFEST,
    TEST_TAG,
    LegacyData,
)
from tests.registry.conformance.requests import error_codes, is_2xx, push_blob, put_manifest

NAME = "conformance/pull"
ACCEPT = {"Accept": OCI_MANIFEST}


@pytest.fixture(scope="module")
def data() -> LegacyData:
    return LegacyData(seed=1)


@pytest.fixture(scope="module")
def state() -> dict[str, Any]:
    return {}


# Setup
def test_populate_registry_with_test_blob(client: httpx.Client, data: LegacyData) -> None:
    config = data.configs[0]
    assert is_2xx(push_blob(client, NAME, config.content, config.digest))


def test_populate_registry_with_test_layer(client: httpx.Client, data: LegacyData) -> None:
    assert is_2xx(push_blob(client, NAME, data.layer.content, data.layer.digest))


def test_populate_registry_with_test_manifest(client: httpx.Client, data: LegacyData) -> None:
    resp = put_manifest(client, NAME, TEST_TAG, data.manifests[0].content, OCI_MANIFEST)
    assert is_2xx(resp), resp.text


def test_get_the_name_of_a_tag(client: httpx.Client, state: dict[str, Any]) -> None:
    tags = client.get(f"/v2/{NAME}/tags/list").json()["tags"]
    state["tag"] = tags[0]


# Pull blobs
def test_head_request_to_nonexistent_blob_should_result_in_404_response(
    client: httpx.Client, data: LegacyData
) -> None:
    assert client.head(f"/v2/{NAME}/blobs/{data.dummy_digest}").status_code == 404


def test_head_request_to_existing_blob_should_yield_200(
    client: httpx.Client, data: LegacyData
) -> None:
    resp = client.head(f"/v2/{NAME}/blobs/{data.configs[0].digest}")
    assert resp.status_code == 200
    if header := resp.headers.get("Docker-Content-Digest"):
        assert header == data.configs[0].digest


def test_get_nonexistent_blob_should_result_in_404_response(
    client: httpx.Client, data: LegacyData
) -> None:
    assert client.get(f"/v2/{NAME}/blobs/{data.dummy_digest}").status_code == 404


def test_get_request_to_existing_blob_url_should_yield_200(
    client: httpx.Client, data: LegacyData
) -> None:
    assert client.get(f"/v2/{NAME}/blobs/{data.configs[0].digest}").status_code == 200


# Pull manifests
def test_head_request_to_nonexistent_manifest_should_return_404(client: httpx.Client) -> None:
    assert client.head(f"/v2/{NAME}/manifests/{NONEXISTENT_MANIFEST}").status_code == 404


def test_head_request_to_manifest_path_digest_should_yield_200_response(
    client: httpx.Client, data: LegacyData
) -> None:
    digest = data.manifests[0].digest
    resp = client.head(f"/v2/{NAME}/manifests/{digest}", headers=ACCEPT)
    assert resp.status_code == 200
    if header := resp.headers.get("Docker-Content-Digest"):
        assert header == digest


def test_head_request_to_manifest_path_tag_should_yield_200_response(
    client: httpx.Client, data: LegacyData, state: dict[str, Any]
) -> None:
    assert state.get("tag")
    # The suite sends a GET here despite the check's name; so do we.
    resp = client.get(f"/v2/{NAME}/manifests/{state['tag']}", headers=ACCEPT)
    assert resp.status_code == 200
    if header := resp.headers.get("Docker-Content-Digest"):
        assert header == data.manifests[0].digest


def test_get_nonexistent_manifest_should_return_404(client: httpx.Client) -> None:
    assert client.get(f"/v2/{NAME}/manifests/{NONEXISTENT_MANIFEST}").status_code == 404


def test_get_request_to_manifest_path_digest_should_yield_200_response(
    client: httpx.Client, data: LegacyData
) -> None:
    resp = client.get(f"/v2/{NAME}/manifests/{data.manifests[0].digest}", headers=ACCEPT)
    assert resp.status_code == 200


def test_get_request_to_manifest_path_tag_should_yield_200_response(
    client: httpx.Client, state: dict[str, Any]
) -> None:
    assert state.get("tag")
    resp = client.get(f"/v2/{NAME}/manifests/{state['tag']}", headers=ACCEPT)
    assert resp.status_code == 200


# Error codes
def test_400_response_body_should_contain_oci_conforming_json_message(
    client: httpx.Client,
) -> None:
    resp = put_manifest(client, NAME, "sha256:totallywrong", b"blablabla", OCI_MANIFEST)
    assert resp.status_code in (400, 404)
    if resp.status_code == 400:
        assert error_codes(resp)[0] in ERROR_CODES


# Teardown (OCI_DELETE_MANIFEST_BEFORE_BLOBS defaults to true)
def _deleted(resp: httpx.Response) -> bool:
    return is_2xx(resp) or resp.status_code == 405


def test_delete_manifest_created_in_setup(client: httpx.Client, data: LegacyData) -> None:
    assert _deleted(client.delete(f"/v2/{NAME}/manifests/{data.manifests[0].digest}"))


def test_delete_config_blob_created_in_setup(client: httpx.Client, data: LegacyData) -> None:
    assert _deleted(client.delete(f"/v2/{NAME}/blobs/{data.configs[0].digest}"))


def test_delete_layer_blob_created_in_setup(client: httpx.Client, data: LegacyData) -> None:
    assert _deleted(client.delete(f"/v2/{NAME}/blobs/{data.layer.digest}"))
