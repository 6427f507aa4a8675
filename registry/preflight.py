"""Checks `pyreg serve` runs before starting uvicorn, so that a mistake in the configuration is
one clear line on stderr (and exit code 2), not a traceback from inside every worker.

- storage: the URL names a backend, the backend opens, and a probe object can be written and
  deleted (a wrong URL, an unwritable directory, S3 without credentials or bucket);
- auth: the users file named by `auth.htpasswd` exists and parses.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from registry.settings import Settings
from registry.stores import paths
from storage_backends import open_backend

PROBE_TIMEOUT = 30.0


class StartupError(Exception):
    """A configuration the server cannot start with; the message is the one line to print."""


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{exc.strerror}{where}"
    return str(exc) or type(exc).__name__


async def check_storage(settings: Settings) -> None:
    url = settings.storage_url
    try:
        backend = open_backend(url, **settings.storage_options)
    except (ValueError, TypeError) as exc:
        raise StartupError(f"storage: {exc}") from None
    step = "cannot open"
    try:
        await asyncio.wait_for(backend.open(), PROBE_TIMEOUT)
        try:
            if settings.readonly:
                # Read-only (a backup or migration may be running): look, never write.
                step = "cannot read"
                await asyncio.wait_for(backend.exists(paths.HEALTH_PROBE), PROBE_TIMEOUT)
            else:
                step = "cannot write"
                await asyncio.wait_for(backend.put(paths.HEALTH_PROBE, b""), PROBE_TIMEOUT)
                await asyncio.wait_for(backend.delete(paths.HEALTH_PROBE), PROBE_TIMEOUT)
        finally:
            await backend.close()
    except TimeoutError:
        raise StartupError(f"storage {url}: no answer within {PROBE_TIMEOUT:.0f}s") from None
    except Exception as exc:  # whatever the backend raises, the operator needs one line
        raise StartupError(f"storage {url}: {step}: {_reason(exc)}") from None


def check_auth(settings: Settings) -> None:
    if not settings.auth:
        return
    from registry.auth import AuthConfigError, parse_config
    from registry.auth.htpasswd import parse

    try:
        config = parse_config(settings.auth)
    except AuthConfigError as exc:
        raise StartupError(f"auth: {exc}") from None
    users = Path(config.htpasswd)
    try:
        parse(users.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StartupError(
            f"auth.htpasswd: {users} does not exist (create it: pyreg user add NAME)"
        ) from None
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise StartupError(f"auth.htpasswd: {users}: {_reason(exc)}") from None


def check(settings: Settings) -> None:
    """Raise StartupError for the first problem found."""
    check_auth(settings)
    asyncio.run(check_storage(settings))
