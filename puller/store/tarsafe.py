"""Safe application of layer entries to a directory: no write ever lands outside the root.

Used twice: to unpack a layer tar into its own directory in the layer graph (whiteout files
kept as empty marker files, hardlinks to lower layers recorded for later), and to assemble a
rootfs from those directories (whiteouts and opaque directories applied).

Why not `tarfile.extractall(filter="data")`: it cannot express whiteouts, it refuses absolute
symlinks that are normal in images (`/etc/alternatives/...`), and it knows nothing of lower
layers. The rules here:

- entry names are cleaned (leading `./` and `/`-separated `.` dropped); an absolute name or any
  `..` component is refused (`UnsafeEntry`);
- parents are resolved component by component *inside the root*: a symlink on the way is
  followed only when it stays inside (relative, not climbing above the root); an absolute or
  escaping symlink used as a parent is refused;
- the last component is never followed: an existing file, link or directory there is replaced;
- symlinks themselves are created verbatim (they are only data until something follows them);
- hardlink targets are cleaned and resolved like names and must be non-directories inside;
- files are created with O_EXCL|O_NOFOLLOW; device nodes only as root (skipped otherwise);
- ownership only as root; modes and mtimes always; directory metadata last, deepest first,
  so that a read-only directory does not block its own children.

As an ordinary user (what `umoci unpack --rootless` does too): a directory that must be written
into, searched or emptied and lacks `u+rwx` is granted it for the duration, never through a
symlink (only components `resolve` has checked), and its mode is put back by `finish()`. With
`keep_access` (layer directories of a rootless store) directories stay `u+rwx` and files `u+r`
so that later assemblies can read them; the true modes go to `modes` (kept in meta.json).
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from puller.store.errors import LayerError
from puller.store.files import force_rmtree

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
MAX_SYMLINK_HOPS = 40
COPY_CHUNK = 1 << 20


class UnsafeEntry(LayerError):
    """A layer entry that would read or write outside the directory it is applied to."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"refusing unsafe layer entry {path!r}: {reason}")
        self.path = path
        self.reason = reason


