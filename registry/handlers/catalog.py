"""`GET /v2/_catalog?n=&last=`: the repositories the caller may pull."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from registry.auth.base import CATALOG, pull
from registry.handlers.base import access, authorize, next_link, pagination, store


async def list_repositories(request: Request) -> Response:
    n, last = pagination(request)
    principal = await authorize(request, [CATALOG])
    controller = access(request)

    async def visible(repo: str) -> bool:
        return await controller.may(request, principal, pull(repo))

    page = await store(request).catalog.page(n, last, visible)
    headers = {}
    if page.next_last is not None:
        headers["Link"] = next_link("/v2/_catalog", n, page.next_last)
    return JSONResponse({"repositories": page.items}, headers=headers)
