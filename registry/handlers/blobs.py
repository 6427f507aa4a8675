"""`GET`/`HEAD`/`DELETE /v2/<name>/blobs/<digest>`: streamed, with single byte ranges."""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse

from registry import errors, zerocopy
from registry.auth.base import delete, pull
from registry.events import emit
from registry.handlers.base import (
    MAX_DIGITS,
    authorize,
    empty,
    parse_digest,
    repo_name,
    store,
)
from registry.proxy import hooks as proxy

_RANGE_RE = re.compile(r"^bytes=([0-9]*)-([0-9]*)$")
#: bodies from this size on go out by `sendfile` where they can; smaller ones are one read
#: (a file of their own would cost two more thread hops than it saves)
ZEROCOPY_MIN = 1024 * 1024


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """One `bytes=` range as (offset, length); None means "send everything" (no header, or a
    syntax we ignore as RFC 9110 allows, such as several ranges). Unsatisfiable: RANGE_INVALID."""
    if header is None:
        return None
    match = _RANGE_RE.match(header.strip())
    if match is None:
        return None
    first, last = match.groups()
    unsatisfiable = errors.RANGE_INVALID(
        f"range {header[:80]!r} not satisfiable for {size} bytes",
        headers={"Content-Range": f"bytes */{size}"},
    )
    if len(first) > MAX_DIGITS or len(last) > MAX_DIGITS:
        raise unsatisfiable  # past any blob's size (and past what int() parses): refused
    if not first:
        if not last:
            return None
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise unsatisfiable
        start = max(0, size - suffix)
        return start, size - start
    start = int(first)
    # An inverted range (`500-0`) is answered with 416, as the conformance suite expects.
    if start >= size or (last and int(last) < start):
        raise unsatisfiable
    end = int(last) if last else size - 1
    end = min(end, size - 1)
    return start, end - start + 1


async def get_blob(request: Request) -> Response:
    name = repo_name(request)
    digest = parse_digest(request.path_params["digest"])
    await authorize(request, [pull(name)])
    mirrored = await proxy.blob_response(request, name, digest)  # a miss of a mirrored repository
    if mirrored is not None:
        return mirrored
    blobs = store(request).blobs
    size = await blobs.size(name, digest)
    etag = f'"{digest}"'
    headers = {"Docker-Content-Digest": str(digest), "ETag": etag, "Accept-Ranges": "bytes"}
    if request.method == "GET":
        url = await blobs.redirect_url(digest)
        if url is not None:
            emit.blob_pulled(request, name, digest, size)
            return RedirectResponse(url, status_code=307, headers=headers)
    if request.headers.get("if-none-match") == etag:
        return empty(304, headers)
    byte_range = parse_range(request.headers.get("range"), size)
    status, offset, length = 200, 0, size
    if byte_range is not None:
        status, (offset, length) = 206, byte_range
        headers["Content-Range"] = f"bytes {offset}-{offset + length - 1}/{size}"
    headers["Content-Length"] = str(length)
    if request.method == "HEAD":
        return Response(status_code=status, headers=headers, media_type="application/octet-stream")
    emit.blob_pulled(request, name, digest, size)
    if length >= ZEROCOPY_MIN and zerocopy.offered(request.scope):
        file = await blobs.open_local(digest)
        if file is not None:  # the kernel sends it: no bytes through Python
            return zerocopy.FileResponse(
                file, offset, length, status, headers, "application/octet-stream"
            )
    return StreamingResponse(
        blobs.read(digest, offset, length),
        status_code=status,
        headers=headers,
        media_type="application/octet-stream",
    )


async def delete_blob(request: Request) -> Response:
    name = repo_name(request)
    digest = parse_digest(request.path_params["digest"])
    await authorize(request, [delete(name)])
    await store(request).blobs.unlink(name, digest)
    await emit.blob_deleted(request, name, digest)
    return empty(202, {"Docker-Content-Digest": str(digest)})