def clean_name(name: str) -> str:
    """A tar name as a relative path (`""` for the root itself); refuse absolute and `..`."""
    if name.startswith("/"):
        raise UnsafeEntry(name, "absolute path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeEntry(name, "'..' in path")
    if any("\x00" in p for p in parts):
        raise UnsafeEntry(name, "NUL byte in path")
    return "/".join(parts)


def is_whiteout(basename: str) -> bool:
    return basename.startswith(WHITEOUT_PREFIX)


def resolve(
    root: Path,
    rel: str,
    *,
    follow_last: bool = False,
    grant: Callable[[list[str]], None] | None = None,
    known: set[str] | frozenset[str] = frozenset(),
) -> list[str]:
    """The real components (no symlinks) of `rel` under `root`, following inside links only.

    Missing components are kept as they are (they will be created). Raises UnsafeEntry when a
    symlink to be followed is absolute or climbs above the root, or on a symlink loop.
    `grant(done)` is called for each directory before one of its entries is looked at (so
    that a non-root caller can make it searchable first). `known`: resolved paths the caller
    knows to be real directories (every prefix of one too) that it has made accessible: when
    `rel`'s parent is one, only the last component is looked at (a deep tree must not cost a
    system call per level for every entry).
    """
    parts = [p for p in rel.split("/") if p]
    pending = list(reversed(parts))
    done: list[str] = []
    if len(parts) > 1 and "." not in parts and ".." not in parts:
        parent = "/".join(parts[:-1])
        if parent in known:
            done, pending = parts[:-1], [parts[-1]]
    hops = 0
    while pending:
        comp = pending.pop()
        if comp in ("", "."):
            continue
        if comp == "..":
            if not done:
                raise UnsafeEntry(rel, "a symlink on its path points outside the root")
            done.pop()
            continue
        if grant is not None and done:
            grant(done)
        path = os.path.join(root, "/".join([*done, comp]))
        if (pending or follow_last) and os.path.islink(path):
            hops += 1
            if hops > MAX_SYMLINK_HOPS:
                raise UnsafeEntry(rel, "too many levels of symbolic links")
            target = os.readlink(path)
            if target.startswith("/"):
                raise UnsafeEntry(
                    rel, f"its parent {'/'.join([*done, comp])!r} is an absolute symlink"
                )
            pending.extend(reversed(target.split("/")))
            continue
        done.append(comp)
    return done


@dataclass
class Entry:
    """One filesystem object to apply. `linkname`: a symlink's raw target, or a hardlink's
    cleaned relative target path."""

    path: str
    kind: str  # file, dir, symlink, hardlink, fifo, chardev, blockdev
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    mtime: float = 0.0
    linkname: str = ""
    devmajor: int = 0
    devminor: int = 0
    xattrs: dict[str, bytes] = field(default_factory=dict)


@dataclass
class _DirMeta:
    path: str
    mode: int
    uid: int
    gid: int
    mtime: float
    xattrs: dict[str, bytes]


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        force_rmtree(Path(path))
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def _copy_fd(src: int, dst: int) -> None:
    # copy_file_range keeps the copy in the kernel (and reflinks on btrfs/xfs); fall back
    # to a plain loop where the filesystem pair does not support it.
    try:
        while os.copy_file_range(src, dst, COPY_CHUNK * 64):
            pass
        return
    except OSError:
        os.lseek(src, 0, os.SEEK_SET)
        os.lseek(dst, 0, os.SEEK_SET)
        os.ftruncate(dst, 0)
    while chunk := os.read(src, COPY_CHUNK):
        os.write(dst, chunk)


@dataclass
class Applier:
    """Applies entries under `root`. `as_root`: chown and make device nodes (default: euid 0).

    `keep_access`: leave directories `u+rwx` and files `u+r`, recording in `modes` (resolved
    path -> permission bits) every mode that differs from what is on disk.
    """

    root: Path
    as_root: bool = field(default_factory=lambda: os.geteuid() == 0)
    keep_access: bool = False
    skipped: list[str] = field(default_factory=list)
    implicit_dirs: set[str] = field(default_factory=set)
    modes: dict[str, int] = field(default_factory=dict)
    _dirs: dict[str, _DirMeta] = field(default_factory=dict)
    _granted: dict[str, int] = field(default_factory=dict)
    # resolved paths checked or made real directories (and, as non-root, accessible) by this
    # applier; whatever replaces or removes one drops it and everything below (_forget)
    _known: set[str] = field(default_factory=set)

    def _resolve(self, rel: str, *, follow_last: bool = False) -> list[str]:
        grant = None if self.as_root else self._grant
        return resolve(self.root, rel, follow_last=follow_last, grant=grant, known=self._known)

    def _grant(self, parts: list[str]) -> None:
        """As non-root: give the real directory `parts` u+rwx until `finish()` restores it."""
        if self.as_root or not parts:
            return
        path = os.path.join(self.root, "/".join(parts))
        try:
            st = os.lstat(path)
        except OSError:
            return  # missing (to be created) or its parent is not ours
        if not stat.S_ISDIR(st.st_mode) or st.st_mode & stat.S_IRWXU == stat.S_IRWXU:
            return
        # lstat said directory, and every parent is a checked real directory: no symlink here
        self._granted.setdefault("/".join(parts), stat.S_IMODE(st.st_mode))
        os.chmod(path, stat.S_IMODE(st.st_mode) | stat.S_IRWXU)

    def _target(self, rel: str) -> tuple[str, str]:
        """(resolved relative path, absolute path) for writing `rel`, parents created."""
        parts = self._resolve(rel)
        if not parts:
            raise UnsafeEntry(rel, "cannot replace the root directory")
        self._make_parents(parts[:-1], rel)
        resolved = "/".join(parts)
        return resolved, os.path.join(self.root, resolved)

    def _make_parents(self, parts: list[str], rel: str) -> None:
        if "/".join(parts) in self._known:
            return  # and so is every prefix
        start, prefix = 0, ""
        if len(parts) > 1 and "/".join(parts[:-1]) in self._known:
            start, prefix = len(parts) - 1, "/".join(parts[:-1])  # only the last is new
        for i in range(start, len(parts)):
            comp = parts[i]
            prefix = f"{prefix}/{comp}" if prefix else comp
            if prefix in self._known:
                continue
            current = os.path.join(self.root, prefix)
            try:
                st = os.lstat(current)
            except FileNotFoundError:
                os.mkdir(current, 0o755)
                os.chmod(current, 0o755)
                self.implicit_dirs.add(prefix)
                self._known.add(prefix)
                continue
            if not stat.S_ISDIR(st.st_mode):
                raise LayerError(f"layer entry {rel!r}: {prefix!r} is not a directory")
            self._grant(parts[: i + 1])
            self._known.add(prefix)

    def _owner(self, fd_or_path: int | str, entry: Entry) -> None:
        if self.as_root:
            if isinstance(fd_or_path, int):
                os.fchown(fd_or_path, entry.uid, entry.gid)
            else:
                os.lchown(fd_or_path, entry.uid, entry.gid)

    def apply(self, entry: Entry, content: IO[bytes] | Path | None = None) -> None:
        if entry.kind == "dir":
            self.directory(entry)
            return
        resolved, dst = self._target(entry.path)
        if entry.kind == "hardlink":
            self._hardlink(entry, dst)
            return
        if entry.kind not in ("file", "symlink", "fifo", "chardev", "blockdev"):
            self.skipped.append(entry.path)
            return
        if entry.kind in ("chardev", "blockdev") and not self.as_root:
            # Creating device nodes needs CAP_MKNOD; rootless unpackers skip them too.
            self.skipped.append(entry.path)
            return
        if os.path.lexists(dst):
            _remove(dst)
        # Whatever was below `dst` is gone; its pending directory metadata must go too, or
        # finish() would chmod/chown through a symlink now standing where a directory was.
        self._forget(resolved)
        self.implicit_dirs.discard(resolved)
        if entry.kind == "file":
            self._file(entry, dst, content)
            self._keep_readable(resolved, dst, entry.mode)
        elif entry.kind == "symlink":
            os.symlink(entry.linkname, dst)
            self._owner(dst, entry)
            self._xattrs(dst, entry.path, entry.xattrs)
            os.utime(dst, (entry.mtime, entry.mtime), follow_symlinks=False)
        else:
            if entry.kind == "fifo":
                os.mkfifo(dst, 0o600)
            else:
                kind = stat.S_IFCHR if entry.kind == "chardev" else stat.S_IFBLK
                os.mknod(dst, kind | 0o600, os.makedev(entry.devmajor, entry.devminor))
            self._owner(dst, entry)
            os.chmod(dst, stat.S_IMODE(entry.mode))
            os.utime(dst, (entry.mtime, entry.mtime))

    def _file(self, entry: Entry, dst: str, content: IO[bytes] | Path | None) -> None:
        fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            if isinstance(content, Path):
                src = os.open(content, os.O_RDONLY | os.O_NOFOLLOW)
                try:
                    _copy_fd(src, fd)
                finally:
                    os.close(src)
            elif content is not None:
                while chunk := content.read(COPY_CHUNK):
                    os.write(fd, chunk)
            self._owner(fd, entry)
            # after chown: chown clears setuid/setgid bits and file capabilities
            os.fchmod(fd, stat.S_IMODE(entry.mode))
            self._xattrs(fd, entry.path, entry.xattrs)
            os.utime(fd, (entry.mtime, entry.mtime))
        finally:
            os.close(fd)

    def _keep_readable(self, resolved: str, dst: str, mode: int) -> None:
        mode = stat.S_IMODE(mode)
        if self.keep_access and not mode & stat.S_IRUSR:
            self.modes[resolved] = mode
            os.chmod(dst, mode | stat.S_IRUSR)

    def _xattrs(self, target: int | str, rel: str, xattrs: dict[str, bytes]) -> None:
        for key, value in xattrs.items():
            try:
                if isinstance(target, int):
                    os.setxattr(target, key, value)
                else:
                    os.setxattr(target, key, value, follow_symlinks=False)
            except OSError:
                # Not permitted (security.* without root, user.* on symlinks) or not
                # supported by the filesystem: the file itself is still right.
                self.skipped.append(f"{rel} (xattr {key})")

    def link_target(self, linkname: str) -> str | None:
        """The absolute path a hardlink to `linkname` would point at, or None if absent."""
        parts = self._resolve(clean_name(linkname))
        if not parts:
            raise UnsafeEntry(linkname, "hardlink to the root directory")
        src = os.path.join(self.root, "/".join(parts))
        if not os.path.lexists(src):
            return None
        if os.path.isdir(src) and not os.path.islink(src):
            raise UnsafeEntry(linkname, "hardlink to a directory")
        return src

    def _hardlink(self, entry: Entry, dst: str) -> None:
        src = self.link_target(entry.linkname)
        if src is None:
            raise LayerError(f"hardlink {entry.path!r} -> {entry.linkname!r}: target is missing")
        resolved = os.path.relpath(dst, self.root)
        if os.path.lexists(dst):
            if os.path.samefile(src, dst) if not os.path.islink(dst) else False:
                return
            _remove(dst)
            self._forget(resolved)
        os.link(src, dst, follow_symlinks=False)
        src_mode = self.modes.get(os.path.relpath(src, self.root))
        if src_mode is not None:  # the same inode: the same true mode
            self.modes[resolved] = src_mode

    def directory(self, entry: Entry, *, metadata: bool = True) -> None:
        """Create (or keep) a directory; its metadata is applied by `finish()`."""
        resolved, dst = self._target(entry.path)
        if os.path.lexists(dst) and not (os.path.isdir(dst) and not os.path.islink(dst)):
            _remove(dst)
        if not os.path.lexists(dst):
            os.mkdir(dst, 0o700)
            if not metadata:
                os.chmod(dst, 0o755)
        self._grant(resolved.split("/"))
        self._known.add(resolved)
        if metadata:
            self.implicit_dirs.discard(resolved)
            self._dirs[resolved] = _DirMeta(
                resolved, entry.mode, entry.uid, entry.gid, entry.mtime, entry.xattrs
            )

    def ensure_dir(self, rel: str) -> None:
        """A directory that must exist, without metadata of its own: follow inside symlinks."""
        parts = self._resolve(rel, follow_last=True)
        self._make_parents(parts, rel)

    def remove(self, rel: str) -> None:
        """Whiteout: delete `rel` (whatever it is) if present."""
        parts = self._resolve(rel)
        if not parts:
            return
        path = os.path.join(self.root, "/".join(parts))
        if os.path.lexists(path):
            _remove(path)
        self._forget("/".join(parts))

    def _forget(self, resolved: str) -> None:
        """Drop the pending directory metadata of `resolved` and everything below it."""

        def below(k: str) -> bool:
            return k == resolved or k.startswith(resolved + "/")

        for pending in (self._dirs, self.modes, self._granted):
            for key in [k for k in pending if below(k)]:
                del pending[key]
        # only a known directory has known paths below it (they were reached through it)
        if resolved in self._known:
            self._known.difference_update([k for k in self._known if below(k)])

    def clear(self, rel: str) -> None:
        """Opaque directory: delete everything currently inside `rel`."""
        parts = self._resolve(rel, follow_last=True)
        path = os.path.join(self.root, "/".join(parts))
        if not (os.path.isdir(path) and not os.path.islink(path)):
            return
        self._grant(parts)
        for child in os.listdir(path):
            self.remove("/".join([*parts, child]))

    def finish(self) -> None:
        """Apply directory ownership, modes and mtimes, deepest first; put granted modes back."""
        todo = sorted({*self._dirs, *self._granted}, key=lambda p: p.count("/"), reverse=True)
        for rel in todo:
            path = os.path.join(self.root, rel)
            if not os.path.isdir(path) or (
                rel not in self._known and _through_symlink(self.root, rel)
            ):
                continue  # chmod/chown/utime follow symlinks: never on a path that has one
            meta = self._dirs.get(rel)
            mode = stat.S_IMODE(meta.mode) if meta is not None else self._granted[rel]
            if meta is not None and self.as_root:
                os.lchown(path, meta.uid, meta.gid)
            if self.keep_access and mode & stat.S_IRWXU != stat.S_IRWXU:
                self.modes[rel] = mode
                mode |= stat.S_IRWXU
            elif meta is not None:
                self.modes.pop(rel, None)
            os.chmod(path, mode)
            if meta is not None:
                self._xattrs(path, rel, meta.xattrs)
                os.utime(path, (meta.mtime, meta.mtime))
        self._dirs.clear()
        self._granted.clear()
        self._known.clear()  # modes were put back: nothing is known accessible any more


def _through_symlink(root: Path, rel: str) -> bool:
    """Whether any component of `rel` under `root` (the last one included) is a symlink."""
    current = str(root)
    for comp in rel.split("/"):
        current = os.path.join(current, comp)
        if os.path.islink(current):
            return True
    return False


def iter_tree(root: Path, rel: str = "") -> Iterator[tuple[str, os.DirEntry[str]]]:
    """(relative path, entry) of everything under root, parents before children, sorted.

    Depth-first like a recursive walk, but with an explicit stack: a tree thousands of
    directories deep must not hit Python's recursion limit."""
    stack: list[tuple[str, Iterator[os.DirEntry[str]]]] = [(rel, _sorted_entries(root, rel))]
    while stack:
        parent, entries = stack[-1]
        e = next(entries, None)
        if e is None:
            stack.pop()
            continue
        path = f"{parent}/{e.name}" if parent else e.name
        yield path, e
        if e.is_dir(follow_symlinks=False):
            stack.append((path, _sorted_entries(root, path)))


def _sorted_entries(root: Path, rel: str) -> Iterator[os.DirEntry[str]]:
    with os.scandir(os.path.join(root, rel) if rel else root) as it:
        return iter(sorted(it, key=lambda e: e.name))


__all__ = [
    "OPAQUE_MARKER",
    "WHITEOUT_PREFIX",
    "Applier",
    "Entry",
    "UnsafeEntry",
    "clean_name",
    "is_whiteout",
    "iter_tree",
    "resolve",
]
