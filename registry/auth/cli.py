"""`pyreg user add|remove|list`: manage the htpasswd file the registry reads its users from.

The file defaults to `./var/htpasswd` (override with `--htpasswd` or `PYREG_HTPASSWD`); the
server picks up changes without a restart.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path

from registry.auth.htpasswd import (
    DEFAULT_COST,
    HtpasswdError,
    parse,
    remove_user,
    set_user,
)

DEFAULT_HTPASSWD = "./var/htpasswd"


def _path(args: argparse.Namespace) -> Path:
    return Path(args.htpasswd or os.environ.get("PYREG_HTPASSWD") or DEFAULT_HTPASSWD)


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        # One line; the trailing newline (echo, heredoc) is not part of the password.
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass(f"Password for {args.name}: ")
    second = getpass.getpass("Repeat the password: ")
    if first != second:
        raise HtpasswdError("the passwords do not match")
    return first


def _add(args: argparse.Namespace) -> int:
    path = _path(args)
    try:
        password = _read_password(args)
        existed = set_user(path, args.name, password, args.cost)
    except (HtpasswdError, OSError) as exc:
        print(f"pyreg user add: {exc}", file=sys.stderr)
        return 1
    print(f"{'updated' if existed else 'added'} user {args.name} in {path}")
    return 0


def _remove(args: argparse.Namespace) -> int:
    path = _path(args)
    try:
        removed = remove_user(path, args.name)
    except (HtpasswdError, OSError) as exc:
        print(f"pyreg user remove: {exc}", file=sys.stderr)
        return 1
    if not removed:
        print(f"pyreg user remove: no user {args.name} in {path}", file=sys.stderr)
        return 1
    print(f"removed user {args.name} from {path}")
    return 0


def _list(args: argparse.Namespace) -> int:
    path = _path(args)
    try:
        users = parse(path.read_text(encoding="utf-8")) if path.exists() else {}
    except (HtpasswdError, OSError) as exc:
        print(f"pyreg user list: {exc}", file=sys.stderr)
        return 1
    for name in sorted(users):
        print(name)
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    user = subparsers.add_parser("user", help="manage registry users (htpasswd, bcrypt)")
    user_sub = user.add_subparsers(dest="user_command", metavar="ACTION", required=True)

    def common(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--htpasswd",
            metavar="FILE",
            help=f"users file (default: $PYREG_HTPASSWD or {DEFAULT_HTPASSWD})",
        )

    add = user_sub.add_parser("add", help="add a user or change their password")
    add.add_argument("name")
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    add.add_argument(
        "--cost",
        type=int,
        default=DEFAULT_COST,
        choices=range(4, 18),
        metavar="4..17",
        help=f"bcrypt cost (default {DEFAULT_COST})",
    )
    common(add)
    add.set_defaults(func=_add)

    remove = user_sub.add_parser("remove", help="remove a user")
    remove.add_argument("name")
    common(remove)
    remove.set_defaults(func=_remove)

    listing = user_sub.add_parser("list", help="list user names")
    common(listing)
    listing.set_defaults(func=_list)
