"""Users from an htpasswd file with bcrypt hashes (`htpasswd -B`, as the reference registry).

Lines are `name:hash`; blank lines and `#` comments are kept when the file is rewritten.
Only bcrypt (`$2y$`, `$2b$`, `$2a$`) is accepted: the other htpasswd formats (MD5-crypt, SHA1,
crypt) are weak, and distribution refuses them too.

The server re-reads the file when its modification time changes, so `pyreg user add` takes
effect without a restart. bcrypt is slow on purpose: checks run in worker threads, at most
`BCRYPT_THREADS` at a time (a burst of logins queues there instead of taking every core from
the requests being served).

Every check does the same bcrypt work, 2**(highest cost in the file) rounds, whatever the user:
an unknown user is checked against a dummy hash of that cost, and a user whose hash is cheaper
gets padding checks on top, so the answer time tells neither which names exist nor their cost.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import os
import re
import secrets
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import anyio.to_thread
import bcrypt

BCRYPT_PREFIXES = ("$2y$", "$2b$", "$2a$")
MAX_PASSWORD_BYTES = 72  # bcrypt looks at no more than this
DEFAULT_COST = 12
#: bcrypt checks running at once per process; leaves cores for everything else
BCRYPT_THREADS = max(1, (os.cpu_count() or 2) // 2)
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$")


@functools.cache
def _dummy_hash(cost: int = DEFAULT_COST) -> bytes:
    """A hash of a random password at `cost`: checked against to spend the same work as a real
    check (see `check_password`). Made on first use, not at import (every `pyreg` command
    imports this module)."""
    return bcrypt.hashpw(secrets.token_bytes(16), bcrypt.gensalt(cost))


def hash_cost(hashed: str) -> int | None:
    """The cost of a `$2y$NN$...` hash, or None when it is not one."""
    raw = hashed[4:6]
    if len(hashed) < 7 or hashed[6] != "$" or not (raw.isascii() and raw.isdigit()):
        return None
    cost = int(raw)
    return cost if 4 <= cost <= 31 else None


def highest_cost(users: dict[str, str]) -> int:
    """The highest cost among the users' hashes (the default when there are none): the work
    every check does."""
    costs = [c for c in (hash_cost(h) for h in users.values()) if c is not None]
    return max(costs, default=DEFAULT_COST)


def credential_id(name: str, hashed: str) -> str:
    """A fingerprint of one htpasswd entry, put into refresh tokens: it changes with the
    password (a new salt too), so a token bound to it ends when the entry changes."""
    return hashlib.sha256(f"pyreg-credential\0{name}\0{hashed}".encode()).hexdigest()[:32]


class HtpasswdError(ValueError):
    """A malformed htpasswd file, user name or password."""


def valid_user_name(name: str) -> bool:
    return bool(_NAME_RE.fullmatch(name)) and name != "anonymous"


def hash_password(password: str, cost: int = DEFAULT_COST) -> str:
    raw = password.encode()
    if not raw:
        raise HtpasswdError("the password is empty")
    if len(raw) > MAX_PASSWORD_BYTES:
        raise HtpasswdError(f"bcrypt passwords are at most {MAX_PASSWORD_BYTES} bytes")
    hashed = bcrypt.hashpw(raw, bcrypt.gensalt(cost)).decode()
    # Apache's htpasswd -B writes $2y$ (same algorithm as $2b$); keep the files alike.
    return "$2y$" + hashed[4:]


def check_password(password: str, hashed: str | None, work_cost: int = DEFAULT_COST) -> bool:
    """Check `password` doing 2**work_cost bcrypt rounds whatever `hashed` is: an unknown user
    (None) or an unreadable hash is checked against a dummy hash of `work_cost`; a hash of cost
    c < work_cost is padded with dummy checks of costs c .. work_cost-1 (2**c + 2**c + ... +
    2**(work_cost-1) = 2**work_cost)."""
    raw = password.encode()[:MAX_PASSWORD_BYTES]
    cost = hash_cost(hashed) if hashed else None
    if hashed is None or cost is None:
        _checkpw(raw, _dummy_hash(work_cost))
        return False
    ok = _checkpw(raw, hashed.encode())
    for padding in range(cost, work_cost):
        _checkpw(raw, _dummy_hash(padding))
    return ok


def _checkpw(raw: bytes, hashed: bytes) -> bool:
    try:
        return bcrypt.checkpw(raw, hashed)
    except ValueError:  # a corrupt hash in the file
        return False


def parse(text: str) -> dict[str, str]:
    users: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        name, sep, hashed = stripped.partition(":")
        if not sep or not name:
            raise HtpasswdError(f"line {number}: expected name:hash")
        if not hashed.startswith(BCRYPT_PREFIXES):
            # Skipped, not fatal: one legacy entry must not lock everybody else out.
            continue
        users[name] = hashed
    return users


class Htpasswd:
    """The users file, reloaded when it changes on disk."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._users: dict[str, str] = {}
        self._work_cost = DEFAULT_COST
        self._stamp: tuple[int, int, int] | None = None
        self._lock = threading.Lock()
        self._limiter: anyio.CapacityLimiter | None = None

    def _refresh(self) -> dict[str, str]:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return {}
        # The inode too: every rewrite is a rename of a new file, and a password change of
        # the same cost keeps the size (and may fall within the mtime's granularity).
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        with self._lock:
            if stamp != self._stamp:
                self._users = parse(self.path.read_text(encoding="utf-8"))
                self._work_cost = highest_cost(self._users)
                self._stamp = stamp
            return self._users

    def users(self) -> dict[str, str]:
        return dict(self._refresh())

    def exists(self, name: str) -> bool:
        return name in self._refresh()

    def credential(self, name: str) -> str | None:
        """`credential_id` of `name`'s current entry, or None when there is no such user."""
        hashed = self._refresh().get(name)
        return credential_id(name, hashed) if hashed is not None else None

    def verify_sync(self, name: str, password: str) -> bool:
        hashed = self._refresh().get(name)
        return check_password(password, hashed, self._work_cost)

    async def verify(self, name: str, password: str) -> bool:
        if self._limiter is None:  # made on first use: it belongs to the running event loop
            self._limiter = anyio.CapacityLimiter(BCRYPT_THREADS)
        return await anyio.to_thread.run_sync(
            self.verify_sync, name, password, limiter=self._limiter
        )


