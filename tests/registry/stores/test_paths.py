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
        paths.tag_link("a/b", "v1"),
        paths.tag_marker("a/b", D, "v1"),
        paths.tag_index_flag("a/b"),
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


def test_tag_markers_stay_out_of_revisions() -> None:
    """GC (and the GC soak test) walk `revisions/` expecting only `link` keys."""
    marker = paths.tag_marker("a/b", D, "v1")
    assert marker == f"repositories/a/b/_manifests/tag-index/sha256/{D.hex}/v1"
    assert marker.startswith(paths.tag_markers_dir("a/b", D) + "/")
    assert not marker.startswith(paths.revisions_dir("a/b") + "/")
    assert (
        paths.link_digest(paths.manifest_revision_link("a/b", D), paths.revisions_dir("a/b")) == D
    )


def test_catalog_marker_round_trip() -> None:
    marker = paths.catalog_marker("a/b/c")
    assert "/" not in marker.removeprefix("_catalog/")
    assert paths.catalog_name(marker.removeprefix("_catalog/")) == "a/b/c"


def test_catalog_markers_sort_as_the_names_do() -> None:
    names = ["a", "a-b", "a.b", "a/b", "a/b/c", "a0", "a9", "a_b", "ab", "b", "z9/0"]
    markers = [paths.catalog_encode(n) for n in names]
    assert sorted(markers) == markers  # names above are in byte order
    assert [paths.catalog_name(m) for m in markers] == names
    assert all("/" not in m for m in markers)


def test_catalog_start_after_is_a_safe_bound_for_any_last() -> None:
    names = ["a", "a-b", "a/b", "a0", "ab", "b"]
    for last in ["a", "a/", "A", "a:zz", "a/\u00e9", "", "zz", "a0~", "b" * 2000]:
        bound = paths.catalog_start_after(last)
        after = [n for n in names if n > last]
        assert all(paths.catalog_encode(n) > bound for n in after), last
