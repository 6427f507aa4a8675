"""The build context: `.dockerignore`, sources that must stay inside the context, their digest.

`.dockerignore` patterns follow Docker's rules: one pattern a line, `#` comments, paths
relative to the context root (a leading `/` is ignored), `*` and `?` within one path element,
`**` for any number of elements, a later `!pattern` re-includes what an earlier one excluded,
and a directory excluded excludes what is below it.
"""

from __future__ import annotations

import fnmatch
import glob
import hashlib
import os
import posixpath
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from builder.errors import BuildError


def _translate(pattern: str) -> re.Pattern[str]:
    parts = pattern.split("/")
    out: list[str] = []
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if part == "**":
            out.append("(?:.*/)?" if not last else ".*")
            continue
        piece = fnmatch.translate(part)
        # fnmatch's translation lets * cross '/', Docker's does not
        piece = piece.removeprefix("(?s:").removesuffix(")\\Z").replace(".*", "[^/]*")
        out.append(piece + ("" if last else "/"))
    return re.compile("^" + "".join(out) + "$", re.S)


@dataclass(frozen=True)
class _Rule:
    regex: re.Pattern[str]
    exclude: bool


class Ignore:
    def __init__(self, lines: list[str]) -> None:
        self.rules: list[_Rule] = []
        for line in lines:
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            exclude = not text.startswith("!")
            text = text.lstrip("!").strip()
            text = posixpath.normpath(text.lstrip("/")) if text else text
            if not text or text == ".":
                continue
            self.rules.append(_Rule(_translate(text), exclude))

    @classmethod
    def of(cls, context: Path) -> Ignore:
        path = context / ".dockerignore"
        return cls(path.read_text().splitlines() if path.is_file() else [])

    def excluded(self, rel: str) -> bool:
        """Whether the context path `rel` is excluded (itself or through a parent)."""
        parts = rel.split("/")
        result = False
        for rule in self.rules:
            for n in range(1, len(parts) + 1):
                if rule.regex.match("/".join(parts[:n])):
                    result = rule.exclude
                    break
        return result


@dataclass(frozen=True)
class Source:
    rel: str  # path relative to the source root ("" = the root itself)
    path: Path  # host path (symlinks of the source path itself resolved)


def _inside(root: Path, path: Path) -> bool:
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    return real == real_root or real.startswith(real_root + os.sep)


def resolve_sources(root: Path, pattern: str, ignore: Ignore | None, what: str) -> list[Source]:
    """The sources a COPY/ADD argument names under `root` (glob expanded), never outside it."""
    clean = posixpath.normpath("/" + pattern).lstrip("/")
    if posixpath.normpath(pattern.lstrip("/")).startswith("..") or pattern.startswith("../"):
        raise BuildError(f"{what}: {pattern!r} is outside the build context")
    if any(c in clean for c in "*?["):
        matches = sorted(
            m for m in glob.glob(clean, root_dir=root, recursive=False, include_hidden=True)
        )
    else:
        matches = [clean] if clean else [""]
    out: list[Source] = []
    for rel in matches:
        rel = "" if rel in (".", "") else rel
        if rel and ignore is not None and ignore.excluded(rel):
            continue
        path = root / rel if rel else root
        if not os.path.lexists(path):
            continue
        if not _inside(root, path):
            raise BuildError(f"{what}: {rel!r} leads outside the build context (symlink)")
        out.append(Source(rel, Path(os.path.realpath(path))))
    if not out:
        raise BuildError(f"{what}: no source files were specified or found for {pattern!r}")
    return out


def walk(source: Source, root: Path, ignore: Ignore | None) -> list[tuple[str, Path]]:
    """(path relative to the source, host path) of a source and, for a directory, all below
    it (sorted, ignored entries dropped; symlinks below are entries, never followed)."""
    if not source.path.is_dir():
        return [("", source.path)]
    out: list[tuple[str, Path]] = [("", source.path)]
    base_rel = source.rel
    for dirpath, dirnames, filenames in os.walk(source.path):
        dirnames.sort()
        rel_dir = os.path.relpath(dirpath, source.path)
        rel_dir = "" if rel_dir == "." else rel_dir
        keep_dirs = []
        for name in dirnames:
            rel = posixpath.join(rel_dir, name) if rel_dir else name
            ctx_rel = posixpath.join(base_rel, rel) if base_rel else rel
            if ignore is not None and ignore.excluded(ctx_rel):
                continue
            full = Path(dirpath) / name
            out.append((rel, full))
            if not full.is_symlink():
                keep_dirs.append(name)
        dirnames[:] = keep_dirs
        for name in sorted(filenames):
            rel = posixpath.join(rel_dir, name) if rel_dir else name
            ctx_rel = posixpath.join(base_rel, rel) if base_rel else rel
            if ignore is not None and ignore.excluded(ctx_rel):
                continue
            out.append((rel, Path(dirpath) / name))
    return sorted(out)


def digest_sources(entries: list[tuple[str, Path]]) -> str:
    """A digest of names, modes, link targets and contents: the COPY/ADD part of a cache key."""
    h = hashlib.sha256()
    for rel, path in entries:
        st = os.lstat(path)
        h.update(f"{rel}\0{stat.S_IFMT(st.st_mode)}\0{stat.S_IMODE(st.st_mode)}\0".encode())
        if stat.S_ISLNK(st.st_mode):
            h.update(os.readlink(path).encode())
        elif stat.S_ISREG(st.st_mode):
            with open(path, "rb") as f:
                while chunk := f.read(1 << 20):
                    h.update(chunk)
        h.update(b"\n")
    return h.hexdigest()
