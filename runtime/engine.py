"""Container lifecycle: create (image → bundle), run under a monitor, stop, kill, remove, exec.

The monitor is the process that waits for `runc run`: the foreground `pyreg run` itself, or
for `-d` a detached `python -m runtime.monitor` whose output goes to the container's log.
It records the exit code, and whether the cgroup's OOM killer fired, in `container.json`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from puller.netopts import NetOptions
from puller.store import GraphStore
from puller.store.files import force_rmtree
from puller.store.tarsafe import Applier
from runtime import cgroups, rootfs
from runtime.containers import Container, ContainerStore, new_id
from runtime.errors import ContainerError
from runtime.images import resolve_image
from runtime.runc import Runc, rootless, runc_binary
from runtime.seccomp import default_seccomp
from runtime.spec import (
    DEFAULT_CAPS,
    Limits,
    Mount,
    ProcessSpec,
    command_of,
    merge_env,
    runtime_spec,
)
from runtime.users import find_executable, resolve_in_root, resolve_user

STOP_TIMEOUT = 10.0


def seccomp_filter() -> dict[str, Any] | None:
    """Docker's default filter (see runtime.seccomp), or None, said once, without a profile."""
    found = default_seccomp(list(DEFAULT_CAPS))
    if found is None:
        rootfs.say_once("no seccomp profile found (podman's containers-common): no filter")
    return found


@dataclass
class RunOptions:
    image: str
    command: list[str] = field(default_factory=list)
    name: str | None = None
    env: list[str] = field(default_factory=list)
    workdir: str | None = None
    user: str | None = None
    entrypoint: list[str] | None = None
    hostname: str | None = None
    limits: Limits = field(default_factory=Limits)
    network: str = "none"
    volumes: list[Mount] = field(default_factory=list)
    read_only: bool = False
    auto_remove: bool = False
    detach: bool = False
    copy_rootfs: bool = False  # never overlay (the builder's tree-comparison mode)
    net: NetOptions = field(default_factory=NetOptions)  # how a missing image is pulled


@dataclass(frozen=True)
class Exit:
    code: int
    oom_killed: bool


def _check_rootless(opts: RunOptions) -> None:
    limits = opts.limits
    if limits.memory is not None or limits.cpus is not None or limits.pids is not None:
        raise ContainerError(
            "rootless: --memory, --cpus and --pids-limit need root here (cgroups are not "
            "delegated to this user); run as root, or use `podman run` with systemd delegation"
        )


def holder(container_id: str) -> str:
    return f"container-{container_id}"


def parse_volume(value: str) -> Mount:
    parts = value.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1].startswith("/"):
        raise ContainerError(f"invalid volume {value!r}: HOST:CONTAINER[:ro]")
    if len(parts) == 3 and parts[2] not in ("ro", "rw"):
        raise ContainerError(f"invalid volume mode {parts[2]!r}: ro or rw")
    source = os.path.abspath(parts[0])
    if not os.path.exists(source):
        raise ContainerError(f"volume source {source} does not exist")
    return Mount(source, parts[1], len(parts) == 3 and parts[2] == "ro")


