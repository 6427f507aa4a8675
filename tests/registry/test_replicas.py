"""Stateless replicas: two `pyreg serve` processes on one storage behave as one registry.

Nothing a request needs lives in a process: upload sessions, manifests and tags are all in
storage, so a load balancer may send each request to either replica.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.support.moto_server import create_bucket, moto_endpoint, s3_storage_url  # noqa: F401
from tests.support.rgw import Rgw, rgw  # noqa: F401
from tests.support.server import RegistryServer, registry_server  # noqa: F401

MiB = 1024 * 1024


@pytest.fixture(params=["filesystem", "s3", "rgw"])
def shared_storage(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "rgw":
        cluster: Rgw = request.getfixturevalue("rgw")
        return cluster.storage_url(cluster.create_bucket(), "shared")
    if request.param == "s3":
        endpoint: str = request.getfixturevalue("moto_endpoint")
        return s3_storage_url(endpoint, create_bucket(endpoint), "shared")
    return f"file://{tmp_path / 'storage'}"


def _sha(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


@pytest.mark.slow
def test_two_replicas_share_uploads_manifests_and_tags(
    shared_storage: str,
    registry_server: Callable[..., RegistryServer],  # noqa: F811
) -> None:
    config = {"uploads": {"purge_interval": 0}}
    a = registry_server(shared_storage, config)
    b = registry_server(shared_storage, config)
    replicas = [a.url, b.url]
    # 11 MiB in 1 MiB chunks: on S3 this crosses the 5 MiB part minimum more than once, so
    # replicas pick up each other's multipart parts and pending tails.
    layer = os.urandom(11 * MiB)
    with httpx.Client(timeout=60) as http:
        response = http.post(f"{a.url}/v2/team/app/blobs/uploads/")
        assert response.status_code == 202, response.text
        path = response.headers["location"]
        for i, start in enumerate(range(0, len(layer), MiB)):
            end = min(start + MiB, len(layer))
            replica = replicas[i % 2]
            response = http.patch(
                f"{replica}{path}" if path.startswith("/") else path,
                content=layer[start:end],
                headers={"Content-Range": f"{start}-{end - 1}"},
            )
            assert response.status_code == 202, (replica, response.text)
            assert response.headers["range"] == f"0-{end - 1}"
            path = response.headers["location"]
        # Either replica reports the same progress.
        status = http.get(f"{a.url}{path}" if path.startswith("/") else path)
        assert status.status_code == 204 and status.headers["range"] == f"0-{len(layer) - 1}"
        response = http.put(
            f"{b.url}{path}" if path.startswith("/") else path, params={"digest": _sha(layer)}
        )
        assert response.status_code == 201, response.text

        config_blob = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers"}}'
        response = http.post(
            f"{b.url}/v2/team/app/blobs/uploads/",
            params={"digest": _sha(config_blob)},
            content=config_blob,
        )
        assert response.status_code == 201
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": _sha(config_blob),
                    "size": len(config_blob),
                },
                "layers": [
                    {
                        "mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": _sha(layer),
                        "size": len(layer),
                    }
                ],
            }
        ).encode()
        headers = {"Content-Type": "application/vnd.oci.image.manifest.v1+json"}
        put = http.put(f"{b.url}/v2/team/app/manifests/v1", content=manifest, headers=headers)
        assert put.status_code == 201, put.text

        # Pushed to B, immediately pullable from A (manifest and blob bytes).
        got = http.get(
            f"{a.url}/v2/team/app/manifests/v1", headers={"Accept": headers["Content-Type"]}
        )
        assert got.status_code == 200 and got.content == manifest
        blob = http.get(f"{a.url}/v2/team/app/blobs/{_sha(layer)}", follow_redirects=True)
        assert blob.status_code == 200 and _sha(blob.content) == _sha(layer)
        assert http.get(f"{a.url}/v2/team/app/tags/list").json()["tags"] == ["v1"]

        # A tag deleted on A is gone on B; the manifest stays by digest.
        assert http.delete(f"{a.url}/v2/team/app/manifests/v1").status_code == 202
        assert http.get(f"{b.url}/v2/team/app/manifests/v1").status_code == 404
        assert http.get(f"{b.url}/v2/team/app/manifests/{_sha(manifest)}").status_code == 200


@pytest.mark.slow
def test_serve_with_two_workers(
    tmp_path: Path,
    registry_server: Callable[..., RegistryServer],  # noqa: F811
) -> None:
    server = registry_server(f"file://{tmp_path / 'storage'}", {"workers": 2})
    data = b"through several workers"
    with httpx.Client(timeout=30) as http:
        # Many short connections spread over both workers; each request stands alone.
        location = http.post(f"{server.url}/v2/w/blobs/uploads/").headers["location"]
        for i in range(20):
            piece = data[i : i + 1] if i < len(data) else b""
            if not piece:
                break
            with httpx.Client(timeout=30) as fresh:
                response = fresh.patch(f"{server.url}{location}", content=piece)
                assert response.status_code == 202, response.text
                location = response.headers["location"]
        rest = data[20:]
        response = http.put(f"{server.url}{location}", params={"digest": _sha(data)}, content=rest)
        assert response.status_code == 201, response.text
        assert http.get(f"{server.url}/v2/w/blobs/{_sha(data)}").content == data
    import psutil

    workers = psutil.Process(server.pid).children(recursive=True)
    assert len([p for p in workers if "python" in p.name().lower()]) >= 2
