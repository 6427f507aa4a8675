"""Process-tree RSS and CPU: children count, and the peak is caught however short it is."""

from __future__ import annotations

import subprocess
import sys
import time

from bench.rss import MIB, PeakRSS, tree_cpu, tree_rss

# A grandchild that holds 80 MiB (written, so resident) until told to let go, then frees it.
_CHILD = (
    "import sys, time\n"
    "b = b'x' * (80 * 1024 * 1024)\n"
    "print('up', flush=True)\n"
    "sys.stdin.readline()\n"
    "del b\n"
    "print('down', flush=True)\n"
    "time.sleep(30)\n"
)


def test_peak_rss_counts_children_and_keeps_the_peak() -> None:
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import subprocess, sys; subprocess.run([sys.executable, '-c', {_CHILD!r}])",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert parent.stdin is not None and parent.stdout is not None
        # A sampling interval far longer than the allocation lives: only the kernel's
        # high-water mark can see it, whatever the machine's load.
        with PeakRSS(parent.pid, interval=3600) as peak:
            assert parent.stdout.readline() == "up\n"
            parent.stdin.write("go\n")
            parent.stdin.flush()
            assert parent.stdout.readline() == "down\n"
            after = tree_rss(parent.pid)
        assert peak.peak - after > 60 * MIB  # the 80 MiB lived only in the grandchild
    finally:
        parent.kill()
        parent.wait()


def test_tree_cpu_grows_with_work() -> None:
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            # Burn 0.3 s of CPU time (not wall time: a loaded CI machine may starve the child).
            "import time\nwhile time.process_time() < 0.3: pass\ntime.sleep(30)",
        ]
    )
    try:
        before = tree_cpu(child.pid)
        deadline = time.monotonic() + 60
        while tree_cpu(child.pid) - before <= 0.1 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert tree_cpu(child.pid) - before > 0.1
    finally:
        child.kill()
        child.wait()


def test_a_gone_process_reads_as_zero() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert tree_rss(child.pid) == 0
    assert tree_cpu(child.pid) == 0.0
