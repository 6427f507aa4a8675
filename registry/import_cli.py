"""`pyreg import`: copy a registry:2 (CNCF distribution) filesystem storage tree into pyreg's
storage (see registry/importer.py)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from registry.importer import Importer, ImportReport, SourceError
from registry.offline import load_offline_settings, open_storage
from registry.policies.config import parse_policies
from registry.settings import Settings
from registry.stores.repository import RegistryStore
from storage_backends.base import StorageError


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "import",
        help="import a registry:2 (distribution) filesystem storage tree",
        description="Read a CNCF distribution (registry:2, docker-registry) filesystem storage "
        "tree and store every repository's blobs, manifests, tags and referrers in pyreg's "
        "storage, verifying every digest. Stop the source registry (or set it read-only) "
        "first. Safe to re-run: what is already there is only re-linked.",
    )
    parser.add_argument(
        "--from",
        dest="source",
        required=True,
        metavar="DIR",
        help="distribution's storage rootdirectory (the one holding docker/registry/v2)",
    )
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--storage", metavar="URL", help="pyreg storage URL (as for pyreg serve)")
    where.add_argument("--config", metavar="FILE", help="the registry's YAML settings file")
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="print only the summary and what was skipped"
    )
    parser.set_defaults(func=import_)


def import_(args: argparse.Namespace) -> int:
    settings = load_offline_settings("import", args.config, args.storage)
    if settings is None:
        return 2

    def log(message: str) -> None:
        if not args.quiet:
            print(message)

    try:
        report = asyncio.run(_run(settings, Path(args.source), log))
    except SourceError as exc:
        print(f"pyreg import: {exc}", file=sys.stderr)
        return 2
    except (StorageError, ValueError) as exc:
        print(f"pyreg import: {exc}", file=sys.stderr)
        return 1
    for line in report.skipped:
        print(f"skipped {line}", file=sys.stderr)
    print(report.summary())
    return 1 if report.skipped else 0


async def _run(settings: Settings, source: Path, log: Callable[[str], None]) -> ImportReport:
    policies = parse_policies(settings.policies)
    async with open_storage(settings) as backend:
        # The config's policies hold for imports too (immutable tags, quotas).
        return await Importer(RegistryStore(backend, policies=policies), source, log).run()
