"""`GET /v2/<name>/tags/list?n=&last=`."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from registry.auth.base import pull
from registry.handlers.base import authorize, next_link, pagination, repo_name, store


async def list_tags(request: Request) -> Response:
    name = repo_name(request)
    n, last = pagination(request)
    await authorize(request, [pull(name)])
    page = await store(request).list_tags(name, n, last)
    headers = {}
    if page.next_last is not None:
        headers["Link"] = next_link(f"/v2/{name}/tags/list", n, page.next_last)
    return JSONResponse({"name": name, "tags": page.items}, headers=headers)
