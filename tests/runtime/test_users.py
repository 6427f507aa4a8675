"""runtime.users: users and executables looked up inside a rootfs, never outside it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from runtime.errors import CommandNotFound, ContainerError
from runtime.users import find_executable, resolve_in_root, resolve_user


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    (r / "etc").mkdir(parents=True)
    (r / "bin").mkdir()
    (r / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001:app:/home/app:/bin/sh\n"
    )
    (r / "etc" / "group").write_text("root:x:0:\napp:x:1001:\nstaff:x:50:app,other\n")
    tool = r / "bin" / "busybox"
    tool.write_text("#!")
    tool.chmod(0o755)
    os.symlink("busybox", r / "bin" / "sh")
    os.symlink("/bin/busybox", r / "bin" / "abs")
    (r / "bin" / "data").write_text("not executable")
    return r


def test_absolute_symlinks_stay_inside_the_root(root: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("host file")
    os.symlink(str(secret), root / "etc" / "leak")
    os.symlink("../../../../../../", root / "up")
    assert resolve_in_root(root, "/etc/leak") is None  # /tmp/.../secret is not in root
    assert resolve_in_root(root, "/up/etc/passwd") == root / "etc" / "passwd"
    assert resolve_in_root(root, "/bin/abs") == root / "bin" / "busybox"


def test_users_by_name_uid_and_group(root: Path) -> None:
    app = resolve_user(root, "app")
    assert (app.uid, app.gid, app.additional_gids, app.home) == (1000, 1001, [50], "/home/app")
    assert resolve_user(root, "app:staff").gid == 50
    assert (resolve_user(root, "1234:5").uid, resolve_user(root, "1234:5").gid) == (1234, 5)
    assert resolve_user(root, "0").uid == 0
    with pytest.raises(ContainerError, match="unable to find user nobody"):
        resolve_user(root, "nobody")
    with pytest.raises(ContainerError, match="unable to find group"):
        resolve_user(root, "app:nogroup")


def test_find_executable(root: Path) -> None:
    env = ["PATH=/usr/bin:/bin"]
    assert find_executable(root, "sh", env) == "/bin/sh"
    assert find_executable(root, "/bin/abs", env) == "/bin/abs"
    with pytest.raises(CommandNotFound) as info:
        find_executable(root, "missing", env)
    assert info.value.code == 127
    with pytest.raises(CommandNotFound):
        find_executable(root, "data", env)  # present but not executable
