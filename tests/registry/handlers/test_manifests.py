"""Manifest push, pull, negotiation, validation and deletion over HTTP."""

from __future__ import annotations

import httpx
import pytest

from ocispec import mediatypes as mt
from tests.registry.helpers import (
    descriptor,
    digest_of,
    encode,
    error_codes,
    push_blob,
    push_image,
    put_manifest,
)


async def test_push_and_pull_by_tag_and_digest(client: httpx.AsyncClient) -> None:
    data, _ = await push_image(client, "a/b")
    response = await put_manifest(client, "a/b", "latest", data)
    assert response.status_code == 201, response.text
    digest = digest_of(data)
    assert response.headers["docker-content-digest"] == digest
    assert response.headers["location"] == f"/v2/a/b/manifests/{digest}"
    for reference in ("latest", digest):
        pulled = await client.get(f"/v2/a/b/manifests/{reference}")
        assert pulled.status_code == 200
        assert pulled.content == data  # byte-exact
        assert pulled.headers["content-type"] == mt.OCI_MANIFEST
        assert pulled.headers["docker-content-digest"] == digest
        head = await client.head(f"/v2/a/b/manifests/{reference}")
        assert head.status_code == 200
        assert head.headers["content-length"] == str(len(data))
        assert head.headers["docker-content-digest"] == digest
        assert head.content == b""


async def test_byte_exact_with_custom_fields_and_whitespace(client: httpx.AsyncClient) -> None:
    _, manifest = await push_image(client, "a")
    manifest["x-custom"] = {"kept": True}
    data = b'{\n  "schemaVersion": 2,\n  "x-custom": {"kept": true},\n' + encode(manifest)[
        1:
    ].replace(b'"schemaVersion":2,', b"", 1)
    assert (await put_manifest(client, "a", "t", data)).status_code == 201
    assert (await client.get("/v2/a/manifests/t")).content == data


async def test_docker_schema2_manifest_and_list(client: httpx.AsyncClient) -> None:
    data, _ = await push_image(client, "d", media_type=mt.DOCKER_MANIFEST)
    put = await put_manifest(client, "d", "amd64", data, mt.DOCKER_MANIFEST)
    assert put.status_code == 201
    child = descriptor(mt.DOCKER_MANIFEST, data, platform={"os": "linux", "architecture": "amd64"})
    manifest_list = encode(
        {"schemaVersion": 2, "mediaType": mt.DOCKER_MANIFEST_LIST, "manifests": [child]}
    )
    put_list = await put_manifest(client, "d", "latest", manifest_list, mt.DOCKER_MANIFEST_LIST)
    assert put_list.status_code == 201, put_list.text
    pulled = await client.get("/v2/d/manifests/latest")
    assert pulled.headers["content-type"] == mt.DOCKER_MANIFEST_LIST
    assert (await client.get("/v2/d/manifests/amd64")).headers["content-type"] == mt.DOCKER_MANIFEST


async def test_index_needs_its_children_in_the_repository(client: httpx.AsyncClient) -> None:
    data, _ = await push_image(client, "other")
    assert (await put_manifest(client, "other", "x", data)).status_code == 201
    index = encode(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_INDEX,
            "manifests": [descriptor(mt.OCI_MANIFEST, data)],
        }
    )
    response = await put_manifest(client, "mine", "latest", index, mt.OCI_INDEX)
    assert response.status_code == 404
    assert error_codes(response) == ["MANIFEST_BLOB_UNKNOWN"]
    await push_image(client, "mine")
    assert (await put_manifest(client, "mine", "child", data)).status_code == 201
    assert (await put_manifest(client, "mine", "latest", index, mt.OCI_INDEX)).status_code == 201


async def test_missing_blob_is_manifest_blob_unknown(client: httpx.AsyncClient) -> None:
    _, manifest = await push_image(client, "a")
    manifest["layers"].append(descriptor(mt.OCI_LAYER_GZIP, b"never pushed"))
    response = await put_manifest(client, "a", "latest", encode(manifest))
    assert response.status_code == 404
    assert error_codes(response) == ["MANIFEST_BLOB_UNKNOWN"]
    assert response.json()["errors"][0]["detail"]["missing"] == [digest_of(b"never pushed")]
    assert (await client.get("/v2/a/manifests/latest")).status_code == 404


async def test_blob_of_another_repository_does_not_count(client: httpx.AsyncClient) -> None:
    data, _ = await push_image(client, "elsewhere")
    response = await put_manifest(client, "here", "latest", data)
    assert response.status_code == 404
    assert error_codes(response) == ["MANIFEST_BLOB_UNKNOWN"]


async def test_non_distributable_layer_with_urls_is_exempt(client: httpx.AsyncClient) -> None:
    _, manifest = await push_image(client, "a")
    manifest["layers"].append(
        descriptor(mt.OCI_LAYER_ND_GZIP, b"foreign", urls=["https://example.invalid/layer"])
    )
    assert (await put_manifest(client, "a", "latest", encode(manifest))).status_code == 201


