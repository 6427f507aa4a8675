"""GrowingFile: reads what the downloader wrote, waits for more, ends only when finished, and
gives up (Abandoned) on every irregular path, so a blocked reader never hangs."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from puller.store.follow import Abandoned, GrowingFile


def _reader(stream: GrowingFile, out: list[bytes | BaseException]) -> threading.Thread:
    def run() -> None:
        try:
            while chunk := stream.read(3):
                out.append(chunk)
            out.append(b"<eof>")
        except Abandoned as exc:
            out.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_reads_along_and_ends_only_when_finished(tmp_path: Path) -> None:
    partial = tmp_path / "blob.partial"
    partial.write_bytes(b"abcd")  # a resumed download: the partial already holds bytes
    stream = GrowingFile()
    stream.attach(partial, 4)
    out: list[bytes | BaseException] = []
    thread = _reader(stream, out)
    with partial.open("ab", buffering=0) as f:
        f.write(b"efgh")
        stream.grew(8)
        deadline = time.monotonic() + 30
        # reads of 3: it waits for whole reads, so "gh" waits for more bytes or the end
        while b"".join(c for c in out if isinstance(c, bytes)) != b"abcdef":
            assert time.monotonic() < deadline, out
            time.sleep(0.01)
        thread.join(0.2)
        assert thread.is_alive()  # no end before finish()
        f.write(b"ij")
        stream.grew(10)
    partial.rename(tmp_path / "blob")  # committed: the reader keeps its own descriptor
    stream.finish()
    thread.join(10)
    assert not thread.is_alive()
    assert b"".join(c for c in out if isinstance(c, bytes)) == b"abcdefghij<eof>"
    assert stream.size == 10


def test_abandon_wakes_a_waiting_reader(tmp_path: Path) -> None:
    partial = tmp_path / "blob.partial"
    partial.write_bytes(b"")
    stream = GrowingFile()
    stream.attach(partial, 0)
    out: list[bytes | BaseException] = []
    thread = _reader(stream, out)
    thread.join(0.2)
    assert thread.is_alive()
    stream.abandon()
    thread.join(10)
    assert not thread.is_alive() and isinstance(out[-1], Abandoned)
    stream.finish()  # too late: still abandoned
    with pytest.raises(Abandoned):
        stream.read()


def test_finished_without_a_download_to_follow_is_abandoned() -> None:
    stream = GrowingFile()  # the blob was stored already: nothing was attached
    stream.finish()
    with pytest.raises(Abandoned):
        stream.read()


def test_a_second_attach_is_a_retry_and_abandons(tmp_path: Path) -> None:
    partial = tmp_path / "blob.partial"
    partial.write_bytes(b"abc")
    stream = GrowingFile()
    stream.attach(partial, 3)
    assert stream.read(3) == b"abc"
    stream.attach(partial, 3)
    stream.finish()
    with pytest.raises(Abandoned):
        stream.read()
