"""`pyreg COMMAND`: server commands come from `registry.cli`, client commands from `puller.cli`.

Each of those modules exposes `register(subparsers)`, adding its commands with a `func`
default that takes the parsed namespace and returns an exit code.

Start-up time matters (every `pyreg pull` pays it), so a command imports only the module
that registers it: the server modules (starlette, PyJWT, cryptography, bcrypt, YAML) only for
their own commands. `pyreg --help`, `pyreg` alone
and unknown commands list the commands from `COMMANDS` (name, one-line help, module) and
import none of them; tests/pyreg/test_cli.py keeps that table equal to what the modules
register.
"""

from __future__ import annotations

import argparse
import gc
import sys
from collections.abc import Sequence
from typing import NoReturn

from pyreg import __version__

# httpx imports its own command-line client at import when click is installed (uvicorn
# brings it), and with it rich, pygments and click: ~0.1 s of CPU per `pyreg` run, never
# used here. A None entry makes that import fail, which httpx handles (`httpx/__init__.py`).
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]

CLIENT_MODULES = ("puller.cli", "runtime.cli", "builder.cli")
SERVER_MODULES = (
    "registry.cli",
    "registry.auth.cli",
    "registry.gc_cli",
    "registry.import_cli",
    "registry.policies.quota_cli",
)

# Every command's one-line help (as its module registers it) and the module registering it,
# in `--help` order, so listing the commands imports none of them.
COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("registry.cli", "run the registry (OCI Distribution API v1.1)"),
    "user": ("registry.auth.cli", "manage registry users (htpasswd, bcrypt)"),
    "gc": (
        "registry.gc_cli",
        "delete blobs no manifest references (online: replicas may keep serving)",
    ),
    "import": ("registry.import_cli", "import a registry:2 (distribution) filesystem storage tree"),
    "quota": (
        "registry.policies.quota_cli",
        "show the storage used per quota namespace (policies.quotas)",
    ),
    "login": ("puller.cli", "Log in to a registry; stores credentials in docker's config.json"),
    "logout": ("puller.cli", "Remove a registry's credentials from docker's config.json"),
    "pull": ("puller.cli", "Pull an image into the local store"),
    "push": ("puller.cli", "Push a local image to its registry"),
    "copy": ("puller.cli", "Copy an image from one registry/repository to another"),
    "images": ("puller.cli", "List local images"),
    "tag": ("puller.cli", "Give a local image another name"),
    "rmi": ("puller.cli", "Remove local image names (content goes with `prune`)"),
    "inspect": ("puller.cli", "Show an image's manifest and config as JSON"),
    "unpack": ("puller.cli", "Assemble a local image's root filesystem into DIR"),
    "load": ("puller.cli", "Load images from an OCI layout (dir or tar) or a docker save tar"),
    "save": ("puller.cli", "Save local images to an OCI image layout"),
    "tags": ("puller.cli", "List a repository's tags on its registry"),
    "catalog": ("puller.cli", "List a registry's repositories"),
    "delete": ("puller.cli", "Delete a manifest (by tag or digest) on its registry"),
    "prune": ("puller.cli", "Delete local blobs and layers no image name refers to"),
    "run": ("runtime.cli", "Run a command in a new container (on runc)"),
    "ps": ("runtime.cli", "List containers"),
    "logs": ("runtime.cli", "Print a detached container's output"),
    "stop": ("runtime.cli", "Stop containers (stop signal, then SIGKILL after -t seconds)"),
    "kill": ("runtime.cli", "Send a signal (default SIGKILL) to containers"),
    "rm": ("runtime.cli", "Remove containers"),
    "exec": ("runtime.cli", "Run a command in a running container"),
    "build": ("builder.cli", "Build an image from a Dockerfile (RUN steps on runc)"),
}


def _new_parser() -> tuple[
    argparse.ArgumentParser, argparse._SubParsersAction[argparse.ArgumentParser]
]:
    parser = argparse.ArgumentParser(
        prog="pyreg",
        description="A self-hosted OCI container registry (serve, user, gc) and its client "
        "(login, pull, push, images, unpack, ...).",
    )
    parser.add_argument("--version", action="version", version=f"pyreg {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    return parser, sub


def _register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], module_names: Sequence[str]
) -> None:
    # No ImportError guard: a broken import must fail loudly, not silently drop commands.
    for module_name in module_names:
        module = __import__(module_name, fromlist=["register"])
        module.register(sub)


def build_parser() -> argparse.ArgumentParser:
    """The parser with every command (server commands first, as `--help` lists them)."""
    parser, sub = _new_parser()
    _register(sub, (*SERVER_MODULES, *CLIENT_MODULES))
    return parser


def listing_parser() -> argparse.ArgumentParser:
    """A parser that lists every command from `COMMANDS` and parses none of them: for
    `--help`, `--version`, no command and unknown commands (argparse names the choices)."""
    parser, sub = _new_parser()
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def parser_for(argv: Sequence[str]) -> argparse.ArgumentParser:
    """A parser that can parse `argv`: with only the module of the command `argv` names,
    else the listing."""
    command = next((a for a in argv if not a.startswith("-")), None)
    if command is None or command not in COMMANDS:
        return listing_parser()
    parser, sub = _new_parser()
    _register(sub, (COMMANDS[command][0],))
    return parser


def _skip_trio() -> None:
    """httpcore imports trio whenever it is installed (selenium, a test dependency, brings
    it), to support trio event loops: ~0.3-0.5 s of CPU per `pyreg` run, half of a `pyreg
    push`, for a loop pyreg never runs. A None entry makes that import fail, which httpcore
    handles (`httpcore/_synchronization.py`). Only for real command-line runs: a process
    calling `main(argv)` (the tests) may still want trio."""
    sys.modules.setdefault("trio", None)  # type: ignore[arg-type]


def main(argv: Sequence[str] | None = None) -> int:
    command_line = argv is None
    if command_line:
        _skip_trio()
        # Imports create many objects and no garbage worth a collection: the cyclic GC's
        # passes were ~10% of a command's import CPU. On again before the command runs.
        gc.disable()
    try:
        argv = sys.argv[1:] if argv is None else argv
        parser = parser_for(argv)
    finally:
        if command_line:
            # What the imports made lives as long as the process: frozen, no collection
            # walks it (the first after the imports, ~50k objects all in the young
            # generation, took 0.03-0.1 s of a push's CPU; docs/performance.md).
            gc.freeze()
            gc.enable()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        return int(func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def run() -> NoReturn:
    """The `pyreg` program (`python -m pyreg`, the console script): `main()`; a client
    command then ends without the interpreter's teardown (pyreg/exiting.py)."""
    code = main()
    command = next((a for a in sys.argv[1:] if not a.startswith("-")), None)
    if command is not None and COMMANDS.get(command, ("", ""))[0] == "puller.cli":
        from pyreg.exiting import leave

        leave(code)
    sys.exit(code)


if __name__ == "__main__":
    run()
