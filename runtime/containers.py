"""Container records: `$PYREG_HOME/containers/<id>/` with `container.json`, the bundle's
`config.json`, `rootfs/` (mount point or copy), `diff/` + `work/` (overlay upper and work
directories) and `log` (output of a detached container).

`container.json` is written whole and atomically by whoever changes the state: the command
that creates the container, then its monitor (the foreground `pyreg run`, or the detached
monitor process) when it starts and when it exits.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from puller.store.files import atomic_write
from runtime.errors import ContainerError, NoSuchContainer


@dataclass
class Container:
    id: str
    name: str
    image: str  # the name it was run by
    image_digest: str  # manifest digest the name pointed to
    command: list[str]
    created: float
    status: str = "created"  # created | running | exited
    exit_code: int | None = None
    oom_killed: bool = False
    started: float | None = None
    finished: float | None = None
    rootfs_mode: str = "overlay"  # overlay | copy
    auto_remove: bool = False
    detached: bool = False
    monitor_pid: int | None = None
    stop_signal: str = "SIGTERM"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def short_id(self) -> str:
        return self.id[:12]


def new_id() -> str:
    return secrets.token_hex(32)


class ContainerStore:
    def __init__(self, pyreg_home: Path) -> None:
        self.root = Path(pyreg_home) / "containers"
        self.runc_root = Path(pyreg_home) / "runc"

    def dir(self, container_id: str) -> Path:
        return self.root / container_id

    def save(self, c: Container) -> None:
        atomic_write(self.dir(c.id) / "container.json", json.dumps(asdict(c), indent=2).encode())

    def load(self, container_id: str) -> Container:
        try:
            raw = json.loads((self.dir(container_id) / "container.json").read_bytes())
        except FileNotFoundError:
            raise NoSuchContainer(f"no such container: {container_id}") from None
        except ValueError as exc:
            raise ContainerError(f"container {container_id}: unreadable record: {exc}") from None
        return Container(**raw)

    def list(self) -> list[Container]:
        out: list[Container] = []
        if not self.root.is_dir():
            return out
        for d in sorted(self.root.iterdir()):
            if (d / "container.json").is_file():
                try:
                    out.append(self.load(d.name))
                except ContainerError:
                    continue
        return sorted(out, key=lambda c: c.created, reverse=True)

    def find(self, key: str) -> Container:
        """By name, full id or unique id prefix (as docker does)."""
        containers = self.list()
        for c in containers:
            if c.name == key or c.id == key:
                return c
        matches = [c for c in containers if key and c.id.startswith(key)]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise ContainerError(f"{key} matches more than one container")
        raise NoSuchContainer(f"no such container: {key}")

    def name_taken(self, name: str) -> bool:
        return any(c.name == name for c in self.list())
