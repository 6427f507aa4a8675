"""The per-process listing cache: reused only while one `stat` says the directory is unchanged,
and never trusted when taken within the margin after the directory's last change."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from storage_backends.filesystem import FilesystemBackend
from storage_backends.fs_listing import ListingCache

MANY = 200  # above the cache's MIN_NAMES: such listings are kept


def lister(directory: str) -> list[str]:
    return sorted(os.listdir(directory))


def filled(path: Path, count: int = MANY, prefix: str = "t") -> Path:
    path.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        (path / f"{prefix}{i:05d}").touch()
    return path


def age(path: Path, seconds: float) -> None:
    """Set the directory's mtime `seconds` back: as if its last change was that long ago."""
    st = os.stat(path)
    past = time.time_ns() - int(seconds * 1e9)
    os.utime(path, ns=(st.st_atime_ns, past))


def test_unchanged_directory_is_listed_once(tmp_path: Path) -> None:
    cache = ListingCache(lister)
    d = filled(tmp_path / "tags")
    age(d, 60)
    first = cache.names(str(d))
    assert first == sorted(os.listdir(d))
    assert cache.names(str(d)) == first
    assert (cache.listings, cache.hits) == (1, 1)


def test_added_renamed_and_deleted_names_are_seen_at_once(tmp_path: Path) -> None:
    cache = ListingCache(lister)
    d = filled(tmp_path / "tags")
    age(d, 60)
    assert "zz" not in cache.names(str(d))
    assert cache.names(str(d)) and cache.hits == 1  # kept: what follows must see past it

    (d / "zz").touch()
    assert "zz" in cache.names(str(d))
    age(d, 50)  # kept again
    assert cache.names(str(d)) == cache.names(str(d))
    hits = cache.hits

    (d / "t00007").unlink()
    assert "t00007" not in cache.names(str(d))
    age(d, 40)
    cache.names(str(d))

    (tmp_path / "elsewhere").touch()
    os.rename(tmp_path / "elsewhere", d / "moved-in")
    assert "moved-in" in cache.names(str(d))
    assert cache.hits == hits  # each listing after a change was taken afresh


def test_a_listing_taken_within_the_margin_is_not_trusted(tmp_path: Path) -> None:
    """Two changes within one tick of the filesystem's clock leave the same mtime: the second
    one is simulated by deleting a name and putting the mtime back (a delete keeps the size)."""
    for margin, stale in ((0, True), (2_000_000_000, False)):
        d = filled(tmp_path / f"tags-{margin}")
        cache = ListingCache(lister, margin_ns=margin)
        assert "t00003" in cache.names(str(d))  # listed right after the last change
        before = os.stat(d)
        (d / "t00003").unlink()
        os.utime(d, ns=(before.st_atime_ns, before.st_mtime_ns))
        assert os.stat(d).st_size == before.st_size
        # without the rule (margin 0) the gone name is served: the key did not change
        assert ("t00003" in cache.names(str(d))) is stale


def test_small_listings_are_not_kept_and_memory_is_bounded(tmp_path: Path) -> None:
    cache = ListingCache(lister, max_names=2 * MANY + 10)
    small = filled(tmp_path / "small", count=5)
    dirs = [filled(tmp_path / f"d{i}") for i in range(3)]
    for d in [small, *dirs]:
        age(d, 60)
        cache.names(str(d))
    cache.names(str(small))
    assert cache.hits == 0  # the small one was not kept
    cache.names(str(dirs[2]))
    cache.names(str(dirs[1]))
    assert cache.hits == 2
    cache.names(str(dirs[0]))  # dropped to keep two lists of MANY under the bound
    assert (cache.hits, cache.listings) == (2, 6)


def test_gone_or_not_a_directory_raises_as_listdir_does(tmp_path: Path) -> None:
    cache = ListingCache(lister)
    d = filled(tmp_path / "tags")
    age(d, 60)
    cache.names(str(d))
    for name in os.listdir(d):
        (d / name).unlink()
    d.rmdir()
    with pytest.raises(FileNotFoundError):
        cache.names(str(d))
    d.write_bytes(b"")
    with pytest.raises(NotADirectoryError):
        cache.names(str(d))


async def test_backend_pages_see_writes_of_another_backend_on_the_same_root(
    tmp_path: Path,
) -> None:
    """Two backends on one root stand for two workers or replicas: each checks for itself."""
    reader, writer = FilesystemBackend(tmp_path), FilesystemBackend(tmp_path)
    await reader.open()
    await writer.open()
    try:
        for i in range(MANY):
            await writer.put(f"r/_tags/t{i:05d}", b"x")
        age(tmp_path / "r" / "_tags", 60)
        everything = await reader.list_dir("r/_tags")
        assert everything == [f"t{i:05d}" for i in range(MANY)]
        assert await reader.list_dir("r/_tags") == everything  # from the kept listing
        page = await reader.list_dir("r/_tags", start_after="t00009", limit=3)
        assert page == ["t00010", "t00011", "t00012"]

        await writer.put("r/_tags/t00010a", b"x")
        page = await reader.list_dir("r/_tags", start_after="t00009", limit=3)
        assert page == ["t00010", "t00010a", "t00011"]
        age(tmp_path / "r" / "_tags", 50)
        await reader.list_dir("r/_tags")
        await writer.delete("r/_tags/t00010")
        page = await reader.list_dir("r/_tags", start_after="t00009", limit=3)
        assert page == ["t00010a", "t00011", "t00012"]
        # a caller changing its page does not change the kept listing
        (await reader.list_dir("r/_tags")).clear()
        assert len(await reader.list_dir("r/_tags")) == MANY
    finally:
        await reader.close()
        await writer.close()
