"""`pyreg gc`: online garbage collection of the registry's storage (see registry/gc.py).

Safe to run while replicas serve: run it from cron on any one machine that sees the storage.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable
from typing import Any

from registry.gc import DEFAULT_GRACE, GarbageCollector, GcReport
from registry.observe.gc_record import record_run
from registry.observe.logs import configure_command
from registry.offline import load_offline_settings, open_storage
from registry.policies.config import parse_policies
from registry.policies.notify import delete_notifier
from registry.settings import Settings
from registry.shared import open_redis
from registry.shared.blobcache import RedisBlobCache
from storage_backends.base import StorageError


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "gc",
        help="delete blobs no manifest references (online: replicas may keep serving)",
        description="Mark every blob reachable from any manifest in any repository and delete "
        "the rest, except blobs younger than the grace window. Also purges upload sessions "
        "older than the upload TTL. Prints what it freed.",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--storage", metavar="URL", help="storage URL (as for pyreg serve)")
    where.add_argument("--config", metavar="FILE", help="the registry's YAML settings file")
    parser.add_argument(
        "--dry-run", action="store_true", help="report what would be deleted, delete nothing"
    )
    parser.add_argument(
        "--delete-untagged",
        action="store_true",
        help="also delete manifests no tag reaches (kept while an index or, as a referrer, "
        "a kept subject still needs them)",
    )
    parser.add_argument(
        "--grace",
        type=float,
        default=DEFAULT_GRACE,
        metavar="SECONDS",
        help=f"never delete anything touched more recently (default {DEFAULT_GRACE:.0f}); "
        "must exceed the longest time between a blob upload and its manifest push",
    )
    parser.add_argument(
        "--no-policies",
        action="store_true",
        help="do not apply the retention rules of the config's `policies:` (applied by default)",
    )
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="print only the summary, not every blob"
    )
    parser.set_defaults(func=gc)


def gc(args: argparse.Namespace) -> int:
    settings = load_offline_settings("gc", args.config, args.storage)
    if settings is None:
        return 2
    if args.grace < 0:
        print("pyreg gc: --grace must not be negative", file=sys.stderr)
        return 2
    configure_command(settings.log_level, settings.log_format)  # audit lines on stderr

    def log(message: str) -> None:
        if not args.quiet:
            print(message)

    try:
        report = asyncio.run(_run(settings, args, log))
    except (StorageError, ValueError) as exc:
        print(f"pyreg gc: {exc}", file=sys.stderr)
        return 1
    print(report.summary())
    return 0


async def _run(
    settings: Settings, args: argparse.Namespace, log: Callable[[str], None]
) -> GcReport:
    policies = None if args.no_policies else settings.policies
    async with open_storage(settings) as backend:
        # The replicas' blob cache must hear of every blob taken away
        # (registry/shared/blobcache.py).
        guard = open_redis(settings.redis_url) if settings.redis_url else None
        try:
            collector = GarbageCollector(
                backend,
                grace=args.grace,
                upload_ttl=settings.upload_ttl,
                delete_untagged=args.delete_untagged,
                dry_run=args.dry_run,
                log=log,
                blob_cache=RedisBlobCache(guard) if guard else None,
                policies=parse_policies(policies) if policies else None,
                on_delete=None
                if args.dry_run
                else delete_notifier(settings.notifications, backend),
            )
            started = time.time()
            report = await collector.run()
            await record_run(backend, report, started, time.time())  # audit lines, GC metrics
            return report
        finally:
            if guard is not None:
                await guard.close()
