"""OCI error codes with their HTTP status, raised as `RegistryError` and rendered in one place.

Handlers and stores raise; `render()` (installed as the app's exception handler) turns any of
them into the spec's JSON body: {"errors": [{"code", "message", "detail"}]}.
"""

from __future__ import annotations

from typing import Any


class RegistryError(Exception):
    code: str = "UNKNOWN"
    status: int = 500
    default_message: str = "unknown error"

    def __init__(
        self,
        message: str | None = None,
        detail: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message or self.default_message)
        self.message = message or self.default_message
        self.detail = detail
        self.headers = headers or {}

    def to_json(self) -> dict[str, Any]:
        return {"errors": [{"code": self.code, "message": self.message, "detail": self.detail}]}


def _code(name: str, status: int, message: str) -> type[RegistryError]:
    attrs = {"code": name, "status": status, "default_message": message}
    return type(name, (RegistryError,), attrs)


# The spec's codes (distribution-spec/spec.md, "Error Codes"), with the status distribution uses.
BLOB_UNKNOWN = _code("BLOB_UNKNOWN", 404, "blob unknown to registry")
BLOB_UPLOAD_INVALID = _code("BLOB_UPLOAD_INVALID", 400, "blob upload invalid")
BLOB_UPLOAD_UNKNOWN = _code("BLOB_UPLOAD_UNKNOWN", 404, "blob upload unknown to registry")
DIGEST_INVALID = _code("DIGEST_INVALID", 400, "provided digest did not match uploaded content")
MANIFEST_BLOB_UNKNOWN = _code("MANIFEST_BLOB_UNKNOWN", 404, "manifest references unknown blob")
MANIFEST_INVALID = _code("MANIFEST_INVALID", 400, "manifest invalid")
MANIFEST_UNKNOWN = _code("MANIFEST_UNKNOWN", 404, "manifest unknown")
NAME_INVALID = _code("NAME_INVALID", 400, "invalid repository name")
NAME_UNKNOWN = _code("NAME_UNKNOWN", 404, "repository name not known to registry")
SIZE_INVALID = _code("SIZE_INVALID", 400, "provided length did not match content length")
UNAUTHORIZED = _code("UNAUTHORIZED", 401, "authentication required")
DENIED = _code("DENIED", 403, "requested access to the resource is denied")
UNSUPPORTED = _code("UNSUPPORTED", 405, "the operation is unsupported")
TOOMANYREQUESTS = _code("TOOMANYREQUESTS", 429, "too many requests")
# Not in the spec's table but used by distribution for malformed pagination and the like.
PAGINATION_NUMBER_INVALID = _code("PAGINATION_NUMBER_INVALID", 400, "invalid number of results")
RANGE_INVALID = _code("RANGE_INVALID", 416, "invalid content range")
MANIFEST_TOO_LARGE = _code("MANIFEST_INVALID", 413, "manifest too large")
# A chunk that does not start at the upload's offset (distribution answers 416 with this code).
BLOB_UPLOAD_RANGE_INVALID = _code("BLOB_UPLOAD_INVALID", 416, "chunk out of order")
# Unknown endpoints and methods, rendered in the spec's JSON shape.
ROUTE_UNKNOWN = _code("UNSUPPORTED", 404, "unknown API endpoint")
METHOD_NOT_ALLOWED = _code("UNSUPPORTED", 405, "method not allowed on this endpoint")
TAG_INVALID = _code("MANIFEST_INVALID", 400, "invalid tag")
# Storage outages (storage_backends.base.StorageUnavailable/StorageFull), rendered by app.py:
# the client may retry; nothing it sent was wrong.
STORAGE_UNAVAILABLE = _code("UNAVAILABLE", 503, "storage unavailable, retry later")
STORAGE_FULL = _code("UNKNOWN", 507, "storage full")
#: seconds a client is told to wait before retrying after a storage outage
STORAGE_RETRY_AFTER = 10
# Request heads refused by the HTTP layer (registry/http_limits.py), before any handler runs.
HEADERS_TOO_LARGE = _code("UNSUPPORTED", 431, "request header fields too large")
URI_TOO_LONG = _code("UNSUPPORTED", 414, "request URI too long")
REQUEST_TIMEOUT = _code("UNSUPPORTED", 408, "request headers did not arrive in time")
# Pull-through cache (registry.proxy): the upstream failed and nothing cached could answer.
UPSTREAM_ERROR = _code("UNKNOWN", 502, "the upstream registry failed")
UPSTREAM_UNAVAILABLE = _code("UNAVAILABLE", 503, "the upstream registry is unavailable")
