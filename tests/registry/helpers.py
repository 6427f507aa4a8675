"""Small builders for the registry tests: digests, blob pushes, manifests."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import httpx

from ocispec import mediatypes as mt

CONFIG = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'


def digest_of(data: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


async def push_blob(
    client: httpx.AsyncClient, name: str, data: bytes, algorithm: str = "sha256"
) -> str:
    digest = digest_of(data, algorithm)
    response = await client.post(f"/v2/{name}/blobs/uploads/?digest={digest}", content=data)
    assert response.status_code == 201, response.text
    return digest


def descriptor(media_type: str, content: bytes, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": digest_of(content), "size": len(content), **extra}


def encode(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


async def push_image(
    client: httpx.AsyncClient,
    name: str,
    layers: list[bytes] | None = None,
    *,
    media_type: str = mt.OCI_MANIFEST,
    config: bytes = CONFIG,
    extra: dict[str, Any] | None = None,
) -> tuple[bytes, dict[str, Any]]:
    """Push the config and layers; return the (unpushed) manifest bytes and object."""
    layers = [b"layer-one"] if layers is None else layers
    await push_blob(client, name, config)
    for layer in layers:
        await push_blob(client, name, layer)
    config_type = mt.OCI_CONFIG if media_type == mt.OCI_MANIFEST else mt.DOCKER_CONFIG
    layer_type = mt.OCI_LAYER_GZIP if media_type == mt.OCI_MANIFEST else mt.DOCKER_LAYER
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": descriptor(config_type, config),
        "layers": [descriptor(layer_type, layer) for layer in layers],
        **(extra or {}),
    }
    return encode(manifest), manifest


async def put_manifest(
    client: httpx.AsyncClient,
    name: str,
    reference: str,
    data: bytes,
    media_type: str = mt.OCI_MANIFEST,
) -> httpx.Response:
    return await client.put(
        f"/v2/{name}/manifests/{reference}", content=data, headers={"Content-Type": media_type}
    )


def error_codes(response: httpx.Response) -> list[str]:
    assert response.headers["content-type"] == "application/json", response.headers
    body = response.json()
    assert set(body) == {"errors"}
    for error in body["errors"]:
        assert set(error) >= {"code", "message"}
    return [e["code"] for e in body["errors"]]
