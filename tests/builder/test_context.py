"""builder.context: .dockerignore rules and sources that must stay inside the context."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from builder.context import Ignore, digest_sources, resolve_sources, walk
from builder.errors import BuildError


@pytest.mark.parametrize(
    ("path", "excluded"),
    [
        ("a.log", True),
        ("sub/a.log", False),  # `*` stays within one path element, as in Docker
        ("keep.log", False),  # re-included by `!keep.log`
        ("build", True),
        ("build/deep/x", True),  # below an excluded directory
        ("x/y/z.tmp", True),  # `**`
        ("z.tmp", True),
        ("secret", True),  # leading `/` ignored
        ("docs/a.md", True),
        ("docs/sub/a.md", False),
        ("src/main.py", False),
    ],
)
def test_dockerignore(path: str, excluded: bool) -> None:
    rules = ["# comment", "*.log", "!keep.log", "build/", "**/*.tmp", "/secret", "docs/*.md"]
    assert Ignore(rules).excluded(path) is excluded


@pytest.fixture
def context(tmp_path: Path) -> Path:
    ctx = tmp_path / "ctx"
    (ctx / "dir" / "sub").mkdir(parents=True)
    (ctx / "a.txt").write_text("a")
    (ctx / "b.txt").write_text("b")
    (ctx / "dir" / "sub" / "c").write_text("c")
    (ctx / "dir" / "skip.log").write_text("no")
    (tmp_path / "outside").write_text("secret")
    os.symlink("../outside", ctx / "escape")
    os.symlink("a.txt", ctx / "inside")
    return ctx


def test_globs_and_ignored_files(context: Path) -> None:
    ignore = Ignore(["**/*.log", "b.txt"])
    found = resolve_sources(context, "*.txt", ignore, "COPY")
    assert [s.rel for s in found] == ["a.txt"]
    [d] = resolve_sources(context, "dir", ignore, "COPY")
    assert [rel for rel, _ in walk(d, context, ignore)] == ["", "sub", "sub/c"]


@pytest.mark.parametrize("pattern", ["../outside", "dir/../../outside", "escape"])
def test_sources_leaving_the_context_are_refused(context: Path, pattern: str) -> None:
    with pytest.raises(BuildError, match="outside the build context"):
        resolve_sources(context, pattern, None, "COPY")


def test_a_symlink_inside_the_context_is_followed_only_there(context: Path) -> None:
    [s] = resolve_sources(context, "inside", None, "COPY")
    assert s.path == (context / "a.txt").resolve()


def test_missing_sources(context: Path) -> None:
    with pytest.raises(BuildError, match="no source files"):
        resolve_sources(context, "nope*", None, "COPY")


def test_content_digest_changes_with_content_and_mode(context: Path) -> None:
    [s] = resolve_sources(context, "dir", None, "COPY")
    first = digest_sources(walk(s, context, None))
    assert digest_sources(walk(s, context, None)) == first
    (context / "dir" / "sub" / "c").write_text("C")
    second = digest_sources(walk(s, context, None))
    assert second != first
    (context / "dir" / "sub" / "c").chmod(0o600)
    assert digest_sources(walk(s, context, None)) != second
