"""`pyreg COMMAND`: server commands come from `registry.cli`, client commands from `puller.cli`.

Each of those modules exposes `register(subparsers)`, adding its commands with a `func`
default that takes the parsed namespace and returns an exit code.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pyreg import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pyreg",
        description="A self-hosted OCI container registry (serve, user, gc) and its client "
        "(login, pull, push, images, unpack, ...).",
    )
    parser.add_argument("--version", action="version", version=f"pyreg {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in ("registry.cli", "registry.auth.cli", "registry.gc_cli", "puller.cli"):
        try:
            module = __import__(module_name, fromlist=["register"])
        except ImportError:  # a half-built tree still offers the other side's commands
            continue
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
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