async def test_push_by_digest_must_match(client: httpx.AsyncClient) -> None:
    data, _ = await push_image(client, "a")
    ok = await put_manifest(client, "a", digest_of(data), data)
    assert ok.status_code == 201
    wrong = await put_manifest(client, "a", digest_of(b"other"), data)
    assert wrong.status_code == 400
    assert error_codes(wrong) == ["DIGEST_INVALID"]
    assert (await client.get(f"/v2/a/manifests/{digest_of(b'other')}")).status_code == 404


async def test_sha512_manifest(client: httpx.AsyncClient) -> None:
    data, _ = await push_image(client, "a")
    digest = digest_of(data, "sha512")
    response = await put_manifest(client, "a", digest, data)
    assert response.status_code == 201
    assert response.headers["docker-content-digest"] == digest
    pulled = await client.get(f"/v2/a/manifests/{digest}")
    assert pulled.status_code == 200
    assert pulled.headers["docker-content-digest"] == digest
    assert pulled.content == data


async def test_too_large_manifest_is_413(client: httpx.AsyncClient) -> None:
    _, manifest = await push_image(client, "a")
    manifest["annotations"] = {"padding": "x" * 70 * 1024}  # settings fixture: 64 KiB limit
    response = await put_manifest(client, "a", "big", encode(manifest))
    assert response.status_code == 413
    assert error_codes(response) == ["MANIFEST_INVALID"]
    assert "limited to" in response.json()["errors"][0]["message"]


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"not json", mt.OCI_MANIFEST),
        (b"[1, 2]", mt.OCI_MANIFEST),
        (b'{"schemaVersion": 1, "config": {}}', mt.OCI_MANIFEST),
        (b'{"schemaVersion": 2, "mediaType": "application/x-unknown"}', "application/x-unknown"),
        (
            b'{"schemaVersion": 2, "mediaType": "%s", "manifests": []}' % mt.OCI_INDEX.encode(),
            mt.OCI_MANIFEST,
        ),
        (
            b'{"schemaVersion": 2, "config": {"mediaType": "x", "digest": "sha256:zz", "size": 1}}',
            mt.OCI_MANIFEST,
        ),
    ],
)
async def test_invalid_manifest_is_manifest_invalid(
    client: httpx.AsyncClient, body: bytes, content_type: str
) -> None:
    response = await put_manifest(client, "a", "t", body, content_type)
    assert response.status_code == 400, response.text
    assert error_codes(response) == ["MANIFEST_INVALID"]


async def test_deeply_nested_json_is_manifest_invalid(client: httpx.AsyncClient) -> None:
    body = b"[" * 30_000 + b"]" * 30_000
    response = await put_manifest(client, "a", "t", body)
    assert response.status_code == 400
    assert error_codes(response) == ["MANIFEST_INVALID"]


@pytest.mark.parametrize("tag", ["-leading-dash", ".dot", "x" * 129, "bad%20space"])
async def test_invalid_tag_is_refused(client: httpx.AsyncClient, tag: str) -> None:
    data, _ = await push_image(client, "a")
    response = await put_manifest(client, "a", tag, data)
    assert response.status_code == 400
    assert error_codes(response) == ["MANIFEST_INVALID"]


async def test_malformed_digest_reference_is_digest_invalid(client: httpx.AsyncClient) -> None:
    for method in ("GET", "HEAD", "DELETE"):
        response = await client.request(method, "/v2/a/manifests/sha256:nothex")
        assert response.status_code == 400, method


async def test_artifact_with_subject_empty_layers_and_data(client: httpx.AsyncClient) -> None:
    empty = b"{}"
    await push_blob(client, "a", empty)
    subject_data, _ = await push_image(client, "a")
    await put_manifest(client, "a", "v1", subject_data)
    artifact = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "artifactType": "application/vnd.example.sbom",
        "config": descriptor(mt.OCI_EMPTY, empty, data="e30="),
        "layers": [],
        "subject": descriptor(mt.OCI_MANIFEST, subject_data),
        "annotations": {"org.example": "yes"},
    }
    data = encode(artifact)
    response = await put_manifest(client, "a", digest_of(data), data)
    assert response.status_code == 201, response.text
    assert response.headers["oci-subject"] == digest_of(subject_data)
    assert (await client.get(f"/v2/a/manifests/{digest_of(data)}")).content == data


async def test_subject_need_not_exist(client: httpx.AsyncClient) -> None:
    _, manifest = await push_image(client, "a")
    manifest["subject"] = descriptor(mt.OCI_MANIFEST, b"not pushed yet")
    response = await put_manifest(client, "a", "sig", encode(manifest))
    assert response.status_code == 201
    assert response.headers["oci-subject"] == digest_of(b"not pushed yet")


