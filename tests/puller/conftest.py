"""Fixtures of the client tests: a fresh graph store, the reference registry, image seeding."""

from __future__ import annotations

from pathlib import Path

import pytest

from ocispec.digest import Digest
from puller.store import GraphStore
from tests.support.docker_registry import docker_registry
from tests.support.images import Image

__all__ = ["docker_registry", "put_image", "store"]


@pytest.fixture
def store(tmp_path: Path) -> GraphStore:
    return GraphStore(tmp_path / "pyreg-home")


def put_image(store: GraphStore, name: str, image: Image) -> Digest:
    """Seed the local store with an image (blobs, manifest, name), as a pull or load would."""
    for digest, data in image.blobs().items():
        store.content.write_bytes(data, digest)
    store.content.write_bytes(image.manifest, image.digest)
    store.images.set(name, image.digest)
    return image.digest
