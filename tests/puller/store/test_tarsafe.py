"""Malicious layers: nothing is ever written outside the layer or rootfs directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from puller.store import GraphStore, assemble_rootfs
from puller.store.tarsafe import Applier, Entry, UnsafeEntry, clean_name, resolve
from tests.support.images import (
    TarEntry,
    build_image,
    chardev,
    dir_,
    file,
    hardlink,
    make_layer,
    make_tar,
    register_image,
    symlink,
)


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    d = tmp_path / "outside"
    d.mkdir()
    (d / "secret").write_bytes(b"secret")
    return d


def _register(store: GraphStore, entries: list[TarEntry]) -> None:
    layer = make_layer(make_tar(entries), "gzip")
    store.content.write_bytes(layer.blob, layer.digest)
    store.layers.register(None, layer.diff_id, layer.digest, layer.media_type)


def _assert_clean(store: GraphStore, outside: Path) -> None:
    assert sorted(os.listdir(outside)) == ["secret"]
    assert (outside / "secret").read_bytes() == b"secret"
    assert store.layers.list() == []
    layers = store.root / "layers"
    assert not layers.exists() or [p for p in os.listdir(layers) if p.startswith(".tmp")] == []


@pytest.mark.parametrize(
    "name",
    ["/abs-escape", "../escape", "a/../../escape", "./../escape", "x/../../../outside/new"],
)
def test_escaping_names_refused(tmp_path: Path, outside: Path, name: str) -> None:
    store = GraphStore(tmp_path / "store")
    with pytest.raises(UnsafeEntry):
        _register(store, [file("fine", b"1"), file(name, b"pwned")])
    _assert_clean(store, outside)
    assert not (tmp_path / "escape").exists() and not (tmp_path / "abs-escape").exists()


@pytest.mark.parametrize("target_kind", ["absolute", "relative"])
def test_write_through_escaping_symlink_refused(
    tmp_path: Path, outside: Path, target_kind: str
) -> None:
    store = GraphStore(tmp_path / "store")
    target = str(outside) if target_kind == "absolute" else "../../../../../../" + str(outside)
    with pytest.raises(UnsafeEntry):
        _register(store, [symlink("evil", target), file("evil/pwned", b"x")])
    _assert_clean(store, outside)


@pytest.mark.parametrize("linkname", ["../outside/secret", "/etc/passwd", "evil/secret"])
def test_hardlink_out_refused(tmp_path: Path, outside: Path, linkname: str) -> None:
    store = GraphStore(tmp_path / "store")
    with pytest.raises(UnsafeEntry):
        _register(store, [symlink("evil", str(outside)), hardlink("h", linkname)])
    _assert_clean(store, outside)


def test_symlink_loop_refused(tmp_path: Path, outside: Path) -> None:
    store = GraphStore(tmp_path / "store")
    with pytest.raises(UnsafeEntry, match="levels"):
        _register(store, [symlink("a", "b"), symlink("b", "a"), file("a/x", b"x")])
    _assert_clean(store, outside)


def test_escape_through_lower_layer_symlink_refused_at_assembly(
    tmp_path: Path, outside: Path
) -> None:
    store = GraphStore(tmp_path / "store")
    image = build_image([[symlink("evil", str(outside))], [file("evil/pwned", b"x")]])
    chain = register_image(store, image)  # each layer alone is harmless
    with pytest.raises(UnsafeEntry):
        assemble_rootfs(store, chain, tmp_path / "rootfs")
    assert sorted(os.listdir(outside)) == ["secret"]


def test_hardlink_through_lower_layer_symlink_refused_at_assembly(
    tmp_path: Path, outside: Path
) -> None:
    store = GraphStore(tmp_path / "store")
    image = build_image([[symlink("evil", str(outside))], [hardlink("h", "evil/secret")]])
    chain = register_image(store, image)
    with pytest.raises(UnsafeEntry):
        assemble_rootfs(store, chain, tmp_path / "rootfs")
    assert not (tmp_path / "rootfs" / "h").exists()
    assert os.stat(outside / "secret").st_nlink == 1


def test_symlinks_pointing_anywhere_are_kept_verbatim(tmp_path: Path) -> None:
    store = GraphStore(tmp_path / "store")
    image = build_image([[symlink("abs", "/etc/passwd"), symlink("up", "../../../x")]])
    assemble_rootfs(store, register_image(store, image), tmp_path / "r")
    assert os.readlink(tmp_path / "r/abs") == "/etc/passwd"
    assert os.readlink(tmp_path / "r/up") == "../../../x"


def test_clean_name() -> None:
    assert clean_name("./a//b/./c") == "a/b/c"
    assert clean_name("./") == ""
    for bad in ("/a", "a/../b", ".."):
        with pytest.raises(UnsafeEntry):
            clean_name(bad)


def test_resolve_follows_inside_links(tmp_path: Path) -> None:
    (tmp_path / "usr/lib").mkdir(parents=True)
    os.symlink("usr/lib", tmp_path / "lib")
    os.symlink("../lib", tmp_path / "usr/up")
    assert resolve(tmp_path, "lib/x") == ["usr", "lib", "x"]
    assert resolve(tmp_path, "usr/up/x") == ["usr", "lib", "x"]
    assert resolve(tmp_path, "lib") == ["lib"]  # the last component is not followed
    os.symlink("../../..", tmp_path / "usr/climb")
    with pytest.raises(UnsafeEntry):
        resolve(tmp_path, "usr/climb/x")


def test_device_nodes_skipped_without_root(tmp_path: Path) -> None:
    applier = Applier(tmp_path, as_root=False)
    entry = chardev("dev/null", 1, 3)
    applier.apply(Entry(entry.name, "chardev", entry.mode, devmajor=1, devminor=3))
    assert applier.skipped == ["dev/null"]
    assert not (tmp_path / "dev/null").exists()


def test_regular_file_replacing_symlink_does_not_write_through(
    tmp_path: Path, outside: Path
) -> None:
    store = GraphStore(tmp_path / "store")
    image = build_image([[symlink("s", str(outside / "secret"))], [file("s", b"overwritten")]])
    assemble_rootfs(store, register_image(store, image), tmp_path / "r")
    assert (outside / "secret").read_bytes() == b"secret"
    assert (tmp_path / "r/s").read_bytes() == b"overwritten"


def _victim_dir(outside: Path) -> Path:
    victim = outside / "sub"
    victim.mkdir()
    os.chmod(victim, 0o700)
    os.utime(victim, (1000, 1000))
    return victim


def _assert_untouched(victim: Path) -> None:
    st = victim.stat()
    assert (oct(st.st_mode & 0o7777), st.st_mtime) == (oct(0o700), 1000.0)


@pytest.mark.parametrize("target_kind", ["absolute", "relative"])
def test_directory_metadata_not_applied_through_a_later_symlink(
    tmp_path: Path, outside: Path, target_kind: str
) -> None:
    """`a/sub/` (mode 0777) then `a` -> outside: the directory's metadata, applied at the end,
    went through the new symlink and chmod'ed (as root: chown'ed) `outside/sub`."""
    victim = _victim_dir(outside)
    store = GraphStore(tmp_path / "store")
    target = str(outside) if target_kind == "absolute" else "../../../../../../" + str(outside)
    try:
        _register(store, [dir_("a/sub", mode=0o777), symlink("a", target)])
    except UnsafeEntry:
        pass  # refusing the layer is fine too; touching outside is not
    _assert_untouched(victim)
    sub_then_link = build_image([[dir_("a/sub", mode=0o777)], [symlink("a", str(outside))]])
    assemble_rootfs(store, register_image(store, sub_then_link), tmp_path / "r")
    _assert_untouched(victim)
    assert os.readlink(tmp_path / "r/a") == str(outside)
