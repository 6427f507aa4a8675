"""Resources of a registry's process tree (psutil): peak RSS and CPU time.

The peak is the kernel's own high-water mark of each process (VmHWM in /proc/PID/status,
reset when measuring starts by writing 5 to /proc/PID/clear_refs), summed over the tree: a
sampler alone can miss a short peak on a loaded machine. Sampling the tree's total still runs
as a fallback (no /proc, or a process that is gone before its mark is read).
"""

from __future__ import annotations

import threading
from types import TracebackType

import psutil

MIB = 1024 * 1024


def _tree(pid: int) -> list[psutil.Process]:
    """`pid` and all its descendants (uvicorn workers are children); [] once it is gone."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def tree_rss(pid: int) -> int:
    """RSS in bytes of `pid` and all its descendants."""
    total = 0
    for process in _tree(pid):
        try:
            total += process.memory_info().rss
        except psutil.NoSuchProcess:  # a worker exiting between listing and reading
            continue
    return total


def _status_kib(pid: int, field: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def high_water_mark(pid: int) -> int | None:
    """The most RSS (bytes) process `pid` has had since it started or since its mark was
    reset; None where the kernel does not say (not Linux, or the process is gone)."""
    kib = _status_kib(pid, "VmHWM")
    return None if kib is None else kib * 1024


def reset_high_water_mark(pid: int) -> bool:
    """Restart `pid`'s high-water mark from its current RSS (Linux >= 4.0, same user)."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by `pid` and its live descendants."""
    total = 0.0
    for process in _tree(pid):
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


class PeakRSS:
    """`with PeakRSS(pid) as peak: ...` then `peak.peak` (bytes): the sum over the tree of
    each process's high-water mark since entering, read every `interval` (processes that
    appear later count from their start), or the sampled tree total if that is higher."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        self.pid = pid
        self.interval = interval
        self.peak = 0
        self.start = 0
        self._marks: dict[int, int] = {}  # pid -> highest VmHWM read
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="peak-rss", daemon=True)

    def _read(self) -> None:
        sampled = 0
        for process in _tree(self.pid):
            try:
                sampled += process.memory_info().rss
            except psutil.NoSuchProcess:
                continue
            mark = high_water_mark(process.pid)
            if mark is not None:
                self._marks[process.pid] = max(self._marks.get(process.pid, 0), mark)
        self.peak = max(self.peak, sampled, sum(self._marks.values()))

    def _run(self) -> None:
        while not self._stop.is_set():
            self._read()
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakRSS:
        for process in _tree(self.pid):
            reset_high_water_mark(process.pid)
        self.start = tree_rss(self.pid)
        self.peak = self.start
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
        self._read()
