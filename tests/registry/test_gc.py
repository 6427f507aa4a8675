"""Garbage collection: what is marked, what is swept, the grace window, the race protocol."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from ocispec import mediatypes as mt
from ocispec.digest import Digest
from pyreg.cli import main
from registry.app import create_app
from registry.gc import GarbageCollector, GcReport
from registry.settings import Settings
from registry.stores import paths
from storage_backends.base import Stat, StorageBackend
from storage_backends.filesystem import FilesystemBackend
from storage_backends.memory import MemoryBackend
from tests.registry.helpers import (
    CONFIG,
    descriptor,
    digest_of,
    encode,
    error_codes,
    push_blob,
    push_image,
    put_manifest,
)
from tests.support.moto_server import create_bucket, moto_endpoint, s3_client  # noqa: F401

GRACE = 600.0


@pytest.fixture(params=["memory", "filesystem"])
def backend_kind(request: pytest.FixtureRequest) -> str:
    # GC tests age objects by rewriting their modification times, which S3 cannot do; S3 is
    # covered by the replica and soak tests with real (short) grace windows.
    kind: str = request.param
    return kind


def age_everything(backend: StorageBackend, seconds: float) -> None:
    """Make every object look `seconds` older (as if pushed long ago)."""
    if isinstance(backend, MemoryBackend):
        objects = backend._objects
        for key, (data, modified) in list(objects.items()):
            objects[key] = (data, modified - seconds)
    elif isinstance(backend, FilesystemBackend):
        for path in Path(backend.root).rglob("*"):
            if path.is_file():
                st = path.stat()
                os.utime(path, (st.st_atime - seconds, st.st_mtime - seconds))
    else:
        raise AssertionError(f"cannot age {backend!r}")


def gc(backend: StorageBackend, **options: object) -> GarbageCollector:
    return GarbageCollector(backend, grace=GRACE, **options)  # type: ignore[arg-type]


async def push_tagged(client: httpx.AsyncClient, name: str, tag: str, layers: list[bytes]) -> str:
    data, _ = await push_image(client, name, layers)
    response = await put_manifest(client, name, tag, data)
    assert response.status_code == 201, response.text
    return digest_of(data)


async def assert_pulls(client: httpx.AsyncClient, name: str, ref: str) -> None:
    response = await client.get(f"/v2/{name}/manifests/{ref}")
    assert response.status_code == 200, response.text
    body = response.json()
    for child in body.get("manifests", []):
        await assert_pulls(client, name, child["digest"])
    for d in [body["config"], *body["layers"]] if "config" in body else []:
        blob = await client.get(f"/v2/{name}/blobs/{d['digest']}")
        assert blob.status_code == 200, d
        assert digest_of(blob.content) == d["digest"]


async def test_sweeps_unreferenced_old_blobs_and_keeps_referenced_ones(
    client: httpx.AsyncClient, backend: StorageBackend
) -> None:
    await push_tagged(client, "app", "v1", [b"shared", b"only-v1"])
    orphan = await push_blob(client, "app", b"orphan-bytes")
    age_everything(backend, 2 * GRACE)

    report = await gc(backend).run()

    assert report.deleted == [Digest.parse(orphan)]
    assert (report.blobs_deleted, report.bytes_freed) == (1, len(b"orphan-bytes"))
    assert report.blobs_kept == 4  # config, two layers, the manifest itself
    assert report.links_removed == 1
    assert not await backend.exists(paths.blob_data(Digest.parse(orphan)))
    assert not await backend.exists(paths.layer_link("app", Digest.parse(orphan)))
    assert (await client.head(f"/v2/app/blobs/{orphan}")).status_code == 404
    await assert_pulls(client, "app", "v1")


async def test_blob_inside_the_grace_window_is_kept(
    client: httpx.AsyncClient, backend: StorageBackend
) -> None:
    orphan = await push_blob(client, "app", b"just-uploaded")
    report = await gc(backend).run()
    assert report.blobs_deleted == 0 and report.blobs_young == 1
    assert await backend.exists(paths.blob_data(Digest.parse(orphan)))


async def test_reupload_of_an_old_orphan_refreshes_it(
    client: httpx.AsyncClient, backend: StorageBackend
) -> None:
    orphan = await push_blob(client, "app", b"pushed-again")
    age_everything(backend, 2 * GRACE)
    await push_blob(client, "other", b"pushed-again")  # content exists: only the touch is new
    report = await gc(backend).run()
    assert report.blobs_deleted == 0
    assert (await client.head(f"/v2/other/blobs/{orphan}")).status_code == 200


async def test_mount_of_an_old_orphan_refreshes_it(
    client: httpx.AsyncClient, backend: StorageBackend
) -> None:
    orphan = await push_blob(client, "app", b"mounted-later")
    age_everything(backend, 2 * GRACE)
    response = await client.post(f"/v2/other/blobs/uploads/?mount={orphan}&from=app")
    assert response.status_code == 201
    assert (await gc(backend).run()).blobs_deleted == 0


async def test_dry_run_deletes_nothing(client: httpx.AsyncClient, backend: StorageBackend) -> None:
    orphan = await push_blob(client, "app", b"orphan")
    age_everything(backend, 2 * GRACE)
    report = await gc(backend, dry_run=True).run()
    assert report.blobs_deleted == 1 and report.dry_run
    assert "would free 1 blob(s)" in report.summary()
    assert await backend.exists(paths.blob_data(Digest.parse(orphan)))


class TouchDuringMove:
    """A backend where a push touches the blob right while GC moves it to the trash."""

    def __init__(self, inner: StorageBackend) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)

    async def move(self, src: str, dst: str) -> None:
        await self._inner.move(src, dst)
        if dst.startswith(f"{paths.GC}/trash/"):
            touched = src.removesuffix("/data") + "/touched"
            await self._inner.put(touched, b"")


async def test_blob_touched_while_being_swept_is_restored(
    client: httpx.AsyncClient, backend: StorageBackend
) -> None:
    orphan = Digest.parse(await push_blob(client, "app", b"raced"))
    age_everything(backend, 2 * GRACE)
    report = await gc(TouchDuringMove(backend)).run()  # type: ignore[arg-type]
    assert report.blobs_deleted == 0
    assert await backend.get(paths.blob_data(orphan)) == b"raced"
    assert not await backend.exists(paths.gc_trash(orphan))


async def test_trash_left_by_a_crashed_gc_is_recovered(
    client: httpx.AsyncClient, backend: StorageBackend
) -> None:
    await push_tagged(client, "app", "v1", [b"layer"])
    layer = Digest.parse(digest_of(b"layer"))
    await backend.move(paths.blob_data(layer), paths.gc_trash(layer))
    age_everything(backend, 2 * GRACE)
    await gc(backend).run()
    await assert_pulls(client, "app", "v1")


async def test_manifest_put_refuses_a_linked_blob_whose_content_is_gone(
    client: httpx.AsyncClient, backend: StorageBackend
) -> None:
    data, _ = await push_image(client, "app", [b"layer"])
    await backend.delete(paths.blob_data(Digest.parse(digest_of(b"layer"))))
    response = await put_manifest(client, "app", "v1", data)
    assert response.status_code == 404
    assert error_codes(response) == ["MANIFEST_BLOB_UNKNOWN"]


class PushBetweenStatAndMove:
    """A backend where, after this GC judged a manifest's old bytes and before it moves them,
    another GC run takes them away whole (data and mark) and a client pushes the manifest
    again: the push finds no bytes, writes them fresh, and this GC then moves *those*."""

    def __init__(
        self, inner: StorageBackend, digest: Digest, push: Callable[[], Awaitable[None]]
    ) -> None:
        self._inner, self._push = inner, push
        self._data, self._touched = paths.blob_data(digest), paths.blob_touched(digest)

    def __getattr__(self, attr: str) -> object:
        return getattr(self._inner, attr)

    async def move(self, src: str, dst: str) -> None:
        if src == self._data and dst.startswith(f"{paths.GC}/trash/"):
            await self._inner.delete(src)  # the other run: deleted the data and its mark
            await self._inner.delete(self._touched)
            await self._push()
        await self._inner.move(src, dst)


async def test_fresh_manifest_bytes_moved_by_a_gc_that_judged_older_ones_are_restored(
    client: httpx.AsyncClient, backend: StorageBackend
) -> None:
    # Why a manifest PUT marks its *own* bytes in use even when it writes them fresh (their
    # new mtime alone does not protect them): a GC that stat'd the old copy moves whatever is
    # at the key later, and only the fresh mark makes it give the bytes back.
    data, _ = await push_image(client, "app", [b"layer"])
    keep, _ = await push_image(client, "app", [b"layer"], extra={"annotations": {"k": "v"}})
    assert (await put_manifest(client, "app", "keep", keep)).status_code == 201
    assert (await put_manifest(client, "app", "gone", data)).status_code == 201
    assert (await client.delete(f"/v2/app/manifests/{digest_of(data)}")).status_code == 202
    age_everything(backend, 2 * GRACE)
    own = Digest.parse(digest_of(data))

    async def push_again() -> None:
        assert (await put_manifest(client, "app", "again", data)).status_code == 201

    report = await gc(PushBetweenStatAndMove(backend, own, push_again)).run()  # type: ignore[arg-type]

    assert own not in report.deleted
    assert await backend.get(paths.blob_data(own)) == data
    await assert_pulls(client, "app", "again")


async def _index_scene(client: httpx.AsyncClient) -> dict[str, str]:
    """app:idx -> index(child A); B untagged with its own layer; R referrer of A; S referrer of
    B; C tagged; returns their digests."""
    a, _ = await push_image(client, "app", [b"layer-a"])
    b, _ = await push_image(client, "app", [b"layer-b"])
    for data in (a, b):
        assert (await put_manifest(client, "app", digest_of(data), data)).status_code == 201
    index = encode(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_INDEX,
            "manifests": [descriptor(mt.OCI_MANIFEST, a)],
        }
    )
    assert (await put_manifest(client, "app", "idx", index, mt.OCI_INDEX)).status_code == 201
    out = {"a": digest_of(a), "b": digest_of(b), "index": digest_of(index)}
    for key, subject in (("r", a), ("s", b)):
        await push_blob(client, "app", b"{}")
        referrer = encode(
            {
                "schemaVersion": 2,
                "mediaType": mt.OCI_MANIFEST,
                "artifactType": "application/x.sig",
                "config": descriptor("application/vnd.oci.empty.v1+json", b"{}"),
                "layers": [descriptor("application/x.sig", CONFIG)],
                "subject": descriptor(mt.OCI_MANIFEST, subject),
            }
        )
        assert (await put_manifest(client, "app", digest_of(referrer), referrer)).status_code == 201
        out[key] = digest_of(referrer)
    return out


async def test_index_children_and_referrers_are_kept(
    client: httpx.AsyncClient, backend: StorageBackend
) -> None:
    scene = await _index_scene(client)
    age_everything(backend, 2 * GRACE)
    report = await gc(backend).run()
    assert report.blobs_deleted == 0
    for ref in scene.values():
        await assert_pulls(client, "app", ref)


async def test_delete_untagged_keeps_what_tags_reach(
    client: httpx.AsyncClient, backend: StorageBackend
) -> None:
    scene = await _index_scene(client)
    age_everything(backend, 2 * GRACE)

    report = await gc(backend, delete_untagged=True).run()

    # B and its referrer S go, with B's own layer and both manifests' bytes.
    assert report.manifests_deleted == 2
    assert set(report.deleted) == {
        Digest.parse(d) for d in (scene["b"], scene["s"], digest_of(b"layer-b"))
    }
    for gone in ("b", "s"):
        assert (await client.get(f"/v2/app/manifests/{scene[gone]}")).status_code == 404
    for kept in ("index", "a", "r"):
        await assert_pulls(client, "app", scene[kept])
    referrers = (await client.get(f"/v2/app/referrers/{scene['b']}")).json()
    assert referrers["manifests"] == []


async def test_delete_untagged_spares_recent_manifests(
    client: httpx.AsyncClient, backend: StorageBackend
) -> None:
    data, _ = await push_image(client, "app", [b"pushed-child-first"])
    assert (await put_manifest(client, "app", digest_of(data), data)).status_code == 201
    report = await gc(backend, delete_untagged=True).run()
    assert report.manifests_deleted == 0
    await assert_pulls(client, "app", digest_of(data))


async def test_purges_abandoned_uploads(client: httpx.AsyncClient, backend: StorageBackend) -> None:
    location = (await client.post("/v2/app/blobs/uploads/")).headers["location"]
    assert (await client.patch(location, content=b"partial")).status_code == 202
    kept = await GarbageCollector(backend, grace=GRACE, upload_ttl=3600).run()
    assert kept.uploads_purged == 0
    await asyncio.sleep(0.01)
    report = await GarbageCollector(backend, grace=GRACE, upload_ttl=0.001).run()
    assert report.uploads_purged == 1
    assert (await client.get(location)).status_code == 404


def test_cli_reports_what_it_freed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "storage"
    hex_ = "ab" * 32
    blob = root / f"blobs/sha256/ab/{hex_}/data"
    blob.parent.mkdir(parents=True)
    # A blob whose name is not its digest is still swept as unreferenced content.
    blob.write_bytes(b"12345")
    old = time.time() - 7200
    os.utime(blob, (old, old))
    storage = f"file://{root}"

    assert main(["gc", "--storage", storage, "--dry-run"]) == 0
    assert "would free 1 blob(s), 5 bytes" in capsys.readouterr().out
    assert blob.exists()
    assert main(["gc", "--storage", storage]) == 0
    out = capsys.readouterr().out
    assert "freed 1 blob(s), 5 bytes" in out and f"deleted blob sha256:{hex_}" in out
    assert not blob.exists()


def test_cli_refuses_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gc", "--storage", "memory://"]) == 2
    assert main(["gc", "--storage", "file:///nonexistent-x", "--grace", "-1"]) == 2
    assert "grace" in capsys.readouterr().err


async def test_a_monolithic_upload_still_streaming_is_not_purged(tmp_path: Path) -> None:
    # On the filesystem, put_stream writes a hidden temp file until the stream ends: the
    # session directory exists but shows no object yet.
    backend = FilesystemBackend(tmp_path / "storage")
    await backend.open()
    session = tmp_path / "storage" / paths.upload_dir("8c4c3f3a-0b7c-4a53-9d59-3d0d5d3e8a11")
    session.mkdir(parents=True)
    (session / ".tmp.streaming").write_bytes(b"half a blob")
    # (a temp file older than the TTL is a crashed write, swept: test_commit_recovery.py)
    report = await GarbageCollector(backend, grace=GRACE, upload_ttl=60).run()
    assert report.uploads_purged == 0 and report.leftovers_swept == 0
    assert (session / ".tmp.streaming").exists()
    await backend.close()


async def test_marks_of_blobs_that_never_came_are_cleaned(
    client: httpx.AsyncClient, backend: StorageBackend
) -> None:
    data, _ = await push_image(client, "app", [b"never-pushed"])
    await backend.delete(paths.blob_data(Digest.parse(digest_of(b"never-pushed"))))
    assert (await put_manifest(client, "app", "v1", data)).status_code == 404
    mark = paths.blob_touched(Digest.parse(digest_of(b"never-pushed")))
    assert await backend.exists(mark)
    await gc(backend).run()
    assert await backend.exists(mark)  # young: a push may be on its way
    age_everything(backend, 2 * GRACE)
    await gc(backend).run()
    assert not await backend.exists(mark)


def test_cli_on_s3_with_a_config_file(
    moto_endpoint: str,  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bucket = create_bucket(moto_endpoint)
    config = tmp_path / "pyreg.yaml"
    config.write_text(
        f"storage:\n  url: s3://{bucket}/reg\n"
        f"  options: {{endpoint_url: '{moto_endpoint}', region: us-east-1}}\n"
    )
    orphan = Digest.parse(digest_of(b"orphan on s3"))
    s3_client(moto_endpoint).put_object(
        Bucket=bucket, Key=f"reg/{paths.blob_data(orphan)}", Body=b"orphan on s3"
    )
    time.sleep(1.1)  # S3 times have one-second resolution
    assert main(["gc", "--config", str(config), "--grace", "0", "-q"]) == 0
    assert "freed 1 blob(s), 12 bytes" in capsys.readouterr().out
    left = s3_client(moto_endpoint).list_objects_v2(Bucket=bucket, Prefix="reg/blobs/")
    assert left.get("KeyCount", 0) == 0


class TagDuringDelete:
    """A backend where a client tags a manifest right as GC deletes its revision."""

    def __init__(self, inner: StorageBackend, name: str, victim: Digest) -> None:
        self._inner, self._name, self._victim = inner, name, victim

    def __getattr__(self, attr: str) -> object:
        return getattr(self._inner, attr)

    async def delete(self, path: str) -> None:
        await self._inner.delete(path)
        if path == paths.manifest_revision_link(self._name, self._victim):
            await self._inner.put(paths.tag_link(self._name, "late"), str(self._victim).encode())


async def test_delete_untagged_restores_what_a_concurrent_tag_reaches(
    client: httpx.AsyncClient, backend: StorageBackend
) -> None:
    child, _ = await push_image(client, "app", [b"child-layer"])
    assert (await put_manifest(client, "app", digest_of(child), child)).status_code == 201
    index = encode(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_INDEX,
            "manifests": [descriptor(mt.OCI_MANIFEST, child)],
        }
    )
    response = await put_manifest(client, "app", digest_of(index), index, mt.OCI_INDEX)
    assert response.status_code == 201
    age_everything(backend, 2 * GRACE)
    racing = TagDuringDelete(backend, "app", Digest.parse(digest_of(index)))

    report = await gc(racing, delete_untagged=True).run()  # type: ignore[arg-type]

    assert report.manifests_deleted == 0 and report.blobs_deleted == 0
    await assert_pulls(client, "app", "late")


class PruneAfterTag:
    """A backend where `gc --delete-untagged` removes a revision just after its tag lands."""

    def __init__(self, inner: StorageBackend) -> None:
        self._inner = inner

    def __getattr__(self, attr: str) -> object:
        return getattr(self._inner, attr)

    async def put(self, path: str, data: bytes) -> None:
        await self._inner.put(path, data)
        if "/_manifests/tags/" in path:
            digest = Digest.parse(json.loads(data)["digest"])  # tag object: {digest, pushed}
            await self._inner.delete(paths.manifest_revision_link("app", digest))


async def test_manifest_put_rewrites_a_revision_pruned_while_tagging(
    backend: StorageBackend,
) -> None:
    app = create_app(Settings(upload_purge_interval=0), backend=PruneAfterTag(backend))  # type: ignore[arg-type]
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://r") as client:
            data, _ = await push_image(client, "app", [b"tagged-late"])
            assert (await put_manifest(client, "app", "v1", data)).status_code == 201
            await assert_pulls(client, "app", "v1")


def _deletions(report: GcReport) -> tuple[list[str], set[Digest], int, int, int]:
    return (
        report.manifests,
        set(report.deleted),
        report.bytes_freed,
        report.links_removed,
        report.uploads_purged,
    )


async def test_dry_run_with_delete_untagged_reports_what_the_real_run_deletes(
    client: httpx.AsyncClient, backend: StorageBackend
) -> None:
    # Untagged B (with a layer only it references) and S (a referrer of B), plus an abandoned
    # upload: the dry run used to mark B and S anyway and list none of their blobs.
    scene = await _index_scene(client)
    location = (await client.post("/v2/app/blobs/uploads/")).headers["location"]
    assert (await client.patch(location, content=b"partial")).status_code == 202
    age_everything(backend, 2 * GRACE)
    options = {"delete_untagged": True, "upload_ttl": 60.0}

    dry = await gc(backend, dry_run=True, **options).run()
    assert (await client.get(f"/v2/app/manifests/{scene['b']}")).status_code == 200
    real = await gc(backend, **options).run()

    assert _deletions(dry) == _deletions(real)
    assert sorted(dry.manifests) == sorted(f"app@{scene[k]}" for k in ("b", "s"))
    assert Digest.parse(digest_of(b"layer-b")) in dry.deleted
    assert dry.summary().replace("would free", "freed") == real.summary()
    assert (await client.get(f"/v2/app/manifests/{scene['b']}")).status_code == 404


def test_cli_dry_run_lists_the_real_runs_deletions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "storage"

    async def setup() -> dict[str, str]:
        backend = FilesystemBackend(str(root))
        await backend.open()
        try:
            app = create_app(Settings(), backend=backend)
            async with app.router.lifespan_context(app):
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=transport, base_url="http://r") as c:
                    return await _index_scene(c)
        finally:
            age_everything(backend, 7200)
            await backend.close()

    asyncio.run(setup())
    storage = f"file://{root}"
    assert main(["gc", "--storage", storage, "--dry-run", "--delete-untagged"]) == 0
    dry = capsys.readouterr().out.splitlines()
    assert main(["gc", "--storage", storage, "--delete-untagged"]) == 0
    real = capsys.readouterr().out.splitlines()

    def listed(lines: list[str], verb: str) -> list[str]:
        return sorted(line.removeprefix(verb) for line in lines if line.startswith(verb))

    assert listed(dry, "would delete ") == listed(real, "deleted ")
    assert len(listed(real, "deleted untagged manifest ")) == 2
    assert len(listed(real, "deleted blob ")) == 3  # B's layer and both manifests' bytes


class ClockAhead:
    """Storage whose clock runs `offset` seconds ahead of this host's (every mtime it reports)."""

    def __init__(self, inner: StorageBackend, offset: float) -> None:
        self._inner, self._offset = inner, offset

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)

    async def stat(self, path: str) -> Stat:
        found = await self._inner.stat(path)
        return Stat(found.size, found.modified + self._offset)


async def test_dry_run_judges_ages_on_the_storage_clock_like_the_real_run(
    client: httpx.AsyncClient, backend: StorageBackend
) -> None:
    orphan = Digest.parse(await push_blob(client, "app", b"orphan"))
    age_everything(backend, 2 * GRACE)
    skewed = ClockAhead(backend, 3 * GRACE)  # by this host's clock, the orphan looks young
    dry = await gc(skewed, dry_run=True).run()  # type: ignore[arg-type]
    real = await gc(skewed).run()  # type: ignore[arg-type]
    assert dry.deleted == real.deleted == [orphan]
