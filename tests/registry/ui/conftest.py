"""An in-process registry with access control and a few images, for the UI's rules.

Rules: `library/*` public; `private/*` pulled and deleted by alice only; admin pushes."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from ocispec import mediatypes as mt
from registry.app import create_app
from registry.settings import Settings
from storage_backends.memory import MemoryBackend
from tests.registry.helpers import digest_of, encode, push_image, put_manifest
from tests.support.auth import auth_section, basic

USERS = {"alice": "alice-pw", "bob": "bob-pw", "admin": "admin-pw"}
RULES: list[dict[str, Any]] = [
    {"repository": "library/*", "pull": ["anonymous"], "push": ["admin"], "delete": ["alice"]},
    {"repository": "private/*", "pull": ["alice", "admin"], "push": ["admin"], "delete": ["alice"]},
]
EVIL = "<script>alert('pwned')</script>"


@dataclass
class Pushed:
    digest: str
    layer: str
    config: str


def image_config(labels: dict[str, str] | None = None) -> bytes:
    return json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "created": "2026-01-02T03:04:05Z",
            "config": {
                "Entrypoint": ["/bin/app"],
                "Cmd": ["--serve"],
                "Env": ["PATH=/usr/bin"],
                "WorkingDir": "/srv",
                "User": "1000",
                "ExposedPorts": {"8080/tcp": {}},
                "Labels": labels or {},
            },
            "rootfs": {"type": "layers", "diff_ids": []},
            "history": [{"created_by": "COPY app /bin/app"}],
        }
    ).encode()


async def push(
    client: httpx.AsyncClient, name: str, tag: str, layer: bytes, **config: Any
) -> Pushed:
    data, manifest = await push_image(client, name, [layer], config=image_config(**config))
    response = await put_manifest(client, name, tag, data)
    assert response.status_code == 201, response.text
    return Pushed(digest_of(data), manifest["layers"][0]["digest"], manifest["config"]["digest"])


async def push_signature(client: httpx.AsyncClient, name: str, subject: Pushed) -> str:
    """An artifact whose subject is `subject` (a cosign-like signature)."""
    empty = b"{}"
    data, _ = await push_image(client, name, [b"signature-payload"], config=empty)
    manifest = json.loads(data)
    manifest["artifactType"] = "application/vnd.dev.cosign.artifact.sig.v1+json"
    manifest["config"]["mediaType"] = "application/vnd.oci.empty.v1+json"
    manifest["subject"] = {"mediaType": mt.OCI_MANIFEST, "digest": subject.digest, "size": 1}
    body = encode(manifest)
    response = await put_manifest(client, name, digest_of(body), body)
    assert response.status_code == 201, response.text
    return digest_of(body)


def csrf(page: httpx.Response) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found, page.text
    return found.group(1)


async def log_in(client: httpx.AsyncClient, user: str, password: str) -> httpx.Response:
    form = await client.get("/ui/login")
    return await client.post(
        "/ui/login", data={"username": user, "password": password, "csrf_token": csrf(form)}
    )


@dataclass
class World:
    app_client: httpx.AsyncClient
    public: Pushed
    private: Pushed
    signature: str


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    section = auth_section(
        tmp_path, USERS, RULES, lockout={"max_failures": 3, "window": 60, "lock_for": 60}
    )
    return Settings(auth=section)


@pytest.fixture
async def world(settings: Settings) -> AsyncIterator[World]:
    app = create_app(settings, backend=MemoryBackend())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        admin = basic("admin", "admin-pw")
        async with httpx.AsyncClient(
            transport=transport, base_url="http://registry", headers=admin
        ) as pusher:
            public = await push(pusher, "library/app", "v1", b"public-layer", labels={"x": EVIL})
            private = await push(pusher, "private/secret", "latest", b"private-layer")
            signature = await push_signature(pusher, "library/app", public)
        async with httpx.AsyncClient(transport=transport, base_url="http://registry") as c:
            yield World(c, public, private, signature)


@pytest.fixture
def transport_of(world: World) -> httpx.AsyncBaseTransport:
    return world.app_client._transport
