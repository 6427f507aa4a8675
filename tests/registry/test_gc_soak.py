"""Soak: pushes, pulls, deletes and repeated online GC runs against two real replicas at once.

For a bounded time, pushers push images (some layers shared from a small pool, so pushes keep
re-using blobs that GC may be sweeping; clients HEAD first and skip existing blobs, as real
ones do), overwrite and delete tags, upload orphan blobs and abandon upload sessions, while a
puller pulls and GC runs over and over with a 2 s grace window, alternately with
--delete-untagged. Afterwards: every tagged image pulls completely with the right digests,
the tags hold what was last pushed, and every blob nothing references is gone.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from ocispec import mediatypes as mt
from registry.gc import GarbageCollector
from registry.stores import paths
from storage_backends import open_backend
from storage_backends.base import StorageBackend
from tests.support.moto_server import create_bucket, moto_endpoint, s3_storage_url  # noqa: F401
from tests.support.rgw import Rgw, rgw  # noqa: F401
from tests.support.server import RegistryServer, registry_server  # noqa: F401

DURATION = 15.0
OVERTIME = 60.0
MIN_PUSHES, MIN_GC_RUNS = 5, 3
GRACE = 2.0
SHARED_LAYERS = [f"shared-layer-{i}".encode() * 1000 for i in range(4)]
# Blobs that keep going from referenced to orphaned (and old) and back: the race GC must win.
RECYCLED = [f"recycled-{i}".encode() * 100 for i in range(40)]


def sha(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


class Soak:
    def __init__(self, replicas: list[str], deadline: float) -> None:
        self.replicas = replicas
        self.deadline = deadline
        self.expected: dict[tuple[str, str], str | None] = {}  # (repo, tag) -> digest or deleted
        self.failures: list[str] = []
        self.stats = {"pushes": 0, "push_retries": 0, "pulls": 0, "gc_runs": 0, "deleted": 0}

    def running(self) -> bool:
        """Until the deadline, then on until the soak did enough to mean something (a loaded
        machine is slow, not wrong), at most `OVERTIME` longer."""
        now = time.monotonic()
        if now < self.deadline:
            return True
        enough = self.stats["pushes"] > MIN_PUSHES and self.stats["gc_runs"] > MIN_GC_RUNS
        return not enough and now < self.deadline + OVERTIME

    def replica(self) -> str:
        return random.choice(self.replicas)

    async def push_blob(self, http: httpx.AsyncClient, repo: str, data: bytes) -> None:
        digest = sha(data)
        if (await http.head(f"{self.replica()}/v2/{repo}/blobs/{digest}")).status_code == 200:
            return
        if random.random() < 0.5:
            response = await http.post(
                f"{self.replica()}/v2/{repo}/blobs/uploads/",
                params={"digest": digest},
                content=data,
            )
        else:  # chunked, each chunk to a random replica
            response = await http.post(f"{self.replica()}/v2/{repo}/blobs/uploads/")
            assert response.status_code == 202, response.text
            location = response.headers["location"]
            half = len(data) // 2
            for piece in (data[:half], data[half:]):
                response = await http.patch(f"{self.replica()}{location}", content=piece)
                assert response.status_code == 202, response.text
                location = response.headers["location"]
            response = await http.put(f"{self.replica()}{location}", params={"digest": digest})
        assert response.status_code == 201, response.text

    async def push_image(self, http: httpx.AsyncClient, repo: str, tag: str) -> None:
        config = json.dumps({"architecture": "amd64", "os": "linux", "n": os.urandom(8).hex()})
        config_bytes = config.encode()
        first = random.choice(SHARED_LAYERS if random.random() < 0.5 else RECYCLED)
        layers = [first, os.urandom(random.randint(1, 64 * 1024))]
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": mt.OCI_MANIFEST,
                "config": {
                    "mediaType": mt.OCI_CONFIG,
                    "digest": sha(config_bytes),
                    "size": len(config_bytes),
                },
                "layers": [
                    {"mediaType": mt.OCI_LAYER, "digest": sha(layer), "size": len(layer)}
                    for layer in layers
                ],
            }
        ).encode()
        for _attempt in range(5):
            for blob in [config_bytes, *layers]:
                await self.push_blob(http, repo, blob)
            response = await http.put(
                f"{self.replica()}/v2/{repo}/manifests/{tag}",
                content=manifest,
                headers={"Content-Type": mt.OCI_MANIFEST},
            )
            if response.status_code == 201:
                self.expected[(repo, tag)] = sha(manifest)
                self.stats["pushes"] += 1
                return
            # Allowed outcome of a race with GC: a blob went between HEAD and the manifest PUT.
            assert response.json()["errors"][0]["code"] == "MANIFEST_BLOB_UNKNOWN", response.text
            self.stats["push_retries"] += 1
        self.failures.append(f"push of {repo}:{tag} kept failing")

    async def pusher(self, index: int) -> None:
        async with httpx.AsyncClient(timeout=30) as http:
            k = 0
            while self.running():
                repo = f"soak/r{index % 2}"
                tag = f"p{index}-{k % 4}"  # tags get overwritten: old manifests go untagged
                await self.push_image(http, repo, tag)
                if k % 3 == 2:
                    victim = f"p{index}-{(k + 1) % 4}"
                    response = await http.delete(f"{self.replica()}/v2/{repo}/manifests/{victim}")
                    if response.status_code == 202:
                        self.expected[(repo, victim)] = None
                        self.stats["deleted"] += 1
                if k % 4 == 1:  # an orphan blob, and an abandoned upload session
                    orphan = random.choice(RECYCLED) if k % 8 == 1 else os.urandom(1000)
                    await self.push_blob(http, repo, orphan)
                    await http.post(f"{self.replica()}/v2/{repo}/blobs/uploads/")
                k += 1

    async def puller(self) -> None:
        async with httpx.AsyncClient(timeout=30) as http:
            while self.running():
                live = [key for key, digest in list(self.expected.items()) if digest]
                if not live:
                    await asyncio.sleep(0.05)
                    continue
                repo, tag = random.choice(live)
                response = await http.get(
                    f"{self.replica()}/v2/{repo}/manifests/{tag}",
                    headers={"Accept": mt.OCI_MANIFEST},
                )
                if response.status_code != 200:
                    continue  # deleted meanwhile
                manifest = response.json()
                for d in [manifest["config"], *manifest["layers"]]:
                    blob = await http.get(f"{self.replica()}/v2/{repo}/blobs/{d['digest']}")
                    if blob.status_code != 200 or sha(blob.content) != d["digest"]:
                        # Only a failure if the tag still points at what we pulled.
                        now = await http.get(f"{self.replica()}/v2/{repo}/manifests/{tag}")
                        if now.status_code == 200 and sha(now.content) == sha(response.content):
                            await asyncio.sleep(0.2)  # a blob in GC's trash comes back at once
                            again = await http.get(
                                f"{self.replica()}/v2/{repo}/blobs/{d['digest']}"
                            )
                            if again.status_code != 200:
                                self.failures.append(f"{repo}:{tag} lost {d['digest']}")
                self.stats["pulls"] += 1

    async def collector(self, backend: StorageBackend) -> None:
        run = 0
        while self.running():
            gc = GarbageCollector(
                backend, grace=GRACE, upload_ttl=GRACE, delete_untagged=run % 2 == 1
            )
            await gc.run()
            run += 1
            self.stats["gc_runs"] += 1
            await asyncio.sleep(0.2)


async def verify(backend: StorageBackend, soak: Soak) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        base = soak.replicas[0]
        repos = (await http.get(f"{base}/v2/_catalog")).json()["repositories"]
        referenced: set[str] = set()
        for repo in repos:
            tags = (await http.get(f"{base}/v2/{repo}/tags/list")).json()["tags"] or []
            for tag in tags:
                response = await http.get(
                    f"{base}/v2/{repo}/manifests/{tag}", headers={"Accept": mt.OCI_MANIFEST}
                )
                assert response.status_code == 200, (repo, tag)
                manifest = response.json()
                for d in [manifest["config"], *manifest["layers"]]:
                    blob = await http.get(f"{base}/v2/{repo}/blobs/{d['digest']}")
                    assert blob.status_code == 200, (repo, tag, d)
                    assert sha(blob.content) == d["digest"]
        for (repo, tag), digest in soak.expected.items():
            response = await http.get(f"{base}/v2/{repo}/manifests/{tag}")
            if digest is None:
                assert response.status_code == 404, (repo, tag)
            else:
                assert sha(response.content) == digest, (repo, tag)
    # Every blob still stored is referenced by a manifest revision (or is one).
    for repo in repos:
        async for key in backend.walk(paths.revisions_dir(repo)):
            revision = paths.link_digest(key, paths.revisions_dir(repo))
            assert revision is not None
            referenced.add(str(revision))
            manifest = json.loads(await backend.get(paths.blob_data(revision)))
            referenced.update(d["digest"] for d in [manifest["config"], *manifest["layers"]])
    stored = set()
    async for key in backend.walk(paths.BLOBS):
        found = paths.blob_digest(key)
        if found is not None:
            stored.add(str(found))
    assert stored == referenced
    assert [k async for k in backend.walk(f"{paths.GC}/trash")] == []
    assert [k async for k in backend.walk(paths.UPLOADS)] == []


@pytest.fixture(params=["filesystem", "s3", "rgw"])
def soak_storage(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "rgw":
        cluster: Rgw = request.getfixturevalue("rgw")
        return cluster.storage_url(cluster.create_bucket(), "soak")
    if request.param == "s3":
        endpoint: str = request.getfixturevalue("moto_endpoint")
        return s3_storage_url(endpoint, create_bucket(endpoint), "soak")
    return f"file://{tmp_path / 'storage'}"


@pytest.mark.slow
async def test_soak_concurrent_pushes_pulls_deletes_and_gc(
    soak_storage: str,
    registry_server: Callable[..., RegistryServer],  # noqa: F811
) -> None:
    config = {"uploads": {"purge_interval": 0}}
    servers = [registry_server(soak_storage, config) for _ in range(2)]
    replicas = [server.url for server in servers]
    backend = open_backend(soak_storage)
    await backend.open()
    try:
        soak = Soak(replicas, time.monotonic() + DURATION)
        await asyncio.gather(
            *(soak.pusher(i) for i in range(4)), soak.puller(), soak.collector(backend)
        )
        assert not soak.failures, soak.failures
        assert soak.stats["pushes"] > MIN_PUSHES and soak.stats["gc_runs"] > MIN_GC_RUNS, soak.stats
        # Quiet now: once everything is older than the window, one more run leaves only what
        # manifests reference.
        await asyncio.sleep(GRACE + 1.5)
        await GarbageCollector(backend, grace=GRACE, upload_ttl=GRACE).run()
        await verify(backend, soak)
    except BaseException:
        for server in servers:
            print(f"--- {server.url} log ---\n{server.log()[-6000:]}")
        raise
    finally:
        await backend.close()
    print(soak.stats)
