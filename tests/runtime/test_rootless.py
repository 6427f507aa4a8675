"""`pyreg run` as a non-root user: a user namespace maps that user to root in the container.

The test runs pyreg as `nobody` (setpriv), with a PYREG_HOME that user owns, on a real runc.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.runtime.conftest import runc_unusable
from tests.support.busybox import busybox_image
from tests.support.images import write_oci_layout

NOBODY = 65534


@pytest.fixture
def nobody_home() -> Iterator[Path]:
    reason = runc_unusable()
    if reason:
        pytest.skip(reason)
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is needed to run pyreg as another user")
    probe = subprocess.run(
        [
            "setpriv",
            f"--reuid={NOBODY}",
            f"--regid={NOBODY}",
            "--clear-groups",
            "unshare",
            "-Ur",
            "true",
        ],
        capture_output=True,
        check=False,
    )
    if probe.returncode != 0:
        pytest.skip("unprivileged user namespaces are not available here")
    # /tmp/pytest-of-root is 0700: nobody needs a directory of its own
    top = Path(tempfile.mkdtemp(prefix="pyreg-rootless-"))
    os.chown(top, NOBODY, NOBODY)
    write_oci_layout(top / "layout", {"v1": busybox_image()})
    for dirpath, _dirnames, filenames in os.walk(top):
        os.chown(dirpath, NOBODY, NOBODY)
        for name in filenames:
            os.chown(os.path.join(dirpath, name), NOBODY, NOBODY)
    yield top
    subprocess.run(
        ["runc", "--root", str(top / "home" / "runc"), "list", "-q"],
        capture_output=True,
        check=False,
    )
    shutil.rmtree(top, ignore_errors=True)


def _as_nobody(top: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(top), "PYREG_HOME": str(top / "home")}
    setpriv = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    return subprocess.run(
        [*setpriv, sys.executable, "-m", "pyreg", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=Path(__file__).resolve().parents[2],
        timeout=180,
        check=False,
    )


def test_rootless_run_maps_the_user_to_root(nobody_home: Path) -> None:
    top = nobody_home
    loaded = _as_nobody(top, "load", str(top / "layout"), "-r", "localhost/base")
    assert loaded.returncode == 0, loaded.stderr
    done = _as_nobody(
        top, "run", "localhost/base:v1", "sh", "-c", "id -u; ls /sys/class/net; ps -o pid"
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.split()
    assert lines[0] == "0"  # root inside, nobody outside
    assert "rootless: the rootfs is a copy" in done.stderr
    ps = _as_nobody(top, "ps", "-a")
    assert "Exited (0)" in ps.stdout
    code = _as_nobody(top, "run", "--rm", "localhost/base:v1", "sh", "-c", "exit 4")
    assert code.returncode == 4
    limited = _as_nobody(top, "run", "--memory", "64m", "localhost/base:v1", "true")
    assert limited.returncode == 1 and "need root" in limited.stderr
    other = _as_nobody(top, "run", "-u", "app", "localhost/base:v1", "true")
    assert other.returncode == 1 and "only root" in other.stderr
    build = _as_nobody(top, "build", str(top))
    assert build.returncode == 1 and "build needs root" in build.stderr
