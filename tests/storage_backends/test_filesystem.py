"""What only the filesystem backend does: its on-disk layout, hidden bookkeeping, memory use."""

from __future__ import annotations

import asyncio
import gc
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import psutil
import pytest

from storage_backends import InvalidPath, open_backend
from storage_backends.filesystem import FilesystemBackend

MiB = 1024 * 1024


async def chunks_of(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


@pytest.fixture
async def fs(tmp_path: Path) -> AsyncIterator[FilesystemBackend]:
    backend = FilesystemBackend(tmp_path / "root")
    await backend.open()
    yield backend
    await backend.close()


def files_under(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())


async def test_open_creates_root(tmp_path: Path) -> None:
    backend = FilesystemBackend(tmp_path / "a" / "b")
    await backend.open()
    assert (tmp_path / "a" / "b").is_dir()
    # owner only: private content and the generated token signing key live below
    assert (tmp_path / "a" / "b").stat().st_mode & 0o777 == 0o700


async def test_objects_are_plain_files(fs: FilesystemBackend) -> None:
    await fs.put("x/y/z", b"data")
    assert (fs.root / "x" / "y" / "z").read_bytes() == b"data"


async def test_escapes_write_nothing_outside_root(fs: FilesystemBackend, tmp_path: Path) -> None:
    for bad in ("../outside", "a/../../outside", "/tmp/outside"):
        with pytest.raises(InvalidPath):
            await fs.put(bad, b"x")
    assert not (tmp_path / "outside").exists()
    assert files_under(tmp_path) == []


@pytest.mark.parametrize("reserved", [".multipart/x", ".tmp.abc", "a/.tmp.1/b"])
async def test_reserved_names_refused(fs: FilesystemBackend, reserved: str) -> None:
    with pytest.raises(InvalidPath):
        await fs.put(reserved, b"x")


async def test_bookkeeping_hidden_from_listings(fs: FilesystemBackend) -> None:
    await fs.put("blobs/a", b"1")
    upload = await fs.multipart_create("blobs/b")
    await fs.multipart_upload_part("blobs/b", upload, 1, chunks_of(b"part", 2), 4)
    (fs.root / "blobs" / ".tmp.leftover").write_bytes(b"a crashed write")
    assert (fs.root / ".multipart" / upload).is_dir()
    assert await fs.list_dir("") == ["blobs"]
    assert await fs.list_dir("blobs") == ["a"]
    assert [k async for k in fs.walk("")] == ["blobs/a"]


async def test_single_part_complete_is_a_rename(fs: FilesystemBackend) -> None:
    upload = await fs.multipart_create("one")
    part = await fs.multipart_upload_part("one", upload, 1, chunks_of(b"x" * 1000, 100), 1000)
    part_file = fs.root / ".multipart" / upload / "data"  # parts are written in place
    inode = part_file.stat().st_ino
    await fs.multipart_complete("one", upload, [part])
    assert (fs.root / "one").stat().st_ino == inode
    assert not (fs.root / ".multipart" / upload).exists()


async def test_complete_refuses_a_part_changed_since_listing(fs: FilesystemBackend) -> None:
    upload = await fs.multipart_create("k")
    old = await fs.multipart_upload_part("k", upload, 1, chunks_of(b"aaaa", 4), 4)
    await fs.multipart_upload_part("k", upload, 1, chunks_of(b"bbbbbb", 4), 6)
    with pytest.raises(Exception, match="changed"):
        await fs.multipart_complete("k", upload, [old])


async def test_multipart_parts_need_no_size(fs: FilesystemBackend) -> None:
    upload = await fs.multipart_create("k")
    part = await fs.multipart_upload_part("k", upload, 1, chunks_of(b"abc" * 1000, 7))
    assert part.size == 3000
    await fs.multipart_complete("k", upload, [part])
    assert await fs.get("k") == b"abc" * 1000


async def test_open_backend_file_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    absolute = open_backend(f"file://{tmp_path}/abs")
    assert isinstance(absolute, FilesystemBackend) and absolute.root == tmp_path / "abs"
    monkeypatch.chdir(tmp_path)
    relative = open_backend("file://./var/registry")
    assert isinstance(relative, FilesystemBackend)
    assert relative.root == tmp_path / "var" / "registry"


async def test_streaming_64_mib_keeps_memory_flat(fs: FilesystemBackend) -> None:
    size = 64 * MiB
    block = os.urandom(65_521)  # odd-sized pieces, as an HTTP body arrives

    async def source() -> AsyncIterator[bytes]:
        sent = 0
        while sent < size:
            piece = block[: size - sent]
            sent += len(piece)
            yield piece

    process = psutil.Process()
    gc.collect()
    before = process.memory_info().rss
    peak = before
    written = await fs.put_stream("big", source())
    peak = max(peak, process.memory_info().rss)
    digest = hashlib.sha256()
    async for piece in fs.stream("big"):
        digest.update(piece)
        peak = max(peak, process.memory_info().rss)
    assert written == size
    assert (await fs.stat("big")).size == size
    # Buffers are 1 MiB; allow generous slack for the allocator and thread stacks.
    assert peak - before < 16 * MiB, f"RSS grew by {(peak - before) / MiB:.1f} MiB"

    expected = hashlib.sha256()
    sent = 0
    while sent < size:
        piece = block[: size - sent]
        sent += len(piece)
        expected.update(piece)
    assert digest.digest() == expected.digest()


async def test_concurrent_writes_and_deletes_in_one_directory(fs: FilesystemBackend) -> None:
    # A delete prunes empty directories; a write or move that has just made that directory
    # must not fail because a neighbour's delete removed it again.
    errors: list[BaseException] = []

    async def worker(i: int) -> None:
        for _ in range(40):
            try:
                await fs.put(f"d/e/k{i}", b"x")
                await fs.delete(f"d/e/k{i}")
                await fs.put(f"s/m{i}", b"x")
                await fs.move(f"s/m{i}", f"d/f/m{i}")
                await fs.delete(f"d/f/m{i}")
            except Exception as e:
                errors.append(e)

    await asyncio.gather(*(worker(i) for i in range(8)))
    assert errors == []
    assert await fs.list_dir("") == []


async def test_walk_crosses_batches_in_order(fs: FilesystemBackend) -> None:
    # More keys than one worker-thread batch (1000), laid out as the blob store does.
    expected = []
    for i in range(2100):
        digest = f"{i * 7919:064x}"
        directory = fs.root / "blobs" / digest[-2:] / digest
        directory.mkdir(parents=True)
        (directory / "data").write_bytes(b"")
        expected.append(f"blobs/{digest[-2:]}/{digest}/data")
    (fs.root / "blobs-index").write_bytes(b"")  # a key before every "blobs/..." ("-" < "/")
    assert [k async for k in fs.walk("blobs")] == sorted(expected)
    assert [k async for k in fs.walk("")] == ["blobs-index", *sorted(expected)]


async def test_empty_put_over_an_empty_object_refreshes_it_in_place(
    fs: FilesystemBackend,
) -> None:
    # A blob's in-use mark is rewritten on every push: a new mtime is all it needs.
    await fs.put("marks/a", b"")
    path = fs.root / "marks" / "a"
    os.utime(path, (1_000_000, 1_000_000))
    inode = path.stat().st_ino
    await fs.put("marks/a", b"")
    assert path.stat().st_ino == inode
    assert (await fs.stat("marks/a")).modified > 1_000_000
    assert files_under(fs.root) == ["marks/a"]


async def test_empty_put_replaces_content(fs: FilesystemBackend) -> None:
    await fs.put("k", b"old")
    await fs.put("k", b"")
    assert await fs.get("k") == b""
    await fs.put("k", b"new")
    assert await fs.get("k") == b"new"


# names around the hidden ones in byte order: a bisection bound off by one shows here
_EDGE_NAMES = [
    "-a", ",b", ".a", ".multipart", ".multipart0", ".multipar", ".tmp", ".tmp-", ".tmp.",
    ".tmp.x", ".tmp.zz", ".tmp0", ".tmq", "0", "A", "a", "t00001", "t00002",
]  # fmt: skip


@pytest.mark.parametrize("at_root", [True, False])
def test_listing_hides_exactly_temp_files_and_the_multipart_root(
    tmp_path: Path, at_root: bool
) -> None:
    from storage_backends.filesystem import _hidden, _visible_children

    for name in _EDGE_NAMES:
        (tmp_path / name).touch()
    expected = sorted(n for n in _EDGE_NAMES if not _hidden(n, at_root))
    assert ".tmp.x" not in expected and ".tmp0" in expected
    assert (".multipart" in expected) is not at_root
    assert _visible_children(tmp_path, at_root) == expected


async def test_list_dir_pages_after_any_name(tmp_path: Path) -> None:
    fs = FilesystemBackend(tmp_path)
    for i in range(0, 50, 2):
        await fs.put(f"r/t{i:03d}", b"x")
    everything = [f"t{i:03d}" for i in range(0, 50, 2)]
    assert await fs.list_dir("r") == everything
    for after in (None, "a", "t000", "t001", "t048", "u"):
        for limit in (None, 0, 1, 5, 100):
            want = [n for n in everything if after is None or n > after]
            want = want if limit is None else want[:limit]
            assert await fs.list_dir("r", start_after=after, limit=limit) == want
