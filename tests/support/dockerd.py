"""A Docker engine of the test's own: dockerd under a temporary root (vfs storage, no bridge,
no iptables), so tests neither need nor touch the machine's daemon. Skips when it cannot run."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.processes import stop_process


@dataclass(frozen=True)
class Dockerd:
    root: Path
    env: dict[str, str]  # os.environ plus DOCKER_HOST (and the classic builder: no buildx)

    def run(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["docker", *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )

    def docker(self, *args: str, timeout: float = 600) -> str:
        """Run the docker CLI against this engine; its stdout. Fails the test if it fails."""
        done = self.run(*args, timeout=timeout)
        assert done.returncode == 0, f"docker {' '.join(args)}: {done.stdout}{done.stderr}"
        return done.stdout

    def log(self, tail: int = 600) -> str:
        return (self.root / "dockerd.log").read_text(errors="replace")[-tail:]


@contextmanager
def dockerd(extra_args: Sequence[str] = (), start_timeout: float = 120) -> Iterator[Dockerd]:
    if shutil.which("dockerd") is None or shutil.which("docker") is None:
        pytest.skip("the docker engine (docker.io) is not installed")
    # short: the socket path must fit a sockaddr_un
    root = Path(tempfile.mkdtemp(prefix="pyreg-dk-"))
    sock = root / "docker.sock"
    argv = ["dockerd", "--storage-driver=vfs", "--iptables=false", "--ip6tables=false"]
    argv += ["--bridge=none", "--data-root", str(root / "data"), "--exec-root", str(root / "exec")]
    argv += ["--pidfile", str(root / "dockerd.pid"), "--host", f"unix://{sock}", *extra_args]
    env = {**os.environ, "DOCKER_HOST": f"unix://{sock}", "DOCKER_BUILDKIT": "0"}
    engine = Dockerd(root, env)
    with (root / "dockerd.log").open("wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + start_timeout
            while engine.run("version", timeout=60).returncode != 0:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.skip(f"dockerd cannot start here: {engine.log()}")
                time.sleep(0.5)
            yield engine
        finally:
            stop_process(proc, timeout=60)
            _unmount_under(root)
            # vfs keeps a full copy of the tree per layer (GBs after an image build): removing
            # it took ~1 minute, so it goes on in the background while the suite goes on
            subprocess.Popen(
                ["rm", "-rf", "--one-file-system", str(root)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )


def _unmount_under(root: Path) -> None:
    """dockerd leaves mounts below its roots (exec/netns/default): `umount -R root` does not
    reach them, root itself being no mount point. Deepest first."""
    with open("/proc/self/mounts") as mounts:
        points = [line.split()[1] for line in mounts]
    for point in sorted((p for p in points if p.startswith(f"{root}/")), reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)
