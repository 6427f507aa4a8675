"""Events in distribution's notification format, so receivers written for registry:2 work.

One event (fields left out when empty, as distribution's `omitempty`):

    {"id": "<uuid>", "timestamp": "2026-12-01T14:00:00.123456Z",
     "action": "push" | "pull" | "delete" | "mount",
     "target": {"mediaType", "size", "digest", "length", "repository", "fromRepository",
                "url", "tag"},
     "request": {"id", "addr", "host", "method", "useragent"},
     "actor": {"name"},
     "source": {"addr", "instanceID"}}

A POST carries an envelope `{"events": [...]}` with `Content-Type: MEDIA_TYPE`. With an
endpoint `secret`, it also carries `SIGNATURE_HEADER: sha256=<hex>`, the HMAC-SHA256 of the
exact body bytes keyed with the secret (receivers compare it in constant time; the event ids
and timestamps inside let them drop duplicates and replays).
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

MEDIA_TYPE = "application/vnd.docker.distribution.events.v1+json"
SIGNATURE_HEADER = "X-Pyreg-Signature-256"
BLOB_MEDIA_TYPE = "application/octet-stream"  # what distribution reports for blobs


def _drop_empty(record: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if v not in (None, "", {})}


def timestamp(now: datetime.datetime | None = None) -> str:
    moment = now or datetime.datetime.now(datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def make_event(
    action: str,
    target: Mapping[str, Any],
    request: Mapping[str, Any],
    actor: str | None,
    source: Mapping[str, Any],
) -> dict[str, Any]:
    target_record = _drop_empty(target)
    if "size" in target_record:
        target_record["length"] = target_record["size"]  # distribution sends both
    return _drop_empty(
        {
            "id": str(uuid.uuid4()),
            "timestamp": timestamp(),
            "action": action,
            "target": target_record,
            "request": _drop_empty(request),
            "actor": _drop_empty({"name": actor}),
            "source": _drop_empty(source),
        }
    )


def envelope(events: Sequence[Mapping[str, Any]]) -> bytes:
    return json.dumps({"events": list(events)}, separators=(",", ":")).encode()


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_signature(secret: str, body: bytes, header: str | None) -> bool:
    """What a receiver does (shown in docs/events.md, used by the tests)."""
    return header is not None and hmac.compare_digest(signature(secret, body), header)
