"""`pyreg run | ps | logs | stop | kill | rm | exec`: parsing, output and exit codes only.

Expected failures print one line `pyreg: error: ...` and exit 1, or 127 for a command that
is not in the image (as docker does); a container's own exit code is passed through.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any

from ocispec.digest import DigestError
from ocispec.models import ManifestError
from ocispec.reference import ReferenceError
from puller.netopts import NetOptions, add_network_arguments
from puller.store import GraphStore, StoreError
from runtime.containers import Container, ContainerStore
from runtime.engine import Engine, RunOptions, parse_volume
from runtime.errors import ContainerError
from runtime.spec import Limits, parse_size

Handler = Callable[[argparse.Namespace], int]


def _engine() -> Engine:
    store = GraphStore.default()
    return Engine(store, ContainerStore(store.root))


def _guard(handler: Handler) -> Handler:
    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except ContainerError as exc:
            print(f"pyreg: error: {exc}", file=sys.stderr)
            return exc.code
        except (StoreError, ReferenceError, DigestError, ManifestError, OSError, ValueError) as exc:
            print(f"pyreg: error: {exc}", file=sys.stderr)
            return 1

    return run


def cmd_run(args: argparse.Namespace) -> int:
    limits = Limits(
        memory=parse_size(args.memory) if args.memory else None,
        cpus=args.cpus,
        pids=args.pids_limit,
    )
    if args.cpus is not None and args.cpus <= 0:
        raise ContainerError("--cpus must be positive")
    opts = RunOptions(
        image=args.image,
        command=list(args.command),
        name=args.name,
        env=list(args.env or []),
        workdir=args.workdir,
        user=args.user,
        entrypoint=[args.entrypoint] if args.entrypoint is not None else None,
        hostname=args.hostname,
        limits=limits,
        network=args.network,
        volumes=[parse_volume(v) for v in args.volume or []],
        read_only=args.read_only,
        auto_remove=args.rm,
        detach=args.detach,
        net=NetOptions.from_args(args),
    )
    engine = _engine()
    container, ended = engine.run(opts)
    if ended is None:
        print(container.id)
        return 0
    if ended.oom_killed:
        print(f"pyreg: container {container.name}: killed: out of memory", file=sys.stderr)
    return ended.code


def _ago(t: float | None) -> str:
    if t is None:
        return "-"
    s = max(0, int(time.time() - t))
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if s >= size:
            return f"{s // size} {unit} ago"
    return f"{s} seconds ago"


def status_text(c: Container) -> str:
    if c.status == "running":
        return f"Up {_ago(c.started).removesuffix(' ago')}"
    if c.status == "exited":
        oom = " (out of memory)" if c.oom_killed else ""
        code = "?" if c.exit_code is None else str(c.exit_code)
        return f"Exited ({code}){oom} {_ago(c.finished)}"
    return "Created"


def cmd_ps(args: argparse.Namespace) -> int:
    engine = _engine()
    rows = []
    for c in engine.containers.list():
        c = engine.refresh(c)
        if not args.all and c.status != "running":
            continue
        if args.quiet:
            print(c.short_id)
            continue
        command = " ".join(c.command)
        command = command if len(command) <= 30 else command[:27] + "..."
        exit_code = "" if c.exit_code is None else str(c.exit_code)
        rows.append(
            (
                c.short_id,
                c.image,
                f'"{command}"',
                _ago(c.created),
                status_text(c),
                exit_code,
                c.name,
            )
        )
    if args.quiet:
        return 0
    header = ("CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "EXIT CODE", "NAMES")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    engine = _engine()
    c = engine.containers.find(args.container)
    log = engine.containers.dir(c.id) / "log"
    if not log.exists():
        if not c.detached:
            raise ContainerError(
                f"{c.name} ran in the foreground: its output went to the terminal, not a log"
            )
        return 0
    with open(log, "rb") as f:
        while chunk := f.read(1 << 16):
            sys.stdout.buffer.write(chunk)
    sys.stdout.flush()
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    engine = _engine()
    for key in args.containers:
        engine.stop(engine.containers.find(key), args.time)
        print(key)
    return 0


def cmd_kill(args: argparse.Namespace) -> int:
    engine = _engine()
    for key in args.containers:
        sig = (
            args.signal
            if args.signal.startswith("SIG") or args.signal.isdigit()
            else f"SIG{args.signal}"
        )
        engine.kill(engine.containers.find(key), sig)
        print(key)
    return 0


def cmd_rm(args: argparse.Namespace) -> int:
    engine = _engine()
    status = 0
    for key in args.containers:
        try:
            engine.remove(engine.containers.find(key), force=args.force)
            print(key)
        except ContainerError as exc:
            print(f"pyreg: error: {exc}", file=sys.stderr)
            status = 1
    return status


def cmd_exec(args: argparse.Namespace) -> int:
    engine = _engine()
    c = engine.containers.find(args.container)
    return engine.exec(c, list(args.command), list(args.env or []), args.workdir, args.user)


def register(subparsers: Any) -> None:
    def add(name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = subparsers.add_parser(
            name, help=help_text, description=help_text
        )
        p.set_defaults(func=_guard(handler))
        return p

    p = add("run", cmd_run, "Run a command in a new container (on runc)")
    p.add_argument("--rm", action="store_true", help="remove the container when it exits")
    p.add_argument("-d", "--detach", action="store_true", help="run in the background")
    p.add_argument("--name")
    p.add_argument("-e", "--env", action="append", metavar="K=V")
    p.add_argument("-w", "--workdir")
    p.add_argument("-u", "--user", help="name|uid[:group|gid]")
    p.add_argument("--entrypoint")
    p.add_argument("--hostname")
    p.add_argument("-m", "--memory", help="memory limit, e.g. 256m")
    p.add_argument("--cpus", type=float, help="CPU quota, e.g. 0.5")
    p.add_argument("--pids-limit", type=int)
    p.add_argument("--network", choices=("none", "host"), default="none")
    p.add_argument("-v", "--volume", action="append", metavar="HOST:CONTAINER[:ro]")
    p.add_argument("--read-only", action="store_true", help="mount the rootfs read-only")
    add_network_arguments(p, pulls=True)  # for an image that must be pulled first
    p.add_argument("image")
    p.add_argument("command", nargs=argparse.REMAINDER)

    p = add("ps", cmd_ps, "List containers")
    p.add_argument("-a", "--all", action="store_true", help="include exited containers")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the ids")

    p = add("logs", cmd_logs, "Print a detached container's output")
    p.add_argument("container")

    p = add("stop", cmd_stop, "Stop containers (stop signal, then SIGKILL after -t seconds)")
    p.add_argument("-t", "--time", type=float, default=10.0)
    p.add_argument("containers", nargs="+")

    p = add("kill", cmd_kill, "Send a signal (default SIGKILL) to containers")
    p.add_argument("-s", "--signal", default="SIGKILL")
    p.add_argument("containers", nargs="+")

    p = add("rm", cmd_rm, "Remove containers")
    p.add_argument("-f", "--force", action="store_true", help="kill a running container first")
    p.add_argument("containers", nargs="+")

    p = add("exec", cmd_exec, "Run a command in a running container")
    p.add_argument("-e", "--env", action="append", metavar="K=V")
    p.add_argument("-w", "--workdir")
    p.add_argument("-u", "--user", help="uid[:gid]")
    p.add_argument("container")
    p.add_argument("command", nargs=argparse.REMAINDER)
