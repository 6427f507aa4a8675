"""Progress bars: one per blob with its status, and a total of bytes moved."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from ocispec.digest import digest_bytes
from puller.progress import NullReporter, RichReporter


def _render(reporter: RichReporter) -> str:
    out = reporter.console.file
    assert isinstance(out, io.StringIO)
    return out.getvalue()


def test_bars_per_blob_and_total() -> None:
    console = Console(file=io.StringIO(), width=120, force_terminal=False)
    a, b = digest_bytes(b"a"), digest_bytes(b"b")
    with RichReporter(console) as reporter:
        reporter.start(a, 1000, "Downloading")
        reporter.advance(a, 600)
        reporter.start(b, 500, "Downloading")
        reporter.advance(b, 500)
        reporter.finish(b, "Pull complete")
        reporter.finish(digest_bytes(b"c"), "Already exists")
        reporter.start(a, 1000, "Retrying (1)")
        reporter.advance(a, 100)  # resumed at 100
        assert reporter.progress.tasks[1].completed == 100
        reporter.advance(a, 500)
        total = reporter.progress.tasks[0]
        assert (total.completed, total.total) == (1100, 1500)  # a retry is not counted twice
        assert reporter.progress.tasks[1].completed == 600
    text = _render(reporter)
    assert f"{b.short}: Pull complete" in text
    assert f"{digest_bytes(b'c').short}: Already exists" in text
    assert f"{a.short}: Retrying (1)" in text


def test_null_reporter_prints_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    with NullReporter() as reporter:
        reporter.start(digest_bytes(b"a"), 1, "x")
        reporter.advance(digest_bytes(b"a"), 1)
        reporter.finish(digest_bytes(b"a"), "done")
    assert capsys.readouterr() == ("", "")
