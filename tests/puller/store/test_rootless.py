"""The store as an ordinary user: layers and rootfs with read-only and unsearchable directories.

The suite runs as root, so each check forks a child that drops to uid/gid 65534 (nobody) after
the modules are loaded, works in a directory owned by that uid, and reports through its exit
status (and a pipe carrying the error text). The result is compared with the same image
assembled as root and, when it runs, with `umoci unpack --rootless` run as the same user.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tempfile
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from puller.store import GraphStore, assemble_rootfs, prune
from puller.store.files import force_rmtree
from puller.store.tarsafe import Applier, Entry, UnsafeEntry
from tests.support.images import (
    Image,
    TarEntry,
    build_image,
    dir_,
    file,
    hardlink,
    opaque,
    register_image,
    snapshot,
    symlink,
    whiteout,
    write_oci_layout,
)

NOBODY = 65534

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to uid 65534")


def locked_layers() -> list[list[TarEntry]]:
    """A lower layer of read-only / unsearchable directories and files, upper layers that
    write into them, delete from them and replace what is in them."""
    base = [
        dir_("proc", 0o555),
        dir_("root", 0o700),
        file("root/.profile", b"p", 0o600),
        dir_("ro", 0o555),
        file("ro/f", b"low", 0o444),
        file("ro/keep", b"keep", 0o400),
        file("ro/target", b"linked", 0o400),
        dir_("ro/sub", 0o500),
        file("ro/sub/x", b"x", 0o444),
        file("ro/sub/y", b"y", 0o444),
        dir_("ro/gone", 0o500),
        dir_("ro/gone/deeper", 0o000),
        file("ro/gone/deeper/z", b"z", 0o000),
        dir_("ro/opq", 0o555),
        file("ro/opq/old", b"old", 0o444),
        dir_("ro/opq/olddir", 0o500),
        file("ro/opq/olddir/o", b"o"),
        dir_("noexec", 0o444),
        file("noexec/a", b"a", 0o444),
        dir_("wonly", 0o300),
        file("wonly/secret", b"s", 0o000),
        symlink("ro/up", ".."),
        file("ro/sub/same", b"1", 0o400),
        dir_("locked", 0o000),
        dir_("locked/in", 0o500),
        file("locked/in/deep", b"d", 0o000),
        hardlink("a-link-to-deep", "locked/in/deep"),  # sorts first: walked before its target
    ]
    upper = [
        file("proc/cpuinfo", b"cpu"),
        file("root/.bashrc", b"rc", 0o600),
        dir_("ro", 0o555),
        file("ro/f", b"new", 0o444),
        file("ro/new", b"n", 0o400),
        whiteout("ro/sub/x"),
        whiteout("ro/gone"),
        opaque("ro/opq"),
        file("ro/opq/fresh", b"fresh", 0o444),
        hardlink("ro/hl", "ro/target"),
        file("noexec/b", b"b"),
        whiteout("noexec/a"),
        file("wonly/more", b"m", 0o000),
        # the same layer makes a read-only directory and then writes into it again
        dir_("late", 0o500),
        file("late/one", b"1", 0o400),
        dir_("late/inner", 0o000),
        file("late/inner/two", b"2", 0o000),
        file("late/one", b"one again", 0o400),
        hardlink("late/one-link", "late/one"),
        file("ro/up/via-link", b"through an inside symlink"),
    ]
    top = [
        dir_("ro/sub", 0o555),
        file("ro/sub/same", b"2", 0o444),
        whiteout("late/inner"),
        dir_("proc", 0o555),
    ]
    return [base, upper, top]


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A directory nobody may write to, outside root's private pytest tmp tree."""
    path = Path(tempfile.mkdtemp(prefix="pyreg-rootless-"))
    closed = [p for p in path.parents if not os.stat(p).st_mode & 0o001]
    if closed:
        os.rmdir(path)
        pytest.skip(f"uid {NOBODY} cannot reach the temp directory ({closed[0]} is not o+x)")
    os.chown(path, NOBODY, NOBODY)
    yield path
    force_rmtree(path)


