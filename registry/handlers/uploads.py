"""Blob uploads: `POST /v2/<name>/blobs/uploads/` (session, monolithic, mount) and
`PATCH`/`PUT`/`GET`/`DELETE` on the session's location."""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.responses import Response

from ocispec.reference import valid_repository_name
from registry import errors
from registry.auth.base import ANONYMOUS, Principal, credentials_cover, pull, push
from registry.events import emit
from registry.handlers.base import (
    access,
    authorize,
    content_length,
    empty,
    header_number,
    parse_digest,
    repo_name,
    store,
)
from registry.stores.uploads import UploadState

# The spec's `^[0-9]+-[0-9]+$`, tolerating the `bytes ` prefix and `/total` some clients send.
_CONTENT_RANGE_RE = re.compile(r"^(?:bytes[ =])?([0-9]+)-([0-9]+)(?:/(?:[0-9]+|\*))?$")


def _session_headers(name: str, state: UploadState) -> dict[str, str]:
    # distribution answers `0-0` for an empty session; clients expect that form.
    return {
        "Location": f"/v2/{name}/blobs/uploads/{state.id}",
        "Range": f"0-{max(state.offset - 1, 0)}",
        "Docker-Upload-UUID": state.id,
    }


def _blob_created(name: str, digest: str) -> Response:
    return empty(201, {"Location": f"/v2/{name}/blobs/{digest}", "Docker-Content-Digest": digest})


def _content_range(request: Request) -> tuple[int, int] | None:
    """(start, length) from Content-Range, checked against Content-Length."""
    raw = request.headers.get("content-range")
    if raw is None:
        return None
    invalid = errors.BLOB_UPLOAD_RANGE_INVALID(f"invalid Content-Range {raw[:80]!r}")
    # The `/total` part may be as long as the header allows: the regex checks it, nothing
    # converts it. The two positions go through header_number (bounded digits).
    match = _CONTENT_RANGE_RE.match(raw.strip())
    if match is None:
        raise invalid
    start, end = header_number(match.group(1)), header_number(match.group(2))
    if start is None or end is None or end < start:
        raise invalid
    length = end - start + 1
    declared = content_length(request)
    if declared is not None and declared != length:
        raise errors.SIZE_INVALID(f"Content-Range {raw!r} but Content-Length {declared}")
    return start, length


async def start_upload(request: Request) -> Response:
    name = repo_name(request)
    principal = await authorize(request, [pull(name), push(name)])
    registry_store = store(request)
    query = request.query_params
    if "mount" in query:
        mounted = await _mount(request, principal, name, query["mount"], query.get("from"))
        if mounted is not None:
            return mounted
    elif "digest" in query:
        digest = parse_digest(query["digest"])
        length = content_length(request)
        await registry_store.uploads.put_monolithic(name, digest, request.stream(), length)
        await emit.blob_pushed(request, name, digest, length)
        return _blob_created(name, str(digest))
    state = await registry_store.uploads.start(name, query.get("digest-algorithm", "sha256"))
    return empty(202, _session_headers(name, state))


async def _mount(
    request: Request, principal: Principal, name: str, raw_digest: str, source: str | None
) -> Response | None:
    """201 when the blob could be mounted, None to fall back to a normal session.

    Only from a named source the caller may pull, and only that source is looked at: a mount
    without `from` opens a plain session. (It used to search every repository for the digest,
    and its time told whether the digest existed anywhere, private repositories included.)"""
    digest = parse_digest(raw_digest)
    if source is None or not valid_repository_name(source):
        return None  # no automatic content discovery (the conformance suite's "disabled")
    blobs = store(request).blobs
    if await blobs.is_linked(name, digest) and await blobs.exists(digest):
        return _blob_created(name, str(digest))  # already there: nothing to mount
    if await _may_pull(request, principal, source) and await blobs.mount(name, digest, source):
        await emit.blob_pushed(request, name, digest, None, source=source)
        return _blob_created(name, str(digest))
    return None


async def _may_pull(request: Request, principal: Principal, repo: str) -> bool:
    need = pull(repo)
    controller = access(request)
    if not await controller.may(request, principal, need):
        return False
    # a Bearer token reads only where its scopes say (or what anyone may read)
    return credentials_cover(request, need) or await controller.may(request, ANONYMOUS, need)


async def _load(request: Request) -> tuple[str, UploadState]:
    name = repo_name(request)
    await authorize(request, [pull(name), push(name)])
    state = await store(request).uploads.load(name, str(request.path_params["upload_id"]))
    return name, state


async def patch_upload(request: Request) -> Response:
    name, state = await _load(request)
    try:
        chunk = _content_range(request)
        start, length = chunk if chunk else (None, content_length(request))
        state = await store(request).uploads.append(state, request.stream(), start, length)
    except errors.RegistryError as exc:
        # A client that lost its place needs the session's location and offset (spec: 416).
        exc.headers.update(_session_headers(name, state))
        raise
    return empty(202, _session_headers(name, state))


async def put_upload(request: Request) -> Response:
    digest = parse_digest(request.query_params.get("digest"))
    name, state = await _load(request)
    uploads = store(request).uploads
    chunk = _content_range(request)
    start, length = chunk if chunk else (None, content_length(request))
    if length != 0:  # a final chunk in the closing PUT (or a body of unknown length)
        try:
            if uploads.is_empty(state):  # the whole blob in this PUT: no parts, no join
                await uploads.commit_whole(state, digest, request.stream(), start, length)
                await emit.blob_pushed(request, name, digest, state.offset)
                return _blob_created(name, str(digest))
            state = await uploads.append(state, request.stream(), start, length, save=False)
        except errors.RegistryError as exc:
            exc.headers.update(_session_headers(name, state))
            raise
    await uploads.commit(state, digest)
    await emit.blob_pushed(request, name, digest, state.offset)
    return _blob_created(name, str(digest))


async def upload_status(request: Request) -> Response:
    name, state = await _load(request)
    return empty(204, _session_headers(name, state))


async def cancel_upload(request: Request) -> Response:
    name, state = await _load(request)
    await store(request).uploads.cancel(name, state.id)
    return empty(204)
