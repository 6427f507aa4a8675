"""Read-only mode (`readonly: true`, `--read-only`, PYREG_READONLY=1), for backups and migrations.

Every write on the API (POST, PUT, PATCH, DELETE below `/v2/`) is refused before routing or
auth with `405 UNSUPPORTED` and `Allow: GET, HEAD`, as distribution's
`storage.maintenance.readonly` does (there, the write handlers are simply not registered, so
its router answers 405 with `Allow: GET, HEAD`); pyreg adds the spec's JSON error body with a
message saying why. Pulls, tag lists, the catalog and the token endpoint keep working.

The app also starts no background writer in this mode (upload purge, event delivery), so the
storage does not change while an operator snapshots it.
"""

from __future__ import annotations

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from registry import errors

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
MESSAGE = "the registry is in read-only mode (maintenance): pulls only"


def refuses(method: str, path: str) -> bool:
    """Whether read-only mode refuses this request."""
    return method in WRITE_METHODS and path.startswith("/v2/")


def read_only_error() -> errors.RegistryError:
    return errors.UNSUPPORTED(MESSAGE, headers={"Allow": "GET, HEAD"})


class ReadOnlyMiddleware:
    """Pure ASGI: answers writes itself; everything else goes through untouched."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and refuses(scope["method"], scope["path"]):
            error = read_only_error()
            response = JSONResponse(
                error.to_json(), status_code=error.status, headers=error.headers
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
