"""`pyreg quota`: each quota namespace's usage, as last counted (pushes add to it at once;
`pyreg gc` recounts it from what is referenced, deletions included)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from registry.policies.config import Policies, parse_policies
from registry.policies.quota import QuotaStore, usage_text
from registry.settings import SettingsError, load_settings
from storage_backends import open_backend
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
    try:
        settings = load_settings(args.config)
    except SettingsError as exc:
        print(f"pyreg quota: {exc}", file=sys.stderr)
        return 2
    policies = parse_policies(settings.policies)
    if not policies.quotas:
        print("pyreg quota: no policies.quotas in the config", file=sys.stderr)
        return 2
    try:
        lines = asyncio.run(_usage(settings.storage_url, settings.storage_options, policies))
    except StorageError as exc:
        print(f"pyreg quota: {exc}", file=sys.stderr)
        return 1
    print("\n".join(lines))
    return 0


async def _usage(url: str, options: dict[str, Any], policies: Policies) -> list[str]:
    backend = open_backend(url, **options)
    await backend.open()
    try:
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
    finally:
        await backend.close()
