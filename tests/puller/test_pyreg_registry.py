"""The client against pyreg's own registry (a real `pyreg serve` process on loopback):
round trip with monolithic and chunked uploads, mount, delete by tag (spec v1.1)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ocispec.reference import Reference
from puller.pull import pull
from puller.push import Pusher, push
from puller.store import GraphStore
from regclient.api import RegistryClient
from regclient.auth import AuthError
from tests.puller.conftest import put_image
from tests.support.images import build_image, file, sample_image
from tests.support.server import RegistryServer

pytestmark = pytest.mark.slow


async def test_push_pull_mount_delete_against_pyreg_serve(
    tmp_path: Path, store: GraphStore
) -> None:
    with RegistryServer(f"file://{tmp_path / 'storage'}") as server:
        host = server.url.removeprefix("http://")
        image = sample_image()
        big = build_image([[file("big", os.urandom(400_000))]], compression="")
        ref = Reference.parse(f"{host}/team/app:v1")
        big_ref = Reference.parse(f"{host}/team/big:v1")
        put_image(store, str(ref), image)
        put_image(store, str(big_ref), big)
        store.images.set(f"{host}/other/app:v1", image.digest)
        async with RegistryClient(host) as client:
            await push(client, store, ref)
            await Pusher(client, store, monolithic_max=1000, chunk_size=150_000).push(big_ref)
            mounted = await push(client, store, Reference.parse(f"{host}/other/app:v1"))
            assert len(mounted.mounted) == 4
            fresh = GraphStore(tmp_path / "fresh")
            for r, img in ((ref, image), (big_ref, big)):
                result = await pull(client, fresh, r)
                assert result.digest == img.digest
                for digest, data in img.blobs().items():
                    assert fresh.content.read_bytes(digest) == data
            await client.delete_manifest("other/app", "v1")  # by tag: only that tag goes
            assert await client.head_manifest("other/app", "v1") is None
            assert await client.head_manifest("other/app", str(image.digest)) is not None


async def test_client_against_pyreg_serve_with_access_control(
    tmp_path: Path, store: GraphStore
) -> None:
    """pyreg's token service (issue 3): login, private push/pull, anonymous public pull."""
    from regclient.api import Unauthorized
    from regclient.credentials import Credentials
    from tests.support.auth import auth_section

    rules = [
        {"repository": "library/*", "pull": ["anonymous"], "push": ["alice"]},
        {"repository": "private/**", "pull": ["alice"], "push": ["alice"]},
    ]
    (tmp_path / "auth").mkdir()
    auth = auth_section(tmp_path / "auth", {"alice": "alice-pw"}, rules)
    with RegistryServer(f"file://{tmp_path / 'storage'}", {"auth": auth}) as server:
        host = server.url.removeprefix("http://")
        image = build_image([[file("a", b"private bits")]])
        private = Reference.parse(f"{host}/private/team/app:v1")
        public = Reference.parse(f"{host}/library/app:v1")
        put_image(store, str(private), image)
        store.images.set(str(public), image.digest)
        alice = Credentials("alice", "alice-pw")
        async with RegistryClient(host, credentials=alice) as client:
            await client.ping()
            await push(client, store, private)
            mounted = await push(client, store, public)  # mount needs pull on the source
            assert len(mounted.mounted) == 2
            assert (await pull(client, GraphStore(tmp_path / "a"), private)).digest == image.digest
        async with RegistryClient(host) as anonymous:
            assert (await pull(anonymous, GraphStore(tmp_path / "b"), public)).digest == (
                image.digest
            )
            with pytest.raises(Unauthorized):
                await pull(anonymous, GraphStore(tmp_path / "c"), private)
        async with RegistryClient(host, credentials=Credentials("alice", "wrong")) as wrong:
            with pytest.raises((Unauthorized, AuthError)):
                await wrong.ping()
