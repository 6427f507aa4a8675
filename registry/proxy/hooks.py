"""The two calls the manifest and blob handlers make, after authorizing and before reading the
local stores. Both are no-ops for repositories that mirror nothing."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from ocispec.digest import Digest
from registry import errors
from registry.proxy import mapping
from registry.proxy.cache import ProxyCache


def _cache(request: Request) -> ProxyCache | None:
    cache: ProxyCache | None = getattr(request.app.state, "proxy", None)
    return cache


async def ensure_manifest(request: Request, name: str, reference: Digest | str) -> None:
    """Bring a mirrored manifest into the local store (or raise what the client should see)."""
    cache = _cache(request)
    target = mapping.by_local_name(cache.config, name) if cache is not None else None
    if cache is not None and target is not None:
        await cache.ensure_manifest(target, reference)


async def blob_response(request: Request, name: str, digest: Digest) -> Response | None:
    """None: serve the blob from the local store as usual. Otherwise the answer of a miss,
    streamed from the upstream as it is cached."""
    cache = _cache(request)
    target = mapping.by_local_name(cache.config, name) if cache is not None else None
    if cache is None or target is None or await cache.blob_is_local(target, digest):
        return None
    headers = {"Docker-Content-Digest": str(digest), "ETag": f'"{digest}"'}
    if request.method == "HEAD":
        size = await cache.upstream_blob_size(target, digest)
        if size is None:
            raise errors.BLOB_UNKNOWN(detail={"digest": str(digest)})
        headers["Content-Length"] = str(size)
        return Response(status_code=200, headers=headers, media_type="application/octet-stream")
    fetch = cache.blob_fetch(target, digest)
    queue = fetch.subscribe()
    if queue is None:
        # shielded: a waiter that goes away must not cancel what the others wait for
        await asyncio.shield(fetch.done)  # too late to join the stream: the blob is being stored
        return None
    try:
        size = await asyncio.shield(fetch.ready)
    except BaseException:
        fetch.unsubscribe(queue)
        raise
    if fetch.from_storage:
        fetch.unsubscribe(queue)
        return None
    if size is not None:
        headers["Content-Length"] = str(size)
    return StreamingResponse(
        fetch.body(queue), headers=headers, media_type="application/octet-stream"
    )
