"""One call per thing that happened, for the handlers: builds the event from the request
(who, from where, which request) and hands it to the app's recorder. Without notifications
configured (`app.state.events` is None) each call is a no-op costing one attribute lookup."""

from __future__ import annotations

import json
import uuid
from typing import Any

from starlette.requests import Request

from ocispec.digest import Digest
from registry.events.envelope import BLOB_MEDIA_TYPE, make_event
from registry.events.recorder import EventRecorder


def _recorder(request: Request) -> EventRecorder | None:
    service = getattr(request.app.state, "events", None)
    return None if service is None else service.recorder  # type: ignore[no-any-return]


def _event(
    recorder: EventRecorder, request: Request, action: str, target: dict[str, Any]
) -> dict[str, Any]:
    client = request.client
    record = {
        "id": request.headers.get("x-request-id") or str(uuid.uuid4()),
        "addr": f"{client.host}:{client.port}" if client else "",
        "host": request.headers.get("host", ""),
        "method": request.method,
        "useragent": request.headers.get("user-agent", ""),
    }
    principal = getattr(request.state, "principal", None)
    actor = getattr(principal, "name", None)
    base = str(request.base_url).rstrip("/")
    target = {**target, "url": base + target.pop("path")} if "path" in target else target
    return make_event(action, target, record, actor, recorder.source)


def _manifest_target(
    name: str, digest: Digest, media_type: str, size: int, tag: str | None
) -> dict[str, Any]:
    return {
        "mediaType": media_type,
        "size": size,
        "digest": str(digest),
        "repository": name,
        "path": f"/v2/{name}/manifests/{digest}",
        "tag": tag,
    }


def _blob_target(name: str, digest: Digest, size: int | None) -> dict[str, Any]:
    return {
        "mediaType": BLOB_MEDIA_TYPE,
        "size": size,
        "digest": str(digest),
        "repository": name,
        "path": f"/v2/{name}/blobs/{digest}",
    }


def _declared_media_type(data: bytes) -> str:
    """The manifest's own `mediaType`, for a push that came without a Content-Type."""
    try:
        declared = json.loads(data).get("mediaType")
    except (ValueError, AttributeError):
        return ""
    return declared if isinstance(declared, str) else ""


async def manifest_pushed(
    request: Request,
    name: str,
    digest: Digest,
    content_type: str | None,
    data: bytes,
    tags: list[str],
) -> None:
    """One event per tag set (distribution's shape), or one without a tag."""
    recorder = _recorder(request)
    if recorder is None:
        return
    media_type, size = content_type or _declared_media_type(data), len(data)
    tagged: list[str | None] = list(tags) or [None]
    targets = [_manifest_target(name, digest, media_type, size, t) for t in tagged]
    await recorder.record([_event(recorder, request, "push", t) for t in targets])


def manifest_pulled(
    request: Request, name: str, digest: Digest, media_type: str, size: int, tag: str | None
) -> None:
    recorder = _recorder(request)
    if recorder is not None:
        target = _manifest_target(name, digest, media_type, size, tag)
        recorder.record_pull(_event(recorder, request, "pull", target))


async def manifest_deleted(request: Request, name: str, reference: Digest | str) -> None:
    recorder = _recorder(request)
    if recorder is None:
        return
    if isinstance(reference, Digest):
        target = {"digest": str(reference), "repository": name}
    else:
        target = {"repository": name, "tag": reference}
    await recorder.record([_event(recorder, request, "delete", target)])


async def blob_pushed(
    request: Request, name: str, digest: Digest, size: int | None, source: str | None = None
) -> None:
    """A blob upload completed, or (with `source`) a mount from that repository."""
    recorder = _recorder(request)
    if recorder is None:
        return
    target = _blob_target(name, digest, size)
    if source is not None:
        target["fromRepository"] = source
    action = "push" if source is None else "mount"
    await recorder.record([_event(recorder, request, action, target)])


def blob_pulled(request: Request, name: str, digest: Digest, size: int) -> None:
    recorder = _recorder(request)
    if recorder is not None:
        recorder.record_pull(_event(recorder, request, "pull", _blob_target(name, digest, size)))


async def blob_deleted(request: Request, name: str, digest: Digest) -> None:
    recorder = _recorder(request)
    if recorder is not None:
        target = {"digest": str(digest), "repository": name}
        await recorder.record([_event(recorder, request, "delete", target)])