class Engine:
    def __init__(self, store: GraphStore, containers: ContainerStore) -> None:
        self.store = store
        self.containers = containers

    def _runc(self) -> Runc:
        return Runc(self.containers.runc_root)

    # -- create ---------------------------------------------------------------------------

    def create(self, opts: RunOptions) -> Container:
        runc_binary()
        as_user = rootless()
        if as_user:
            _check_rootless(opts)
        if opts.name and self.containers.name_taken(opts.name):
            raise ContainerError(f"the container name {opts.name!r} is already in use")
        image = resolve_image(self.store, opts.image, net=opts.net)
        cfg: dict[str, Any] = image.config.raw.get("config") or {}
        args = command_of(cfg, opts.entrypoint, opts.command)
        if not args:
            raise ContainerError("no command specified (the image has no CMD or ENTRYPOINT)")
        cid = new_id()
        bundle = self.containers.dir(cid)
        bundle.mkdir(parents=True)
        self.store.holds.add(holder(cid), image.digest)
        container = Container(
            id=cid,
            name=opts.name or f"pyreg-{cid[:12]}",
            image=opts.image,
            image_digest=str(image.manifest_digest),
            command=args,
            created=time.time(),
            auto_remove=opts.auto_remove,
            detached=opts.detach,
            stop_signal=str(cfg.get("StopSignal") or "SIGTERM"),
        )
        try:
            if as_user:
                rootfs.say_once("rootless: the rootfs is a copy (no overlay mount without root)")
            container.rootfs_mode = rootfs.prepare(
                self.store, image.chains, bundle, copy=opts.copy_rootfs or as_user
            )
            root = bundle / "rootfs"
            env = merge_env(list(cfg.get("Env") or []), opts.env)
            user = resolve_user(root, opts.user or str(cfg.get("User") or "") or "0")
            if not any(e.startswith("HOME=") for e in env):
                env.append(f"HOME={user.home}")
            cwd = opts.workdir or str(cfg.get("WorkingDir") or "") or "/"
            if not cwd.startswith("/"):
                raise ContainerError(f"the working directory {cwd!r} must be absolute")
            if resolve_in_root(root, cwd) is None:  # docker creates a missing workdir
                applier = Applier(root)
                applier.ensure_dir(cwd.strip("/"))
                applier.finish()
            if as_user and (user.uid, user.gid) != (0, 0):
                raise ContainerError(
                    f"rootless: only root (your own uid) is mapped into the container, the "
                    f"user {opts.user or cfg.get('User')!r} cannot run; use -u 0 or run as root"
                )
            find_executable(root, args[0], env, cwd)
            hostname = opts.hostname or cid[:12]
            spec = runtime_spec(
                ProcessSpec(args, env, cwd, user.uid, user.gid, user.additional_gids),
                hostname=hostname,
                network=opts.network,
                readonly=opts.read_only,
                mounts=opts.volumes,
                limits=opts.limits,
                seccomp=seccomp_filter(),
                rootless=(os.geteuid(), os.getegid()) if as_user else None,
            )

            (bundle / "config.json").write_text(json.dumps(spec, indent=2))
            self.containers.save(container)
        except BaseException:
            self._destroy(container)
            raise
        return container

    # -- run ------------------------------------------------------------------------------

    def run(self, opts: RunOptions) -> tuple[Container, Exit | None]:
        """Create and start; how it ended in the foreground, None when detached."""
        container = self.create(opts)
        if opts.detach:
            self._spawn_monitor(container)
            return container, None
        return container, self.monitor(container.id)

    def _spawn_monitor(self, container: Container) -> None:
        log = self.containers.dir(container.id) / "log"
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "runtime.monitor",
                    str(self.containers.root.parent),
                    container.id,
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,
                close_fds=True,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            current = self.containers.load(container.id)
            if current.status != "created":
                return
            if proc.poll() is not None and self.containers.load(container.id).status == "created":
                raise ContainerError(f"the container's monitor failed: see {log}")
            time.sleep(0.05)
        raise ContainerError("the container did not start within 60 s")

    def monitor(self, container_id: str, stdout: IO[Any] | None = None) -> Exit:
        """Run the container with runc and wait for it; record how it ended."""
        container = self.containers.load(container_id)
        runc = self._runc()
        bundle = self.containers.dir(container_id)
        container.status = "running"
        container.started = time.time()
        container.monitor_pid = os.getpid()
        self.containers.save(container)
        stdin = subprocess.DEVNULL if container.detached else None
        proc = runc.run(container_id, bundle, stdin=stdin, stdout=stdout, stderr=stdout)
        # SIGTERM to the monitor stops the container (runc forwards it), rather than leaving
        # it unwatched; Ctrl-C reaches runc through the process group, so just keep waiting.
        previous = signal.signal(signal.SIGTERM, lambda *_: proc.send_signal(signal.SIGTERM))
        try:
            while True:
                try:
                    code = proc.wait()
                    break
                except KeyboardInterrupt:
                    continue
        finally:
            signal.signal(signal.SIGTERM, previous)
        oom = cgroups.oom_killed(container_id)
        runc.delete(container_id)
        container = self.containers.load(container_id)
        container.status = "exited"
        container.exit_code = code
        container.oom_killed = oom
        container.finished = time.time()
        self.containers.save(container)
        if container.auto_remove:
            self._destroy(container)
        return Exit(code, oom)

    # -- state ----------------------------------------------------------------------------

    def refresh(self, container: Container) -> Container:
        """A container whose monitor died is reported as exited (not as running forever)."""
        if container.status != "running" or container.monitor_pid is None:
            return container
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(container.monitor_pid, 0)
            return container
        state = self._runc().state(container.id)
        if state is not None and state.get("status") == "running":
            return container
        container.status = "exited"
        container.finished = container.finished or time.time()
        self.containers.save(container)
        return container

    def _wait_exited(self, container_id: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.refresh(self.containers.load(container_id)).status != "running":
                return True
            time.sleep(0.05)
        return False

    def stop(self, container: Container, timeout: float = STOP_TIMEOUT) -> None:
        if self.refresh(container).status != "running":
            return
        runc = self._runc()
        runc.kill(container.id, container.stop_signal)
        if not self._wait_exited(container.id, timeout):
            runc.kill(container.id, "SIGKILL", all_processes=True)
            self._wait_exited(container.id, 30)

    def kill(self, container: Container, sig: str = "SIGKILL") -> None:
        if self.refresh(container).status != "running":
            raise ContainerError(f"container {container.name} is not running")
        if not self._runc().kill(container.id, sig):
            raise ContainerError(f"could not send {sig} to {container.name}")

    def remove(self, container: Container, force: bool = False) -> None:
        if self.refresh(container).status == "running":
            if not force:
                raise ContainerError(
                    f"container {container.name} is running: stop it first or use -f"
                )
            self._runc().kill(container.id, "SIGKILL", all_processes=True)
            self._wait_exited(container.id, 30)
        self._destroy(container)

    def _destroy(self, container: Container) -> None:
        with contextlib.suppress(ContainerError):
            self._runc().delete(container.id)
        bundle = self.containers.dir(container.id)
        rootfs.unmount(bundle / "rootfs")
        if bundle.exists():
            force_rmtree(bundle)
        self.store.holds.release(holder(container.id))

    def exec(
        self,
        container: Container,
        args: list[str],
        env: list[str],
        workdir: str | None,
        user: str | None,
    ) -> int:
        if self.refresh(container).status != "running":
            raise ContainerError(f"container {container.name} is not running")
        return self._runc().exec(container.id, args, env, workdir, user)


def rootfs_path(containers: ContainerStore, container_id: str) -> Path:
    return containers.dir(container_id) / "rootfs"
