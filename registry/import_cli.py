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
from registry.policies.config import Policies, parse_policies
from registry.settings import SettingsError, load_settings
from registry.stores.repository import RegistryStore
from storage_backends import open_backend
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
    try:
        settings = load_settings(args.config, storage_url=args.storage)
    except SettingsError as exc:
        print(f"pyreg import: {exc}", file=sys.stderr)
        return 2
    if settings.storage_url.startswith("memory:"):
        print("pyreg import: memory:// storage belongs to one server process", file=sys.stderr)
        return 2

    def log(message: str) -> None:
        if not args.quiet:
            print(message)

    try:
        report = asyncio.run(
            _run(
                settings.storage_url,
                settings.storage_options,
                Path(args.source),
                log,
                parse_policies(settings.policies),
            )
        )
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


async def _run(
    url: str,
    options: dict[str, Any],
    source: Path,
    log: Callable[[str], None],
    policies: Policies | None = None,
) -> ImportReport:
    backend = open_backend(url, **options)
    await backend.open()
    try:
        # The config's policies hold for imports too (immutable tags, quotas).
        return await Importer(RegistryStore(backend, policies=policies), source, log).run()
    finally:
        await backend.close()
