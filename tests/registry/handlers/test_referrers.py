"""`GET /v2/<name>/referrers/<digest>`: an index maintained on push and delete."""

from __future__ import annotations

from typing import Any

import httpx

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

EMPTY = b"{}"


async def _subject(client: httpx.AsyncClient) -> bytes:
    data, _ = await push_image(client, "r")
    await put_manifest(client, "r", "v1", data)
    await push_blob(client, "r", EMPTY)
    return data


def _artifact(subject: bytes, artifact_type: str | None, note: str) -> bytes:
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": descriptor(
            mt.OCI_EMPTY if artifact_type else "application/vnd.example.cfg", EMPTY
        ),
        "layers": [],
        "subject": descriptor(mt.OCI_MANIFEST, subject),
        "annotations": {"note": note},
    }
    if artifact_type:
        manifest["artifactType"] = artifact_type
    return encode(manifest)


async def test_unknown_subject_gives_an_empty_index(client: httpx.AsyncClient) -> None:
    response = await client.get(f"/v2/nowhere/referrers/{digest_of(b'x')}")
    assert response.status_code == 200
    assert response.headers["content-type"] == mt.OCI_INDEX
    assert response.json() == {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": []}


async def test_lists_referrers_with_artifact_type_and_annotations(
    client: httpx.AsyncClient,
) -> None:
    subject = await _subject(client)
    sbom = _artifact(subject, "application/vnd.example.sbom", "one")
    untyped = _artifact(subject, None, "two")
    for data in (sbom, untyped):
        assert (await put_manifest(client, "r", digest_of(data), data)).status_code == 201
    response = await client.get(f"/v2/r/referrers/{digest_of(subject)}")
    assert response.status_code == 200
    by_digest = {d["digest"]: d for d in response.json()["manifests"]}
    assert by_digest[digest_of(sbom)] == {
        "mediaType": mt.OCI_MANIFEST,
        "digest": digest_of(sbom),
        "size": len(sbom),
        "artifactType": "application/vnd.example.sbom",
        "annotations": {"note": "one"},
    }
    # No artifactType on an image manifest: the config's media type stands in.
    assert by_digest[digest_of(untyped)]["artifactType"] == "application/vnd.example.cfg"
    assert "oci-filters-applied" not in response.headers


async def test_index_referrer_without_artifact_type_omits_it(client: httpx.AsyncClient) -> None:
    subject = await _subject(client)
    index = encode(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_INDEX,
            "manifests": [],
            "subject": descriptor(mt.OCI_MANIFEST, subject),
        }
    )
    assert (
        await put_manifest(client, "r", digest_of(index), index, mt.OCI_INDEX)
    ).status_code == 201
    listed = (await client.get(f"/v2/r/referrers/{digest_of(subject)}")).json()["manifests"]
    assert listed == [{"mediaType": mt.OCI_INDEX, "digest": digest_of(index), "size": len(index)}]
    sbom = _artifact(subject, "application/vnd.example.sbom", "one")
    await put_manifest(client, "r", digest_of(sbom), sbom)
    # An empty artifactType filter selects the referrers that have none.
    untyped = await client.get(f"/v2/r/referrers/{digest_of(subject)}?artifactType=")
    assert untyped.headers["oci-filters-applied"] == "artifactType"
    assert [d["digest"] for d in untyped.json()["manifests"]] == [digest_of(index)]


async def test_artifact_type_filter(client: httpx.AsyncClient) -> None:
    subject = await _subject(client)
    sbom = _artifact(subject, "application/vnd.example.sbom", "one")
    sig = _artifact(subject, "application/vnd.example.sig", "two")
    for data in (sbom, sig):
        await put_manifest(client, "r", digest_of(data), data)
    response = await client.get(
        f"/v2/r/referrers/{digest_of(subject)}?artifactType=application/vnd.example.sig"
    )
    assert response.headers["oci-filters-applied"] == "artifactType"
    assert [d["digest"] for d in response.json()["manifests"]] == [digest_of(sig)]


async def test_referrers_are_per_repository(client: httpx.AsyncClient) -> None:
    subject = await _subject(client)
    sbom = _artifact(subject, "application/vnd.example.sbom", "one")
    await put_manifest(client, "r", digest_of(sbom), sbom)
    other = await client.get(f"/v2/other/referrers/{digest_of(subject)}")
    assert other.json()["manifests"] == []


async def test_deleting_a_referrer_removes_it_from_the_index(client: httpx.AsyncClient) -> None:
    subject = await _subject(client)
    sbom = _artifact(subject, "application/vnd.example.sbom", "one")
    await put_manifest(client, "r", digest_of(sbom), sbom)
    assert (await client.delete(f"/v2/r/manifests/{digest_of(sbom)}")).status_code == 202
    listed = await client.get(f"/v2/r/referrers/{digest_of(subject)}")
    assert listed.json()["manifests"] == []


async def test_invalid_digest_is_400(client: httpx.AsyncClient) -> None:
    response = await client.get("/v2/r/referrers/sha256:nothex")
    assert response.status_code == 400
    assert error_codes(response) == ["DIGEST_INVALID"]
