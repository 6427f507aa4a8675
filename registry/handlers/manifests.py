"""`GET`/`HEAD`/`PUT`/`DELETE /v2/<name>/manifests/<tag-or-digest>`."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from ocispec.digest import Digest
from ocispec.reference import valid_tag
from registry import errors
from registry.auth.base import delete, pull, push
from registry.events import emit
from registry.handlers.base import (
    authorize,
    content_length,
    empty,
    media_type,
    repo_name,
    settings,
    store,
)
from registry.proxy import hooks as proxy
from registry.stores.manifests import parse_reference


def _existing_reference(request: Request) -> Digest | str:
    """The reference of a GET, HEAD or DELETE: a name outside the tag grammar cannot name a
    manifest, so it is 404 MANIFEST_UNKNOWN (the conformance suite asks `.INVALID_MANIFEST_NAME`
    for a 404); only a PUT, which would create it, refuses it as invalid."""
    raw = request.path_params["reference"]
    try:
        return parse_reference(raw)
    except errors.TAG_INVALID:
        raise errors.MANIFEST_UNKNOWN(detail={"reference": raw}) from None


async def get_manifest(request: Request) -> Response:
    name = repo_name(request)
    reference = _existing_reference(request)
    await authorize(request, [pull(name)])
    await proxy.ensure_manifest(request, name, reference)  # mirrored repositories only
    stored = await store(request).manifests.get(name, reference)
    etag = f'"{stored.digest}"'
    headers = {
        "Docker-Content-Digest": str(stored.digest),
        "ETag": etag,
        "Content-Length": str(len(stored.data)),
    }
    # Content negotiation stays permissive, as distribution's for OCI types: the manifest is
    # returned as stored whatever the Accept header lists, and its type is declared exactly.
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    body = b"" if request.method == "HEAD" else stored.data
    if body:
        tag = reference if isinstance(reference, str) else None
        emit.manifest_pulled(request, name, stored.digest, stored.media_type, len(body), tag)
    return Response(body, headers=headers, media_type=stored.media_type)


async def _read_limited(request: Request, limit: int) -> bytes:
    declared = content_length(request)
    too_large = errors.MANIFEST_TOO_LARGE(f"manifests are limited to {limit} bytes")
    if declared is not None and declared > limit:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large
    return bytes(body)


async def put_manifest(request: Request) -> Response:
    name = repo_name(request)
    reference = parse_reference(request.path_params["reference"])
    extra_tags = request.query_params.getlist("tag")
    if extra_tags and not isinstance(reference, Digest):
        raise errors.TAG_INVALID("`tag` parameters need a push by digest")
    for tag in extra_tags:
        if not valid_tag(tag):
            raise errors.TAG_INVALID(detail={"tag": tag})
    await authorize(request, [pull(name), push(name)])
    data = await _read_limited(request, settings(request).max_manifest_size)
    result = await store(request).manifests.put(
        name, reference, data, media_type(request), extra_tags
    )
    headers = {
        "Location": f"/v2/{name}/manifests/{result.digest}",
        "Docker-Content-Digest": str(result.digest),
    }
    if result.subject is not None:
        headers["OCI-Subject"] = str(result.subject)
    if extra_tags:
        headers["OCI-Tag"] = ", ".join(extra_tags)
    tags = [reference] if isinstance(reference, str) else extra_tags
    await emit.manifest_pushed(request, name, result.digest, media_type(request), data, tags)
    return empty(201, headers)


async def delete_manifest(request: Request) -> Response:
    name = repo_name(request)
    reference = _existing_reference(request)
    await authorize(request, [delete(name)])
    await store(request).manifests.delete(name, reference)
    await emit.manifest_deleted(request, name, reference)
    return empty(202)
