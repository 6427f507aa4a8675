"""Lookups inside a container's root filesystem, before it runs: users and executables.

Paths are resolved as the container would see them (absolute symlinks point into the rootfs,
never out of it), so a hostile image cannot make pyreg read host files.
"""

from __future__ import annotations

import os
import posixpath
import stat
from dataclasses import dataclass, field
from pathlib import Path

from runtime.errors import CommandNotFound, ContainerError

MAX_SYMLINKS = 40


def resolve_in_root(root: Path, path: str) -> Path | None:
    """The host path of `path` inside `root`, following symlinks within root; None if absent."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    done: list[str] = []
    hops = 0
    while parts:
        name = parts.pop(0)
        if name == "..":
            if done:
                done.pop()
            continue
        candidate = root.joinpath(*done, name)
        try:
            st = os.lstat(candidate)
        except OSError:
            return None
        if stat.S_ISLNK(st.st_mode):
            hops += 1
            if hops > MAX_SYMLINKS:
                return None
            target = os.readlink(candidate)
            if target.startswith("/"):
                done = []
            parts = [p for p in target.split("/") if p not in ("", ".")] + parts
            continue
        done.append(name)
    return root.joinpath(*done)


@dataclass
class User:
    uid: int
    gid: int
    additional_gids: list[int] = field(default_factory=list)
    home: str = "/"


def _read_db(root: Path, name: str) -> list[list[str]]:
    path = resolve_in_root(root, f"/etc/{name}")
    if path is None or not path.is_file():
        return []
    rows = []
    for line in path.read_text(errors="replace").splitlines():
        if line and not line.startswith("#"):
            rows.append(line.split(":"))
    return rows


def resolve_user(root: Path, spec: str) -> User:
    """`name`, `uid`, `name:group`, `uid:gid` as Docker accepts them for USER and `-u`."""
    user_part, _, group_part = (spec or "0").partition(":")
    passwd = _read_db(root, "passwd")
    groups = _read_db(root, "group")
    uid: int | None = None
    gid: int | None = None
    home = "/"
    username: str | None = None
    for row in passwd:
        if len(row) >= 6 and (row[0] == user_part or (user_part.isdigit() and row[2] == user_part)):
            uid, gid, home, username = int(row[2]), int(row[3]), row[5] or "/", row[0]
            break
    if uid is None:
        if not user_part.isdigit():
            raise ContainerError(f"unable to find user {user_part}: no matching entries in passwd")
        uid, gid = int(user_part), int(user_part) if user_part == "0" else 0
    if group_part:
        if group_part.isdigit():
            gid = int(group_part)
        else:
            found = [r for r in groups if len(r) >= 3 and r[0] == group_part]
            if not found:
                raise ContainerError(f"unable to find group {group_part}")
            gid = int(found[0][2])
    extra = []
    if username is not None:
        for row in groups:
            if len(row) >= 4 and username in row[3].split(",") and row[2].isdigit():
                extra.append(int(row[2]))
    return User(uid, gid or 0, sorted(set(extra) - {gid}), home)


def find_executable(root: Path, command: str, env: list[str], cwd: str = "/") -> str:
    """Where `command` is in the image, as exec would find it; CommandNotFound (127) if not."""
    if "/" in command:
        wanted = command if command.startswith("/") else posixpath.join(cwd, command)
        candidates = [wanted]
    else:
        path_value = next((e[5:] for e in env if e.startswith("PATH=")), "")
        candidates = [posixpath.join(d or ".", command) for d in path_value.split(":")]
    for candidate in candidates:
        host = resolve_in_root(root, candidate)
        if host is not None and host.is_file():
            if os.stat(host).st_mode & 0o111:
                return candidate
    raise CommandNotFound(
        f'exec: "{command}": executable file not found in $PATH'
        if "/" not in command
        else f'exec: "{command}": no such file or directory'
    )
