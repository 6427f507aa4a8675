"""Rootfs assembly: whiteouts, opaque dirs, links; identical to what `umoci unpack` makes."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from ocispec.digest import digest_bytes
from puller.store import GraphStore, NotInStore, assemble_rootfs
from tests.support.images import (
    build_image,
    chardev,
    dir_,
    file,
    hardlink,
    opaque,
    register_image,
    sample_layers,
    snapshot,
    symlink,
    tricky_layers,
    whiteout,
    write_oci_layout,
)


def _assemble(tmp_path: Path, layers: list, compression: str = "gzip") -> Path:  # type: ignore[type-arg]
    store = GraphStore(tmp_path / "store")
    chain = register_image(store, build_image(layers, compression))
    target = tmp_path / "rootfs"
    assemble_rootfs(store, chain, target)
    return target


@pytest.mark.interop
@pytest.mark.parametrize("compression", ["gzip", ""])
@pytest.mark.parametrize("rootless", [False, True])
@pytest.mark.parametrize("layers", ["sample", "tricky"])
def test_identical_to_umoci_unpack(
    tmp_path: Path, compression: str, rootless: bool, layers: str
) -> None:
    umoci = shutil.which("umoci")
    if umoci is None:
        pytest.skip("umoci is not installed (Debian package umoci)")
    if not rootless and os.geteuid() != 0:
        pytest.skip("umoci unpack without --rootless needs root")
    image = build_image(sample_layers() if layers == "sample" else tricky_layers(), compression)
    write_oci_layout(tmp_path / "layout", {"v1": image})
    cmd = [umoci, "unpack", *(["--rootless"] if rootless else []), "--image"]
    subprocess.run(
        [*cmd, f"{tmp_path}/layout:v1", str(tmp_path / "bundle")],
        check=True,
        capture_output=True,
    )
    store = GraphStore(tmp_path / "store")
    assemble_rootfs(store, register_image(store, image), tmp_path / "mine")

    theirs = snapshot(tmp_path / "bundle" / "rootfs")
    mine = snapshot(tmp_path / "mine")
    assert mine == theirs
    if layers == "tricky":
        assert mine["was-dir"][0] == stat.S_IFREG and "target/keep" in mine
        assert "link-to-dir" not in mine and "nest/a/x" not in mine
        assert mine["with-xattr"][6] == (("user.note", b"hello"),)
        return
    # the sample exercises every rule: make sure the comparison saw them
    assert "etc/hostname" in mine and "opt/app/old.txt" not in mine
    assert "var/cache/big" not in mine and "etc/dangling" not in mine
    assert mine["etc/passwd-link"][5] is True


def test_whiteout_and_opaque(tmp_path: Path) -> None:
    root = _assemble(
        tmp_path,
        [
            [file("a/keep", b"1"), file("a/gone", b"2"), file("b/x", b"3"), file("c", b"4")],
            [whiteout("a/gone"), opaque("b"), file("b/y", b"5"), whiteout("c")],
        ],
    )
    assert (root / "a/keep").read_bytes() == b"1"
    assert not (root / "a/gone").exists()
    assert sorted(os.listdir(root / "b")) == ["y"]
    assert not (root / "c").exists()
    assert not any(n.startswith(".wh.") for _, _, fs in os.walk(root) for n in fs)


def test_whiteout_does_not_hide_same_layer_file(tmp_path: Path) -> None:
    root = _assemble(tmp_path, [[file("d/f", b"low")], [file("d/f", b"new"), whiteout("d/f")]])
    assert (root / "d/f").read_bytes() == b"new"


def test_whiteout_of_directory_and_recreate(tmp_path: Path) -> None:
    root = _assemble(
        tmp_path,
        [[dir_("d", 0o700), file("d/x", b"x")], [whiteout("d")], [file("d/y", b"y")]],
    )
    assert sorted(os.listdir(root / "d")) == ["y"]
    assert oct((root / "d").stat().st_mode & 0o777) == oct(0o755)


def test_file_replaces_directory_and_symlink(tmp_path: Path) -> None:
    root = _assemble(
        tmp_path,
        [[file("p/q", b"1"), symlink("s", "p")], [file("p", b"file"), file("s", b"too")]],
    )
    assert (root / "p").read_bytes() == b"file"
    assert not (root / "s").is_symlink() and (root / "s").read_bytes() == b"too"


def test_writes_through_lower_symlinked_directory(tmp_path: Path) -> None:
    # merged-/usr images: /lib -> usr/lib; a later layer writing lib/x lands in usr/lib/x
    root = _assemble(
        tmp_path,
        [[dir_("usr"), dir_("usr/lib"), symlink("lib", "usr/lib")], [file("lib/x", b"x")]],
    )
    assert (root / "lib").is_symlink()
    assert (root / "usr/lib/x").read_bytes() == b"x"


def test_hardlinks_within_layer_stay_linked(tmp_path: Path) -> None:
    root = _assemble(tmp_path, [[file("a", b"data", 0o751), hardlink("b", "a")]])
    assert os.path.samefile(root / "a", root / "b")
    assert (root / "b").stat().st_mode & 0o777 == 0o751


def test_hardlink_to_lower_layer(tmp_path: Path) -> None:
    root = _assemble(tmp_path, [[file("a", b"data")], [hardlink("b", "a")]])
    assert os.path.samefile(root / "a", root / "b")


def test_modes_mtimes_and_symlinks(tmp_path: Path) -> None:
    root = _assemble(
        tmp_path,
        [[dir_("ro", 0o555), file("ro/f", b"x", 0o400, mtime=1234), symlink("ro/l", "/abs")]],
    )
    assert (root / "ro").stat().st_mode & 0o777 == 0o555
    assert (root / "ro/f").stat().st_mode & 0o777 == 0o400
    assert (root / "ro/f").stat().st_mtime == 1234
    assert os.readlink(root / "ro/l") == "/abs"


@pytest.mark.skipif(os.geteuid() != 0, reason="ownership and device nodes need root")
def test_ownership_and_devices_as_root(tmp_path: Path) -> None:
    root = _assemble(
        tmp_path, [[file("owned", b"o", uid=1234, gid=4321), chardev("dev/null", 1, 3)]]
    )
    st = (root / "owned").stat()
    assert (st.st_uid, st.st_gid) == (1234, 4321)
    assert os.major((root / "dev/null").lstat().st_rdev) == 1


def test_missing_layer(tmp_path: Path) -> None:
    with pytest.raises(NotInStore):
        assemble_rootfs(GraphStore(tmp_path), [digest_bytes(b"nope")], tmp_path / "r")


def test_layer_shared_between_images_is_unpacked_once(tmp_path: Path) -> None:
    store = GraphStore(tmp_path / "store")
    base = [file("base", b"shared")]
    one = register_image(store, build_image([base, [file("one", b"1")]]))
    two = register_image(store, build_image([base, [file("two", b"2")]]))
    assert one[0] == two[0] and one[1] != two[1]
    assert len(store.layers.list()) == 3
    record = store.layers.get(one[0])
    assert record is not None
    inode = (record.unpacked_dir / "base").stat().st_ino
    register_image(store, build_image([base]))  # no re-unpack of a known chainID
    assert (record.unpacked_dir / "base").stat().st_ino == inode
    assemble_rootfs(store, two, tmp_path / "r2")
    assert sorted(os.listdir(tmp_path / "r2")) == ["base", "two"]


def test_extended_attributes(tmp_path: Path) -> None:
    probe = tmp_path / "probe"
    probe.write_bytes(b"")
    try:
        os.setxattr(probe, "user.probe", b"1")
    except OSError:
        pytest.skip("this filesystem does not support user extended attributes")
    root = _assemble(
        tmp_path,
        [
            [
                file("f", b"x", xattrs=(("user.one", "1"),)),
                dir_("d", xattrs=(("user.dir", "yes"),)),
            ]
        ],
    )
    assert os.getxattr(root / "f", "user.one") == b"1"
    assert os.getxattr(root / "d", "user.dir") == b"yes"


def test_degenerate_whiteout_names_do_not_remove_parents(tmp_path: Path) -> None:
    root = _assemble(
        tmp_path,
        [[file("a/b/keep", b"k")], [file("a/b/.wh.", mode=0o600), file("a/b/.wh..", mode=0o600)]],
    )
    assert (root / "a/b/keep").read_bytes() == b"k"
