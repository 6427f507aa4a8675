"""`pyreg COMMAND`: server commands come from `registry.cli`, client commands from `puller.cli`.

Each of those modules exposes `register(subparsers)`, adding its commands with a `func`
default that takes the parsed namespace and returns an exit code.

Start-up time matters for client commands (every `pyreg pull` pays it), so a client command
imports only `puller.cli`: the server modules (starlette, PyJWT, cryptography, bcrypt, YAML)
are imported only for their own commands, for `--help` and for unknown commands.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

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


def parser_for(argv: Sequence[str]) -> argparse.ArgumentParser:
    """A parser that can parse `argv`: only the client commands when `argv` names one."""
    command = next((a for a in argv if not a.startswith("-")), None)
    if command is not None:
        parser, sub = _new_parser()
        _register(sub, CLIENT_MODULES)
        if command in sub.choices:
            return parser
    return build_parser()


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = parser_for(argv)
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


if __name__ == "__main__":
    sys.exit(main())
