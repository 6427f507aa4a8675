"""Fixtures of the runtime tests: a fresh PYREG_HOME with a busybox base image, and `pyreg`
run as a real process. Skipped with the reason where runc cannot run containers here."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

from puller.store import GraphStore
from tests.support.busybox import busybox_image, busybox_path
from tests.support.images import register_image

BASE = "localhost/base:v1"


@cache
def runc_unusable() -> str | None:
    """Why containers cannot run here, or None (checked once: `runc run` of busybox)."""
    if os.geteuid() != 0:
        return "runc needs root here (rootless mode is not implemented)"
    runc = shutil.which("runc") or ("/usr/sbin/runc" if os.path.exists("/usr/sbin/runc") else None)
    if runc is None:
        return "runc is not installed"
    bb = busybox_path()
    if bb is None:
        return "busybox-static is not installed"
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        bundle = Path(tmp)
        (bundle / "rootfs" / "bin").mkdir(parents=True)
        shutil.copy(bb, bundle / "rootfs" / "bin" / "busybox")
        subprocess.run([runc, "spec"], cwd=bundle, check=True, capture_output=True)
        spec = json.loads((bundle / "config.json").read_text())
        spec["process"]["terminal"] = False
        spec["process"]["args"] = ["/bin/busybox", "true"]
        (bundle / "config.json").write_text(json.dumps(spec))
        done = subprocess.run(
            [runc, "--root", str(bundle / "state"), "run", "--bundle", str(bundle), "pyreg-probe"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if done.returncode != 0:
            return f"runc cannot run a container here: {done.stderr.strip()[:300]}"
    return None


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    reason = runc_unusable()
    if reason:
        pytest.skip(reason)
    root = tmp_path / "pyreg-home"
    store = GraphStore(root)
    register_image(store, busybox_image(), BASE)
    yield root
    _cleanup(root)


def _cleanup(root: Path) -> None:
    """Stop what a failed test left running and unmount rootfs overlays."""
    containers = root / "containers"
    if not containers.is_dir():
        return
    for d in containers.iterdir():
        subprocess.run(
            ["runc", "--root", str(root / "runc"), "delete", "--force", d.name],
            capture_output=True,
            check=False,
        )
        if os.path.ismount(d / "rootfs"):
            subprocess.run(["umount", "-l", str(d / "rootfs")], check=False)


@dataclass
class Pyreg:
    home: Path

    def __call__(
        self,
        *args: str,
        timeout: float = 120,
        check: bool = False,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        full_env = {**os.environ, "PYREG_HOME": str(self.home), **(env or {})}
        done = subprocess.run(
            [sys.executable, "-m", "pyreg", *args],
            capture_output=True,
            text=True,
            env=full_env,
            timeout=timeout,
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"pyreg {' '.join(args)} exited {done.returncode}: {done.stderr}")
        return done


@pytest.fixture
def pyreg(home: Path) -> Pyreg:
    return Pyreg(home)
