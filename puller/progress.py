"""Progress reporting for pull and push: rich bars, plain lines, or nothing.

pull.py and push.py call a `Reporter`. On a terminal `RichReporter` draws bars on stderr (so
`-q` output and piped stdout stay clean). Without one, `PlainReporter` writes one line per blob
as it starts and ends, on stdout as docker does without a terminal (logs and CI keep a record;
stderr keeps only warnings and the error line). `NullReporter` is for `--quiet` and for tests.
Sizes are binary units (KiB, MiB) in bars, lines and summaries alike (`human_size`).
"""

from __future__ import annotations

import sys
from types import TracebackType
from typing import TYPE_CHECKING, Protocol, TextIO

from ocispec.digest import Digest
from ocispec.units import human_size

if TYPE_CHECKING:  # rich costs ~50 ms to import: only a RichReporter pays it (--quiet does not)
    from rich.console import Console
    from rich.progress import TaskID


class Reporter(Protocol):
    def start(self, digest: Digest, total: int, action: str) -> None: ...
    def advance(self, digest: Digest, nbytes: int) -> None: ...
    def finish(self, digest: Digest, status: str) -> None: ...
    def __enter__(self) -> Reporter: ...
    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None: ...


class NullReporter:
    def start(self, digest: Digest, total: int, action: str) -> None:
        pass

    def advance(self, digest: Digest, nbytes: int) -> None:
        pass

    def finish(self, digest: Digest, status: str) -> None:
        pass

    def __enter__(self) -> NullReporter:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        pass


class PlainReporter:
    """`<short digest>: <action> (<size>)` when a blob starts, `<short digest>: <status>` when it
    ends: no bars, no carriage returns."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self._sizes: dict[Digest, int] = {}

    def _line(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def start(self, digest: Digest, total: int, action: str) -> None:
        self._sizes[digest] = total
        self._line(f"{digest.short}: {action}" + (f" ({human_size(total)})" if total else ""))

    def advance(self, digest: Digest, nbytes: int) -> None:
        pass

    def finish(self, digest: Digest, status: str) -> None:
        self._line(f"{digest.short}: {status}")

    def __enter__(self) -> PlainReporter:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        pass


class RichReporter:
    """One bar per blob (`<short digest>: Downloading`) and a total bar."""

    def __init__(self, console: Console | None = None) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TransferSpeedColumn,
        )

        self.console = console or Console(file=sys.stderr)
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(binary_units=True),  # MiB, as the summaries
            TransferSpeedColumn(),
            console=self.console,
            transient=False,
        )
        self._tasks: dict[Digest, TaskID] = {}
        self._total = self.progress.add_task("total", total=0)

    def start(self, digest: Digest, total: int, action: str) -> None:
        task = self._tasks.get(digest)
        if task is None:
            self._tasks[digest] = self.progress.add_task(
                f"{digest.short}: {action}", total=total or None
            )
            self.progress.update(self._total, total=self._total_size() + total)
        else:  # a retry: the bar starts over (a resume advances to its offset), total too
            done = self.progress.tasks[task].completed
            self.progress.advance(self._total, -done)
            self.progress.update(task, description=f"{digest.short}: {action}", completed=0)

    def _total_size(self) -> int:
        task = self.progress.tasks[self._total]
        return int(task.total or 0)

    def advance(self, digest: Digest, nbytes: int) -> None:
        task = self._tasks.get(digest)
        if task is not None:
            self.progress.advance(task, nbytes)
        self.progress.advance(self._total, nbytes)

    def finish(self, digest: Digest, status: str) -> None:
        task = self._tasks.get(digest)
        if task is None:
            self._tasks[digest] = self.progress.add_task(f"{digest.short}: {status}", total=1)
            task = self._tasks[digest]
        done = self.progress.tasks[task].total or 1
        self.progress.update(task, description=f"{digest.short}: {status}", completed=done)

    def __enter__(self) -> RichReporter:
        self.progress.start()
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.progress.stop()
