"""`pyreg quota`: each quota namespace's usage, as last counted (pushes add to it at once;
`pyreg gc` recounts it from what is referenced, deletions included)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from registry.offline import load_offline_settings, open_storage
from registry.policies.config import Policies, parse_policies
from registry.policies.quota import QuotaStore, usage_text
from registry.settings import Settings
from storage_backends.base import StorageError


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "quota",
        help="show the storage used per quota namespace (policies.quotas)",
        description="Print, per quota namespace of the config's `policies.quotas`, the bytes "
        "of the unique blobs its repositories reference, against its limit. Pushes add to the "
        "count at once; `pyreg gc` recounts it (deletions lower it there).",
    )
    parser.add_argument("--config", metavar="FILE", required=True, help="the settings file")
    parser.set_defaults(func=quota)


def quota(args: argparse.Namespace) -> int:
    settings = load_offline_settings("quota", args.config)
    if settings is None:
        return 2
    policies = parse_policies(settings.policies)
    if not policies.quotas:
        print("pyreg quota: no policies.quotas in the config", file=sys.stderr)
        return 2
    try:
        lines = asyncio.run(_usage(settings, policies))
    except StorageError as exc:
        print(f"pyreg quota: {exc}", file=sys.stderr)
        return 1
    print("\n".join(lines))
    return 0


async def _usage(settings: Settings, policies: Policies) -> list[str]:
    async with open_storage(settings) as backend:
        store = QuotaStore(backend, policies)
        out = []
        for rule in policies.quotas:
            used = await store.usage(rule)
            share = 100 * used / rule.limit
            out.append(
                f"{rule.repository}\t{usage_text(used, rule.limit)}\t{share:.0f}%"
                f"\t{used} of {rule.limit} bytes"
            )
        return out