async def test_no_oci_subject_header_without_subject(client: httpx.AsyncClient) -> None:
    data, _ = await push_image(client, "a")
    response = await put_manifest(client, "a", "t", data)
    assert "oci-subject" not in response.headers


async def test_accept_mismatch_still_returns_the_stored_type(client: httpx.AsyncClient) -> None:
    data, _ = await push_image(client, "a")
    await put_manifest(client, "a", "t", data)
    response = await client.get("/v2/a/manifests/t", headers={"Accept": mt.DOCKER_MANIFEST})
    assert response.status_code == 200
    assert response.headers["content-type"] == mt.OCI_MANIFEST


async def test_content_type_parameters_are_ignored(client: httpx.AsyncClient) -> None:
    data, _ = await push_image(client, "a")
    response = await put_manifest(client, "a", "t", data, f"{mt.OCI_MANIFEST}; charset=utf-8")
    assert response.status_code == 201
    assert (await client.get("/v2/a/manifests/t")).headers["content-type"] == mt.OCI_MANIFEST


async def test_unknown_manifest_is_404(client: httpx.AsyncClient) -> None:
    for reference in ("nope", digest_of(b"nope")):
        response = await client.get(f"/v2/a/manifests/{reference}")
        assert response.status_code == 404
        assert error_codes(response) == ["MANIFEST_UNKNOWN"]


async def test_delete_by_tag_removes_only_that_tag(client: httpx.AsyncClient) -> None:
    data, _ = await push_image(client, "a")
    await put_manifest(client, "a", "one", data)
    await put_manifest(client, "a", "two", data)
    response = await client.delete("/v2/a/manifests/one")
    assert response.status_code == 202
    assert (await client.get("/v2/a/manifests/one")).status_code == 404
    assert (await client.get("/v2/a/manifests/two")).status_code == 200
    assert (await client.get(f"/v2/a/manifests/{digest_of(data)}")).status_code == 200


async def test_delete_by_digest_removes_manifest_and_its_tags(client: httpx.AsyncClient) -> None:
    data, _ = await push_image(client, "a")
    other, _ = await push_image(client, "a", [b"other layer"])
    await put_manifest(client, "a", "one", data)
    await put_manifest(client, "a", "two", data)
    await put_manifest(client, "a", "keep", other)
    response = await client.delete(f"/v2/a/manifests/{digest_of(data)}")
    assert response.status_code == 202
    for reference in ("one", "two", digest_of(data)):
        assert (await client.get(f"/v2/a/manifests/{reference}")).status_code == 404
    assert (await client.get("/v2/a/manifests/keep")).status_code == 200
    tags = (await client.get("/v2/a/tags/list")).json()["tags"]
    assert tags == ["keep"]


async def test_delete_unknown_is_404(client: httpx.AsyncClient) -> None:
    for reference in ("nope", digest_of(b"nope")):
        response = await client.delete(f"/v2/a/manifests/{reference}")
        assert response.status_code == 404
        assert error_codes(response) == ["MANIFEST_UNKNOWN"]


async def test_extra_tags_on_push_by_digest(client: httpx.AsyncClient) -> None:
    data, _ = await push_image(client, "a")
    response = await client.put(
        f"/v2/a/manifests/{digest_of(data)}?tag=1.0&tag=latest",
        content=data,
        headers={"Content-Type": mt.OCI_MANIFEST},
    )
    assert response.status_code == 201
    assert response.headers["oci-tag"] == "1.0, latest"
    assert (await client.get("/v2/a/tags/list")).json()["tags"] == ["1.0", "latest"]


async def test_if_none_match_gives_304(client: httpx.AsyncClient) -> None:
    data, _ = await push_image(client, "a")
    await put_manifest(client, "a", "t", data)
    response = await client.get(
        "/v2/a/manifests/t", headers={"If-None-Match": f'"{digest_of(data)}"'}
    )
    assert response.status_code == 304


async def test_retagging_moves_the_tag(client: httpx.AsyncClient) -> None:
    first, _ = await push_image(client, "a")
    second, _ = await push_image(client, "a", [b"two"])
    await put_manifest(client, "a", "t", first)
    await put_manifest(client, "a", "t", second)
    assert (await client.get("/v2/a/manifests/t")).content == second


async def test_a_tag_with_a_trailing_newline_is_refused(client: httpx.AsyncClient) -> None:
    # `%0A` decodes to a newline that Python's `$` let through: the tag `v1\n` was created
    # (a file named so on disk) and listed, outside the spec's tag grammar.
    data, _ = await push_image(client, "nl")
    response = await put_manifest(client, "nl", "v1%0A", data)
    assert response.status_code == 400
    assert error_codes(response) == ["MANIFEST_INVALID"]  # registry.errors.TAG_INVALID
    assert (await client.get("/v2/nl/tags/list")).json()["tags"] in (None, [])