def as_nobody(work: Callable[[], None]) -> None:
    """Run `work` in a forked child as uid/gid 65534; raise with its error if it failed."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        status = 1
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            work()
            status = 0
        except BaseException:
            os.write(write_end, traceback.format_exc().encode())
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        error = pipe.read().decode()
    _, wait_status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(wait_status)
    assert code == 0, f"child as uid {NOBODY} failed (exit {code}):\n{error}"


def _assemble(store_dir: Path, image: Image, target: Path) -> None:
    store = GraphStore(store_dir)
    assemble_rootfs(store, register_image(store, image, "example.com/a:v1"), target)


def _as_root_snapshot(workdir: Path, image: Image) -> dict[str, tuple[object, ...]]:
    _assemble(workdir / "root-store", image, workdir / "root-rootfs")
    return snapshot(workdir / "root-rootfs")


def test_layers_and_rootfs_as_nobody_match_root(workdir: Path) -> None:
    image = build_image(locked_layers())
    expected = _as_root_snapshot(workdir, image)
    as_nobody(lambda: _assemble(workdir / "store", image, workdir / "rootfs"))
    mine = snapshot(workdir / "rootfs")
    assert mine == expected
    # the comparison saw every rule at work
    assert (workdir / "rootfs/ro/f").read_bytes() == b"new"
    assert "ro/sub/x" not in mine and "ro/gone" not in mine and "noexec/a" not in mine
    assert sorted(p for p in mine if p.startswith("ro/opq/")) == ["ro/opq/fresh"]
    assert mine["ro/hl"][5] is True and mine["late/one-link"][5] is True
    assert mine["a-link-to-deep"][1] == "0o0" and mine["a-link-to-deep"][5] is True
    assert mine["ro"][1] == "0o555" and mine["wonly"][1] == "0o300"
    assert "late/inner" not in mine and mine["locked"][1] == "0o0"
    assert (workdir / "rootfs/via-link").read_bytes() == b"through an inside symlink"
    assert os.stat(workdir / "rootfs/ro/f").st_uid == NOBODY


def test_assembling_again_over_a_locked_tree(workdir: Path) -> None:
    """The second pass finds every read-only directory in place (granted, then restored)."""
    image = build_image(locked_layers())
    expected = _as_root_snapshot(workdir, image)

    def twice() -> None:
        _assemble(workdir / "store", image, workdir / "rootfs")
        _assemble(workdir / "store", image, workdir / "rootfs")

    as_nobody(twice)
    assert snapshot(workdir / "rootfs") == expected


def test_rootless_layer_records_true_modes(workdir: Path) -> None:
    image = build_image(locked_layers())
    as_nobody(lambda: _assemble(workdir / "store", image, workdir / "rootfs"))
    records = GraphStore(workdir / "store").layers.list()
    lowest = next(r for r in records if r.parent is None)
    # on disk the owner keeps access; the record holds what the image says
    assert lowest.modes["locked"] == 0o000 and lowest.modes["locked/in/deep"] == 0o000
    assert lowest.modes["ro"] == 0o555 and lowest.modes["wonly"] == 0o300
    assert "ro/f" not in lowest.modes and "root" not in lowest.modes  # 0444, 0700: readable
    assert os.stat(lowest.unpacked_dir / "locked").st_mode & 0o777 == 0o700
    assert os.stat(lowest.unpacked_dir / "locked/in/deep").st_mode & 0o777 == 0o400


def test_applier_grants_and_restores_in_an_existing_tree(workdir: Path) -> None:
    """Whiteouts, opaque dirs and new files inside directories the owner may not write to
    (or search) before the Applier starts; every mode is what it was afterwards."""
    root = workdir / "tree"
    for rel in ("", "ro", "ro/opq", "ro/opq/d"):
        (root / rel).mkdir(exist_ok=True)
    (root / "ro/f").write_bytes(b"old")
    (root / "ro/opq/x").write_bytes(b"x")
    (root / "link").symlink_to("ro")
    for rel, mode in [("ro/f", 0o444), ("ro/opq/d", 0o000), ("ro/opq", 0o500), ("ro", 0o555)]:
        os.chmod(root / rel, mode)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [dirpath, *(os.path.join(dirpath, n) for n in dirnames + filenames)]:
            os.chown(name, NOBODY, NOBODY, follow_symlinks=False)

    def work() -> None:
        applier = Applier(root)
        assert not applier.as_root
        applier.apply(Entry("ro/f", "file", 0o444), io.BytesIO(b"new"))
        applier.apply(Entry("link/added", "file", 0o400), io.BytesIO(b"via link"))
        applier.clear("ro/opq")
        applier.remove("ro/missing")
        applier.finish()

    as_nobody(work)
    assert (root / "ro/f").read_bytes() == b"new" and (root / "ro/added").exists()
    assert os.listdir(root / "ro/opq") == []
    assert [os.stat(root / r).st_mode & 0o777 for r in ("ro", "ro/opq")] == [0o555, 0o500]
    assert (root / "link").is_symlink()


def test_rmi_prune_and_removing_a_rootfs_as_nobody(workdir: Path) -> None:
    image = build_image(locked_layers())

    def pull_unpack_forget() -> None:
        store = GraphStore(workdir / "store")
        _assemble(workdir / "store", image, workdir / "rootfs")
        force_rmtree(workdir / "rootfs")  # what a user does to a rootfs they are done with
        assert store.images.remove("example.com/a:v1")
        report = prune(store)
        assert len(report.layers) == 3 and store.layers.list() == []

    as_nobody(pull_unpack_forget)
    assert not (workdir / "rootfs").exists()
    layer_dirs = workdir / "store/layers/sha256"
    assert not layer_dirs.exists() or list(layer_dirs.iterdir()) == []


def test_force_rmtree_of_a_root_made_layer_tree_as_nobody(workdir: Path) -> None:
    """A tree with 0000/0300/0555 directories, as root's assembly leaves it, chowned to the
    user (as if they had made it): force_rmtree gets through all of it."""
    image = build_image(locked_layers())
    _assemble(workdir / "root-store", image, workdir / "tree")
    for dirpath, dirnames, filenames in os.walk(workdir / "tree"):
        for name in [dirpath, *(os.path.join(dirpath, n) for n in dirnames + filenames)]:
            os.chown(name, NOBODY, NOBODY, follow_symlinks=False)
    as_nobody(lambda: force_rmtree(workdir / "tree"))
    assert not (workdir / "tree").exists()


def test_nothing_is_granted_or_written_through_a_symlink(workdir: Path) -> None:
    """A read-only directory outside the target, reached by a layer's absolute symlink, keeps
    its mode and stays empty: the entry is refused as before."""
    outside = workdir / "outside"
    outside.mkdir(mode=0o555)
    os.chown(outside, NOBODY, NOBODY)
    os.chmod(outside, 0o555)
    image = build_image(
        [[symlink("esc", str(outside)), dir_("d", 0o555)], [file("esc/x", b"evil")]]
    )

    def attempt() -> None:
        with pytest.raises(UnsafeEntry):
            _assemble(workdir / "store", image, workdir / "rootfs")

    as_nobody(attempt)
    assert os.stat(outside).st_mode & 0o777 == 0o555 and os.listdir(outside) == []


def test_same_as_umoci_unpack_rootless_as_nobody(workdir: Path) -> None:
    umoci, setpriv = shutil.which("umoci"), shutil.which("setpriv")
    if umoci is None or setpriv is None:
        pytest.skip("umoci or setpriv (util-linux) is not installed")
    image = build_image(locked_layers())
    write_oci_layout(workdir / "layout", {"v1": image})
    for dirpath, dirnames, filenames in os.walk(workdir / "layout"):
        for name in [dirpath, *(os.path.join(dirpath, n) for n in dirnames + filenames)]:
            os.chown(name, NOBODY, NOBODY)
    drop = [setpriv, "--reuid", str(NOBODY), "--regid", str(NOBODY), "--clear-groups"]
    done = subprocess.run(
        [
            *drop,
            umoci,
            "unpack",
            "--rootless",
            "--image",
            f"{workdir}/layout:v1",
            str(workdir / "bundle"),
        ],
        capture_output=True,
        text=True,
        cwd=workdir,
    )
    if done.returncode != 0:
        pytest.skip(f"umoci unpack --rootless does not run as uid {NOBODY}: {done.stderr}")
    as_nobody(lambda: _assemble(workdir / "store", image, workdir / "rootfs"))
    assert snapshot(workdir / "rootfs") == snapshot(workdir / "bundle/rootfs")


def test_cli_load_unpack_rmi_prune_as_nobody(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The commands a user runs, end to end in the store (`pyreg load` stands in for `pull`:
    the network side is the same for root and not)."""
    import pyreg.cli

    image = build_image(locked_layers())
    expected = _as_root_snapshot(workdir, image)
    write_oci_layout(workdir / "layout", {"v1": image})
    for dirpath, dirnames, filenames in os.walk(workdir / "layout"):
        for name in [dirpath, *(os.path.join(dirpath, n) for n in dirnames + filenames)]:
            os.chown(name, NOBODY, NOBODY)

    def load_and_unpack(home: Path, rootfs: Path) -> None:
        os.environ["PYREG_HOME"] = str(home)
        assert pyreg.cli.main(["load", str(workdir / "layout"), "-r", "example.com/a"]) == 0
        assert pyreg.cli.main(["unpack", "example.com/a:v1", str(rootfs)]) == 0

    def forget(home: Path) -> None:
        os.environ["PYREG_HOME"] = str(home)
        assert pyreg.cli.main(["rmi", "example.com/a:v1"]) == 0
        assert pyreg.cli.main(["prune"]) == 0

    # The same commands as root first, in a home of their own: the commands import modules as
    # they need them (the standard library's too), and the child cannot read an interpreter
    # installed under /root, so everything they import is loaded before the fork. (Without
    # it this test passed only when earlier tests happened to have imported those modules.)
    warm = Path(tempfile.mkdtemp(prefix="pyreg-rootless-warm-"))
    monkeypatch.setenv("PYREG_HOME", str(warm / "home"))  # given back after the test
    try:
        load_and_unpack(warm / "home", warm / "rootfs")
        forget(warm / "home")
    finally:
        force_rmtree(warm)

    as_nobody(lambda: load_and_unpack(workdir / "home", workdir / "rootfs"))
    assert snapshot(workdir / "rootfs") == expected
    as_nobody(lambda: forget(workdir / "home"))
    assert GraphStore(workdir / "home").layers.list() == []
    assert list((workdir / "home/layers/sha256").iterdir()) == []
