"""What an offline command (`pyreg gc`, `pyreg import`, `pyreg quota`) opens: the registry's
settings and its storage, from a process of its own beside the servers.

memory:// storage lives inside one server process: another process would see an empty store
of its own (gc and import would work on nothing, quota would show nothing used), so it is
refused.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from registry.settings import Settings, SettingsError, load_settings
from storage_backends import open_backend
from storage_backends.base import StorageBackend


def load_offline_settings(
    command: str, config: str | None, storage_url: str | None = None
) -> Settings | None:
    """The settings `pyreg COMMAND` works with (the file `config`, `storage_url` over its
    storage), or None once one line on stderr has said why not: the command exits 2."""
    try:
        settings = load_settings(config, storage_url=storage_url)
    except SettingsError as exc:
        print(f"pyreg {command}: {exc}", file=sys.stderr)
        return None
    if settings.storage_url.startswith("memory:"):
        print(f"pyreg {command}: memory:// storage belongs to one server process", file=sys.stderr)
        return None
    return settings


@asynccontextmanager
async def open_storage(settings: Settings) -> AsyncIterator[StorageBackend]:
    """The settings' storage backend, open for the block and closed after it."""
    backend = open_backend(settings.storage_url, **settings.storage_options)
    await backend.open()
    try:
        yield backend
    finally:
        await backend.close()
