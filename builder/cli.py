"""`pyreg build`: parsing, output and exit codes only (expected failures: one line, exit 1)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from builder.build import Builder, BuildOptions
from builder.errors import BuildError
from ocispec.digest import DigestError
from ocispec.models import ManifestError, Platform
from ocispec.reference import ReferenceError
from puller.netopts import NetOptions, add_network_arguments
from puller.store import GraphStore, StoreError
from runtime.errors import ContainerError


def _build_args(values: list[str]) -> dict[str, str]:
    import os

    out: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not key:
            raise BuildError(f"invalid --build-arg {item!r}: KEY=VALUE")
        if sep:
            out[key] = value
        elif key in os.environ:  # `--build-arg KEY` takes the value from the environment
            out[key] = os.environ[key]
    return out


def cmd_build(args: argparse.Namespace) -> int:
    try:
        opts = BuildOptions(
            context=Path(args.context),
            dockerfile=Path(args.file) if args.file else None,
            tags=list(args.tag or []),
            build_args=_build_args(list(args.build_arg or [])),
            target=args.target,
            no_cache=args.no_cache,
            platform=Platform.parse(args.platform) if args.platform else None,
            compression=args.compression,
            output=sys.stderr if args.quiet else sys.stdout,
            net=NetOptions.from_args(args),
        )
        if opts.dockerfile is not None and not opts.dockerfile.is_absolute():
            # like docker: -f is relative to the working directory
            opts.dockerfile = Path.cwd() / opts.dockerfile
        result = Builder(GraphStore.default(), opts).build()
    except (
        BuildError,
        ContainerError,
        StoreError,
        ReferenceError,
        DigestError,
        ManifestError,
        OSError,
        ValueError,
    ) as exc:
        print(f"pyreg: error: {exc}", file=sys.stderr)
        return 1
    if args.quiet:
        print(result.manifest_digest)
        return 0
    print(f"Built {result.manifest_digest} ({result.steps} steps, {result.cached} from cache)")
    for name in result.names:
        print(f"Tagged {name}")
    return 0


def register(subparsers: Any) -> None:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "build",
        help="Build an image from a Dockerfile (RUN steps on runc)",
        description="Build an image from a Dockerfile into the local store (RUN steps on runc)",
    )
    p.set_defaults(func=cmd_build)
    p.add_argument("-t", "--tag", action="append", metavar="NAME[:TAG]")
    p.add_argument("-f", "--file", help="the Dockerfile (default: CONTEXT/Dockerfile)")
    p.add_argument("--build-arg", action="append", metavar="KEY=VALUE")
    p.add_argument("--target", help="the stage to build (default: the last)")
    p.add_argument("--no-cache", action="store_true", help="do not use the build cache")
    p.add_argument("--platform", help="os/arch[/variant] of the base images")
    p.add_argument("--compression", choices=("gzip", "zstd"), default="gzip")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the image digest")
    add_network_arguments(p, pulls=True)  # for base images pulled as `pyreg pull` would
    p.add_argument("context")
