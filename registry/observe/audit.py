"""Audit lines: one `registry.audit` record per state change, saying who did what from where.

Records carry their fields in `extra={"fields": ...}`, so the text formatter writes them as
`key=value` pairs and the JSON formatter as keys (see `logs`). Actions:

- from requests (`request_outcome`, called by the middleware for successful writes):
  `manifest.push` (with `tags`), `manifest.delete`, `tag.delete`, `blob.delete`, `blob.mount`,
  `blob.upload` (an upload committed);
- from access control: `login.failed`, `login.lockout`;
- from `pyreg gc`: `gc.sweep` (one per deleted blob) and `gc.run` (the summary).

This module is imported while the command line is parsed (through registry.auth), so it
imports the metrics lazily: they must be created after `pyreg serve` set up multiprocess mode.
"""

from __future__ import annotations

import getpass
import logging
import socket
from typing import Any

from registry.observe.logs import Fields

logger = logging.getLogger("registry.audit")


def record(action: str, **fields: Any) -> None:
    fields = {"action": action, **fields}
    logger.info("%s", Fields(fields), extra={"fields": fields})


# -- access control -----------------------------------------------------------------------------


def login_failed(client: str, user: str) -> None:
    from registry.observe import metrics

    metrics.AUTH_FAILURES.labels("password").inc()
    record("login.failed", user=user, client=client)


def login_while_locked(client: str, user: str) -> None:
    """No audit line (the lockout itself was recorded): a locked client may retry often."""
    from registry.observe import metrics

    metrics.AUTH_FAILURES.labels("locked").inc()


def locked_out(client: str, user: str, seconds: float) -> None:
    from registry.observe import metrics

    metrics.AUTH_LOCKOUTS.inc()
    record("login.lockout", user=user, client=client, seconds=int(seconds))


def token_refused() -> None:
    from registry.observe import metrics

    metrics.AUTH_FAILURES.labels("token").inc()


# -- garbage collection -------------------------------------------------------------------------


def operator() -> tuple[str, str]:
    """Who runs a command-line job, and where: (OS user, host name)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return user, socket.gethostname()
