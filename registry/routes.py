"""The one ordered route table. Repository names contain slashes, hence `{name:path}`;
upload routes come before `blobs/{digest}` so `uploads` is never taken for a digest.

Each path is one route whose methods dispatch to their handlers, so a wrong method gets a 405
whose `Allow` header lists every method the path accepts.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from registry.handlers import blobs, catalog, manifests, referrers, tags, uploads
from registry.handlers.base import root
from registry.observe import health

Handler = Callable[[Request], Awaitable[Response]]

_NAME = "/v2/{name:path}"


def _route(path: str, handlers: dict[str, Handler]) -> Route:
    async def dispatch(request: Request) -> Response:
        return await handlers[request.method](request)

    if "GET" in handlers:
        handlers.setdefault("HEAD", handlers["GET"])
    return Route(path, dispatch, methods=list(handlers))


ROUTES: list[BaseRoute] = [
    _route("/v2/", {"GET": root}),
    _route("/v2/_catalog", {"GET": catalog.list_repositories}),
    _route(f"{_NAME}/blobs/uploads/", {"POST": uploads.start_upload}),
    _route(f"{_NAME}/blobs/uploads", {"POST": uploads.start_upload}),
    _route(
        f"{_NAME}/blobs/uploads/{{upload_id}}",
        {
            "GET": uploads.upload_status,
            "PATCH": uploads.patch_upload,
            "PUT": uploads.put_upload,
            "DELETE": uploads.cancel_upload,
        },
    ),
    _route(f"{_NAME}/blobs/{{digest}}", {"GET": blobs.get_blob, "DELETE": blobs.delete_blob}),
    _route(
        f"{_NAME}/manifests/{{reference}}",
        {
            "GET": manifests.get_manifest,
            "PUT": manifests.put_manifest,
            "DELETE": manifests.delete_manifest,
        },
    ),
    _route(f"{_NAME}/tags/list", {"GET": tags.list_tags}),
    _route(f"{_NAME}/referrers/{{digest}}", {"GET": referrers.list_referrers}),
    # probes: outside /v2/, no access control (registry.observe.health)
    _route("/healthz", {"GET": health.healthz}),
    _route("/readyz", {"GET": health.readyz}),
]