def write_lines(path: Path, lines: list[str]) -> None:
    """Replace the file atomically (temp file in the same directory, fsync, rename), mode 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".htpasswd.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write("".join(f"{line}\n" for line in lines))
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _lines(path: Path) -> list[str]:
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    parse(text)  # refuse to rewrite a file we cannot read
    return text.splitlines()


def _entry_name(line: str) -> str | None:
    stripped = line.strip()
    if not stripped or stripped.startswith("#"):
        return None
    return stripped.partition(":")[0]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialise read-modify-write of the file between concurrent `pyreg user` runs (an
    advisory lock on its directory, so no lock file is left behind)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def set_user(path: Path, name: str, password: str, cost: int = DEFAULT_COST) -> bool:
    """Add or update `name`, keeping every other line; True when the user already existed."""
    if not valid_user_name(name):
        raise HtpasswdError(f"invalid user name: {name!r}")
    entry = f"{name}:{hash_password(password, cost)}"
    with _locked(path):
        lines = _lines(path)
        existed = False
        for index, line in enumerate(lines):
            if _entry_name(line) == name:
                lines[index] = entry
                existed = True
        if not existed:
            lines.append(entry)
        write_lines(path, lines)
    return existed


def remove_user(path: Path, name: str) -> bool:
    """Remove `name`; returns False when there was no such user."""
    with _locked(path):
        lines = _lines(path)
        kept = [line for line in lines if _entry_name(line) != name]
        if len(kept) == len(lines):
            return False
        write_lines(path, kept)
    return True
