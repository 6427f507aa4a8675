"""Upload sessions after a crash, on every backend (real S3 included: RGW is stricter than
AWS and moto about multipart completion)."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import AsyncIterator

import httpx

from registry.stores import paths
from storage_backends.base import StorageBackend

MiB = 1024 * 1024


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _session(client: httpx.AsyncClient, data: bytes) -> tuple[str, str]:
    location = (await client.post("/v2/crash/repo/blobs/uploads/")).headers["location"]
    response = await client.patch(location, content=data)
    assert response.status_code == 202, response.text
    return location, location.rstrip("/").rsplit("/", 1)[-1]


async def _multipart_id(backend: StorageBackend, upload_id: str) -> str:
    state = json.loads(await backend.get(paths.upload_state(upload_id)))
    multipart_id: str = state["multipart_id"]
    return multipart_id


async def test_put_after_the_backends_upload_vanished_is_upload_unknown(
    client: httpx.AsyncClient, backend: StorageBackend
) -> None:
    data = os.urandom(max(backend.min_part_size, 1024))
    location, upload_id = await _session(client, data)
    # What an S3 lifecycle rule or another replica's purge does to the backend's upload.
    await backend.multipart_abort(
        paths.upload_data(upload_id), await _multipart_id(backend, upload_id)
    )
    digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
    response = await client.put(f"{location}?digest={digest}")
    assert response.status_code == 404, response.text
    assert response.json()["errors"][0]["code"] == "BLOB_UPLOAD_UNKNOWN"
    # and the session is gone for good, not a 500 on every retry
    again = await client.put(f"{location}?digest={digest}")
    assert again.status_code == 404


async def test_stray_parts_of_a_request_that_died_do_not_break_the_commit(
    client: httpx.AsyncClient, backend: StorageBackend
) -> None:
    part = max(backend.min_part_size, 1024)
    first = os.urandom(part + 1)
    location, upload_id = await _session(client, first)
    # A PATCH that died after its parts reached storage but before the session state was
    # saved (client gone, server killed): its parts stay in the backend's upload, unrecorded.
    data_path = paths.upload_data(upload_id)
    multipart_id = await _multipart_id(backend, upload_id)
    for number in (2, 3):
        await backend.multipart_upload_part(
            data_path, multipart_id, number, _chunks(b"x" * part), size=part
        )
    # The client resends from the offset the registry reports: a short chunk this time.
    status = await client.get(location)
    assert status.headers["range"] == f"0-{len(first) - 1}"
    rest = os.urandom(1000)
    resent = await client.patch(location, content=rest)
    assert resent.status_code == 202, resent.text
    blob = first + rest
    digest = f"sha256:{hashlib.sha256(blob).hexdigest()}"
    done = await client.put(f"{location}?digest={digest}")
    assert done.status_code == 201, done.text
    pulled = await client.get(f"/v2/crash/repo/blobs/{digest}")
    assert pulled.status_code == 200
    assert pulled.content == blob
