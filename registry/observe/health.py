"""`GET /healthz` (liveness) and `GET /readyz` (readiness) for load balancers and k8s probes.

Both are outside /v2/ and never ask for credentials (with access control on, `/v2/` answers
401, which probes cannot tell from a failure). Bodies say no more than `ok` or the names of
the failing checks, so they reveal nothing about the storage or the users.

- `/healthz`: 200 `ok` whenever the process serves requests.
- `/readyz`: 200 `ok` when
  `storage`: the backend answers a cheap probe (`exists` on one key) within `PROBE_TIMEOUT`;
  `auth`: with access control, the htpasswd file exists and parses.
  Otherwise 503 `failing: storage auth` (the failing names); `starting` before the lifespan
  has opened the storage.
"""

from __future__ import annotations

import asyncio
import logging

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from registry.stores import paths
from storage_backends.base import StorageBackend

logger = logging.getLogger(__name__)

PROBE_TIMEOUT = 2.0


async def healthz(request: Request) -> Response:
    return PlainTextResponse("ok\n")


async def _storage_ready(backend: StorageBackend) -> bool:
    try:
        await asyncio.wait_for(backend.exists(paths.HEALTH_PROBE), PROBE_TIMEOUT)
    except Exception as exc:  # any failure, timeouts included, means "not ready"
        logger.warning("readiness: storage probe failed: %s", exc or type(exc).__name__)
        return False
    return True


def _auth_ready(controller: object) -> bool:
    """The users file exists and parses (when there is access control at all)."""
    users = getattr(getattr(controller, "authenticator", None), "users", None)
    if users is None:
        return True
    try:
        if not users.path.exists():
            logger.warning("readiness: users file %s does not exist", users.path)
            return False
        users.users()
    except (OSError, ValueError) as exc:
        logger.warning("readiness: users file %s: %s", users.path, exc)
        return False
    return True


async def readyz(request: Request) -> Response:
    state = request.app.state
    store = getattr(state, "store", None)
    if store is None:
        return PlainTextResponse("failing: starting\n", status_code=503)
    failing = []
    if not await _storage_ready(store.backend):
        failing.append("storage")
    if not _auth_ready(getattr(state, "access", None)):
        failing.append("auth")
    if failing:
        return PlainTextResponse(f"failing: {' '.join(failing)}\n", status_code=503)
    return PlainTextResponse("ok\n")
