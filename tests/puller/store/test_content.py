"""Content store: verified, atomic blobs and resumable ingests."""

from __future__ import annotations

import hashlib
import multiprocessing
from pathlib import Path

import pytest

from ocispec.digest import Digest, DigestMismatch, digest_bytes
from puller.store import GraphStore, NotInStore, StoreError
from puller.store.content import IngestBusy


def test_write_bytes_roundtrip(tmp_path: Path) -> None:
    store = GraphStore(tmp_path)
    d = store.content.write_bytes(b"hello")
    assert d == digest_bytes(b"hello")
    assert store.content.has(d)
    assert store.content.read_bytes(d) == b"hello"
    assert store.content.path(d) == tmp_path / "blobs" / "sha256" / d.hex
    assert store.content.list() == [d]


def test_write_bytes_wrong_digest_leaves_nothing(tmp_path: Path) -> None:
    store = GraphStore(tmp_path)
    wrong = digest_bytes(b"other")
    with pytest.raises(DigestMismatch):
        store.content.write_bytes(b"hello", wrong)
    assert store.content.list() == []
    assert store.content.partials() == []


def test_absent_blob_raises_not_in_store(tmp_path: Path) -> None:
    store = GraphStore(tmp_path)
    d = digest_bytes(b"x")
    assert not store.content.has(d)
    with pytest.raises(NotInStore):
        store.content.path(d)
    with pytest.raises(KeyError):  # NotInStore is KeyError-like
        store.content.read_bytes(d)


def test_delete(tmp_path: Path) -> None:
    store = GraphStore(tmp_path)
    d = store.content.write_bytes(b"abc")
    store.content.delete(d)
    assert not store.content.has(d)
    store.content.delete(d)  # idempotent


def test_ingest_commit(tmp_path: Path) -> None:
    store = GraphStore(tmp_path)
    data = b"x" * 3000
    d = digest_bytes(data)
    with store.content.ingest(d, len(data)) as ing:
        assert ing.offset == 0
        ing.write(data[:1000])
        ing.write(data[1000:])
        path = ing.commit()
    assert path.read_bytes() == data
    assert store.content.partials() == []


def test_no_partial_blob_under_digest_name(tmp_path: Path) -> None:
    store = GraphStore(tmp_path)
    data = b"y" * 5000
    d = digest_bytes(data)
    with store.content.ingest(d, len(data)) as ing:
        ing.write(data[:2000])
        assert not store.content.has(d)
    assert not store.content.has(d)


def test_ingest_resumes_across_instances(tmp_path: Path) -> None:
    data = bytes(range(256)) * 100
    d = digest_bytes(data)
    first = GraphStore(tmp_path).content.ingest(d, len(data))
    first.write(data[:10000])
    first.close()

    store = GraphStore(tmp_path)  # as a new process would
    with store.content.ingest(d, len(data)) as ing:
        assert ing.offset == 10000
        ing.write(data[ing.offset :])
        ing.commit()
    assert store.content.read_bytes(d) == data


def _write_and_die(root: str, data: bytes) -> None:
    import os

    ing = GraphStore(Path(root)).content.ingest(digest_bytes(data), len(data))
    ing.write(data[:777])
    os._exit(0)  # killed mid-download: no close, no cleanup


def test_ingest_survives_process_death(tmp_path: Path) -> None:
    data = b"z" * 4096
    p = multiprocessing.get_context("fork").Process(
        target=_write_and_die, args=(str(tmp_path), data)
    )
    p.start()
    p.join(10)
    store = GraphStore(tmp_path)
    with store.content.ingest(digest_bytes(data), len(data)) as ing:
        assert ing.offset == 777
        ing.write(data[777:])
        ing.commit()
    assert store.content.has(digest_bytes(data))


def test_resumed_corrupt_partial_is_discarded_on_commit(tmp_path: Path) -> None:
    data = b"a" * 1000
    d = digest_bytes(data)
    store = GraphStore(tmp_path)
    with store.content.ingest(d, len(data)) as ing:
        ing.write(b"b" * 500)  # wrong bytes, e.g. a proxy's error page
    with store.content.ingest(d, len(data)) as ing:
        assert ing.offset == 500
        ing.write(data[500:])
        with pytest.raises(DigestMismatch):
            ing.commit()
    assert not store.content.has(d)
    assert store.content.partials() == []


