"""Ending a finished `pyreg` client command without the interpreter's teardown.

After the command's work is done, a normal exit still clears every module and frees every
object one by one: for a push, 250-350 modules (httpx, httpcore, anyio, asyncio, ssl) and
their objects, ~0.05-0.2 s depending on the machine's load (docs/performance.md), for
nothing the user sees. `leave` flushes the output, runs the atexit handlers as a normal
exit would, and ends the process there.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from typing import NoReturn


def _flushed() -> bool:
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):  # a closed pipe or stream: let the normal exit report it
        return False
    return True


def leave(code: int) -> NoReturn:
    """End the process with `code` after flushing stdout/stderr and running the atexit
    handlers. Only when no other thread runs (a normal exit waits for non-daemon threads,
    and a daemon thread may be mid-write) and the output could be flushed; else
    `sys.exit(code)`. Files the command left open and unflushed would lose their buffered
    bytes: the client's writes all go through `with` blocks (and are fsync'd where it
    matters)."""
    if threading.active_count() == 1 and _flushed():
        atexit._run_exitfuncs()
        if _flushed():
            os._exit(code)
    sys.exit(code)
