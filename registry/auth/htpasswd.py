"""Users from an htpasswd file with bcrypt hashes (`htpasswd -B`, as the reference registry).

Lines are `name:hash`; blank lines and `#` comments are kept when the file is rewritten.
Only bcrypt (`$2y$`, `$2b$`, `$2a$`) is accepted: the other htpasswd formats (MD5-crypt, SHA1,
crypt) are weak, and distribution refuses them too.

The server re-reads the file when its modification time changes, so `pyreg user add` takes
effect without a restart. bcrypt is slow on purpose: checks run in a worker thread.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
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
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$")


@functools.cache
def _dummy_hash(cost: int = DEFAULT_COST) -> bytes:
    """Checked against when the user is unknown, so that "no such user" takes as long as
    "wrong password" and does not reveal which names exist. Made on first use, not at import
    (every `pyreg` command imports this module). Its cost must be the users' (see
    `usual_cost`): `htpasswd -B` hashes at cost 5, 128 times faster than 12."""
    return bcrypt.hashpw(secrets.token_bytes(16), bcrypt.gensalt(cost))


def hash_cost(hashed: str) -> int | None:
    """The cost of a `$2y$NN$...` hash, or None when it is not one."""
    raw = hashed[4:6]
    if len(hashed) < 7 or hashed[6] != "$" or not (raw.isascii() and raw.isdigit()):
        return None
    cost = int(raw)
    return cost if 4 <= cost <= 31 else None


def usual_cost(users: dict[str, str]) -> int:
    """The most common cost among the users' hashes (the highest on a tie; the default when
    there are none): what an unknown user's check should cost."""
    counts: dict[int, int] = {}
    for hashed in users.values():
        cost = hash_cost(hashed)
        if cost is not None:
            counts[cost] = counts.get(cost, 0) + 1
    if not counts:
        return DEFAULT_COST
    return max(counts, key=lambda c: (counts[c], c))


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


def check_password(password: str, hashed: str | None, dummy_cost: int = DEFAULT_COST) -> bool:
    """Constant-work check; an unknown user (hashed=None) is checked against a dummy hash of
    cost `dummy_cost`."""
    target = hashed.encode() if hashed else _dummy_hash(dummy_cost)
    try:
        ok = bcrypt.checkpw(password.encode()[:MAX_PASSWORD_BYTES], target)
    except ValueError:  # a corrupt hash in the file
        return False
    return ok and hashed is not None


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
        self._dummy_cost = DEFAULT_COST
        self._stamp: tuple[int, int] | None = None
        self._lock = threading.Lock()

    def _refresh(self) -> dict[str, str]:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return {}
        stamp = (st.st_mtime_ns, st.st_size)
        with self._lock:
            if stamp != self._stamp:
                self._users = parse(self.path.read_text(encoding="utf-8"))
                self._dummy_cost = usual_cost(self._users)
                self._stamp = stamp
            return self._users

    def users(self) -> dict[str, str]:
        return dict(self._refresh())

    def exists(self, name: str) -> bool:
        return name in self._refresh()

    def verify_sync(self, name: str, password: str) -> bool:
        hashed = self._refresh().get(name)
        return check_password(password, hashed, self._dummy_cost)

    async def verify(self, name: str, password: str) -> bool:
        return await anyio.to_thread.run_sync(self.verify_sync, name, password)


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