def test_partial_longer_than_size_restarts(tmp_path: Path) -> None:
    data = b"a" * 100
    d = digest_bytes(data)
    store = GraphStore(tmp_path)
    partial = tmp_path / "ingest" / f"sha256-{d.hex}.partial"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"a" * 200)
    with store.content.ingest(d, len(data)) as ing:
        assert ing.offset == 0
        ing.write(data)
        ing.commit()
    assert store.content.read_bytes(d) == data


def test_reset_starts_over(tmp_path: Path) -> None:
    data = b"0123456789" * 10
    d = digest_bytes(data)
    store = GraphStore(tmp_path)
    with store.content.ingest(d, len(data)) as ing:
        ing.write(data[:40])
        ing.reset()  # the server ignored Range and sends everything again
        assert ing.offset == 0
        ing.write(data)
        ing.commit()
    assert store.content.read_bytes(d) == data


def test_overlong_write_raises_and_discards(tmp_path: Path) -> None:
    data = b"q" * 10
    d = digest_bytes(data)
    store = GraphStore(tmp_path)
    with store.content.ingest(d, len(data)) as ing, pytest.raises(DigestMismatch):
        ing.write(data + b"extra")
    assert store.content.partials() == []


def test_truncated_blob_refused(tmp_path: Path) -> None:
    data = b"w" * 100
    d = digest_bytes(data)
    store = GraphStore(tmp_path)
    with store.content.ingest(d, len(data)) as ing:
        ing.write(data[:60])
        with pytest.raises(DigestMismatch, match="size"):
            ing.commit()
    assert not store.content.has(d)


def test_unknown_size_ingest(tmp_path: Path) -> None:
    data = b"m" * 10
    d = Digest("sha256", hashlib.sha256(data).hexdigest())
    store = GraphStore(tmp_path)
    with store.content.ingest(d, None) as ing:
        ing.write(data)
        ing.commit()
    assert store.content.has(d)


def test_second_concurrent_ingest_is_refused_after_wait(tmp_path: Path) -> None:
    d = digest_bytes(b"k")
    store = GraphStore(tmp_path)
    with store.content.ingest(d, 1):
        with pytest.raises(IngestBusy):
            store.content.ingest(d, 1, wait=0.2)
    store.content.ingest(d, 1, wait=0).close()  # free again after close


def test_second_ingest_waits_for_the_first_and_finds_the_blob(tmp_path: Path) -> None:
    import threading

    data = b"p" * 5000
    d = digest_bytes(data)
    first = GraphStore(tmp_path).content.ingest(d, len(data))
    first.write(data[:100])
    got = []

    def second() -> None:  # e.g. another pull of an image sharing this layer
        got.append(GraphStore(tmp_path).content.ingest(d, len(data), wait=30))

    t = threading.Thread(target=second)
    t.start()
    t.join(0.3)
    assert t.is_alive()  # waiting for the first writer
    first.write(data[100:])
    first.commit()
    t.join(10)
    (ingest,) = got
    assert ingest.offset == len(data)  # nothing left to download
    assert ingest.commit() == GraphStore(tmp_path).content.path(d)
    assert GraphStore(tmp_path).content.read_bytes(d) == data
    assert GraphStore(tmp_path).content.partials() == []


def test_ingest_of_a_stored_blob_is_complete(tmp_path: Path) -> None:
    store = GraphStore(tmp_path)
    d = store.content.write_bytes(b"stored")
    with store.content.ingest(d, 6) as ing:
        assert ing.offset == 6
        with pytest.raises(StoreError):
            ing.write(b"more")
        assert ing.commit() == store.content.path(d)
    assert store.content.partials() == []


def test_write_stream_computes_digest(tmp_path: Path) -> None:
    store = GraphStore(tmp_path)
    d = store.content.write_stream(iter([b"ab", b"cd"]))
    assert d == digest_bytes(b"abcd")
    assert store.content.size(d) == 4


def test_sha512(tmp_path: Path) -> None:
    store = GraphStore(tmp_path)
    d = digest_bytes(b"s", "sha512")
    with store.content.ingest(d, 1) as ing:
        ing.write(b"s")
        ing.commit()
    assert store.content.list() == [d]


def test_write_bytes_of_present_blob_is_not_rewritten(tmp_path: Path) -> None:
    store = GraphStore(tmp_path)
    d = store.content.write_bytes(b"same", digest_bytes(b"same"))
    inode = store.content.path(d).stat().st_ino
    assert store.content.write_bytes(b"same", d) == d
    assert store.content.path(d).stat().st_ino == inode
