"""`GET /v2/<name>/tags/list?n=&last=`."""

from __future__ import annotations

import json
import re

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from registry.auth.base import pull
from registry.handlers.base import authorize, next_link, pagination, repo_name, store

# characters JSON writes as they are: a page made only of them is joined without an encoder
# (json.dumps of 1000 tags cost ~0.19 ms of the loop; this ~0.04 ms)
_PLAIN = re.compile(r"[A-Za-z0-9_.\-]*")


async def list_tags(request: Request) -> Response:
    name = repo_name(request)
    n, last = pagination(request)
    await authorize(request, [pull(name)])
    page = await store(request).list_tags(name, n, last)
    headers = {}
    if page.next_last is not None:
        headers["Link"] = next_link(f"/v2/{name}/tags/list", n, page.next_last)
    body = tags_json(name, page.items)
    if body is None:
        return JSONResponse({"name": name, "tags": page.items}, headers=headers)
    return Response(body, headers=headers, media_type="application/json")


def tags_json(name: str, tags: list[str]) -> bytes | None:
    """The body JSONResponse would render, or None when a tag holds a character that JSON
    escapes (a stray file in storage; the caller then renders it the general way)."""
    if _PLAIN.fullmatch("".join(tags)) is None:
        return None
    listed = '["' + '","'.join(tags) + '"]' if tags else "[]"
    return f'{{"name":{json.dumps(name, ensure_ascii=False)},"tags":{listed}}}'.encode()
