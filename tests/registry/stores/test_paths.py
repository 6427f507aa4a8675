"""The key layout: every function's key appears in the tree drawn in the module docstring."""

from __future__ import annotations

from ocispec.digest import Digest
from registry.stores import paths
from storage_backends.base import check_path

D = Digest("sha256", "ab" * 32)


def test_keys_are_valid_storage_paths() -> None:
    keys = [
        paths.blob_data(D),
        paths.layer_link("a/b", D),
        paths.manifest_revision_link("a/b", D),
        paths.tag_current_link("a/b", "v1"),
        paths.referrer_entry("a/b", D, D),
        paths.catalog_marker("a/b/c"),
        paths.upload_state("u"),
        paths.upload_tail("u", "1"),
        paths.upload_data("u"),
    ]
    for key in keys:
        assert check_path(key) == key


def test_blob_layout() -> None:
    assert paths.blob_data(D) == f"blobs/sha256/ab/{D.hex}/data"
    assert paths.layer_link("a/b", D) == f"repositories/a/b/_layers/sha256/{D.hex}/link"


def test_catalog_marker_round_trip() -> None:
    marker = paths.catalog_marker("a/b/c")
    assert "/" not in marker.removeprefix("_catalog/")
    assert paths.catalog_name(marker.removeprefix("_catalog/")) == "a/b/c"
