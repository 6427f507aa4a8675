"""Sorted listings of large directories, kept per process and checked by one `stat`.

A tags list of 1000 tags spent most of its server time listing the tags directory: the
kernel's `getdents` of 1000 entries and 1000 new `str` objects (~0.8 ms), then sorting them
(~0.2 ms), under the GIL, every request. A listing is kept here instead and reused while the
directory has not changed, which one `stat` of it tells (~4 µs): adding, removing or renaming
an entry sets the directory's mtime, so the key (device, inode, size, mtime in ns) changes.
Every process (worker, replica) checks for itself, so writes by any of them are seen.

The racy-git rule: a timestamp is a tick of the filesystem's clock (a jiffy on ext4, a
second on some filesystems and NFS servers), and two changes within one tick leave the same
mtime. A listing is kept only when it started at least `margin` after the mtime it was keyed
by: any change after that gets a later mtime. A directory changed within the last `margin`
is listed afresh each time (as before this cache), so a burst of tag pushes is never served
from a listing that missed one. The margin (2 s) also covers a one-second clock and a small
clock skew between NFS clients and their server. An mtime set back by hand (`touch -d`,
a restore keeping times) onto a changed directory is outside what this can see.

Memory is bounded: only listings of at least `min_names` names are kept (small directories
list in microseconds), at most `max_names` names in all, least recently used dropped first.
"""

from __future__ import annotations

import os
import stat
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

MARGIN_NS = 2_000_000_000
MIN_NAMES = 128
MAX_NAMES = 256 * 1024  # all directories together: ~20 MiB of short names


@dataclass(frozen=True, slots=True)
class _Entry:
    key: tuple[int, int, int, int]  # st_dev, st_ino, st_size, st_mtime_ns
    names: list[str]  # sorted, never changed once kept


class ListingCache:
    """`names(directory)`: its sorted visible children, from `lister` or a kept listing.
    Thread-safe (called from the backend's worker threads)."""

    def __init__(
        self,
        lister: Callable[[str], list[str]],
        margin_ns: int = MARGIN_NS,
        min_names: int = MIN_NAMES,
        max_names: int = MAX_NAMES,
    ) -> None:
        self._lister = lister
        self._margin = margin_ns
        self._min = min_names
        self._max = max_names
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._kept = 0  # names in all entries
        self._lock = threading.Lock()
        #: counters, for tests and profiles: listings reused, listings taken
        self.hits = 0
        self.listings = 0

    def names(self, directory: str) -> list[str]:
        """The sorted names; a kept list is shared: callers must not change it."""
        # the clock is read BEFORE the stat and the listing: a change after this instant gets
        # an mtime of at least this instant minus one tick (see the module docstring)
        started = time.time_ns()
        try:
            st = os.stat(directory)
        except FileNotFoundError:
            self._forget(directory)
            raise
        if not stat.S_ISDIR(st.st_mode):
            raise NotADirectoryError(directory)
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        with self._lock:
            entry = self._entries.get(directory)
            if entry is not None and entry.key == key:
                self._entries.move_to_end(directory)
                self.hits += 1
                return entry.names
        names = self._lister(directory)
        with self._lock:
            self.listings += 1
            self._drop(directory)
            if self._min <= len(names) <= self._max and started - st.st_mtime_ns >= self._margin:
                self._entries[directory] = _Entry(key, names)
                self._kept += len(names)
                while self._kept > self._max:
                    self._drop(next(iter(self._entries)))
        return names

    def _forget(self, directory: str) -> None:
        with self._lock:
            self._drop(directory)

    def _drop(self, directory: str) -> None:
        entry = self._entries.pop(directory, None)
        if entry is not None:
            self._kept -= len(entry.names)
