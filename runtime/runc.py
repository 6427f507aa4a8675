"""The runc command line, as pyreg uses it: one function per runc command.

Each container's runc state lives under `$PYREG_HOME/runc` (`runc --root`), never in the
system-wide /run/runc, so pyreg's containers are its own.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from runtime.errors import ContainerError, NotPermitted


def runc_binary() -> str:
    """runc's path: `$PYREG_RUNC`, else `runc` on PATH, else /usr/sbin/runc."""
    configured = os.environ.get("PYREG_RUNC")
    found = configured or shutil.which("runc") or "/usr/sbin/runc"
    if not (os.path.isfile(found) and os.access(found, os.X_OK)):
        where = f" (PYREG_RUNC={configured})" if configured else ""
        raise ContainerError(
            f"runc is not installed{where}: pyreg runs containers with runc "
            "(Debian/Ubuntu: apt-get install runc)"
        )
    return found


def check_privileges() -> None:
    """Building needs root: rootless builds are not implemented."""
    if os.geteuid() != 0:
        raise NotPermitted(
            "pyreg build needs root here (RUN steps, layer owners); rootless builds are not "
            "implemented: use `buildah bud` or `podman build` meanwhile"
        )


def rootless() -> bool:
    return os.geteuid() != 0


class Runc:
    def __init__(self, state_root: Path) -> None:
        self.binary = runc_binary()
        self.root = Path(state_root)

    def _cmd(self, *args: str) -> list[str]:
        return [self.binary, "--root", str(self.root), *args]

    def run(
        self,
        container_id: str,
        bundle: Path,
        stdin: int | IO[Any] | None = None,
        stdout: int | IO[Any] | None = None,
        stderr: int | IO[Any] | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start `runc run --keep` (kept: the cgroup stays readable until `delete`)."""
        self.root.mkdir(parents=True, exist_ok=True)
        return subprocess.Popen(
            self._cmd("run", "--keep", "--bundle", str(bundle), container_id),
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
        )

    def state(self, container_id: str) -> dict[str, Any] | None:
        done = subprocess.run(self._cmd("state", container_id), capture_output=True, check=False)
        if done.returncode != 0:
            return None
        try:
            parsed = json.loads(done.stdout)
        except ValueError:
            return None
        return parsed if isinstance(parsed, dict) else None

    def kill(self, container_id: str, signal: str = "SIGTERM", all_processes: bool = False) -> bool:
        args = ["kill", *(["--all"] if all_processes else []), container_id, signal]
        done = subprocess.run(self._cmd(*args), capture_output=True, check=False)
        return done.returncode == 0

    def delete(self, container_id: str) -> None:
        subprocess.run(
            self._cmd("delete", "--force", container_id), capture_output=True, check=False
        )

    def exec(
        self,
        container_id: str,
        args: Sequence[str],
        env: Sequence[str] = (),
        cwd: str | None = None,
        user: str | None = None,
    ) -> int:
        cmd = ["exec"]
        for item in env:
            cmd += ["--env", item]
        if cwd:
            cmd += ["--cwd", cwd]
        if user:
            cmd += ["--user", user]
        return subprocess.run(self._cmd(*cmd, container_id, *args), check=False).returncode
