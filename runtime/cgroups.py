"""Which cgroup version the host runs, and whether a container was killed by the OOM killer.

runc creates each container's cgroup under the cgroup of the process that runs it (no
`cgroupsPath` in the spec), named after the container id; `runc run --keep` leaves it in
place after the container exits, so its OOM counter can be read before `runc delete`.
"""

from __future__ import annotations

from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def version(root: Path = CGROUP_ROOT) -> int:
    """2 on a unified hierarchy, 1 on a legacy or hybrid one."""
    return 2 if (root / "cgroup.controllers").is_file() else 1


def _own_path(controller: str | None) -> str:
    """This process's cgroup path for a v1 controller, or the v2 path (controller None)."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controller is None and controllers == "":
            return path
        if controller is not None and controller in controllers.split(","):
            return path
    return "/"


def container_dir(container_id: str, root: Path = CGROUP_ROOT) -> Path:
    if version(root) == 2:
        return root / _own_path(None).lstrip("/") / container_id
    return root / "memory" / _own_path("memory").lstrip("/") / container_id


def oom_killed(container_id: str, root: Path = CGROUP_ROOT) -> bool:
    d = container_dir(container_id, root)
    name = "memory.events" if version(root) == 2 else "memory.oom_control"
    try:
        text = (d / name).read_text()
    except OSError:
        return False
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "oom_kill" and value.strip().isdigit():
            return int(value) > 0
    return False
