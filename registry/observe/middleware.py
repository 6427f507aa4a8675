"""`ObserveMiddleware`: per request, a request id, metrics, one access-log line, and the audit
line of a state change. Pure ASGI (it wraps `receive` and `send`, nothing is buffered).

Where it sits: outside `RegistryMiddleware` (so a crash rendered as a 500 is counted), inside
any proxy-trust middleware (so `scope["client"]` is already the real client). The user comes
from `scope[USER_SCOPE]`, which access control fills in when it knows the caller.

The route label is the matched route's template, looked up from the endpoint the router put
in the scope (Starlette's `Route.path`); requests no route matched are `unmatched`.

Cost on the hot path: two closures, a few counter increments (mmap writes in multiprocess
mode) and one log record; see docs/performance.md for the measured difference.
"""

from __future__ import annotations

import logging
import os
import random
import re
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from registry.auth.base import USER_SCOPE
from registry.observe import audit, metrics
from registry.observe.logs import ACCESS_LOGGER, Fields

access_logger = logging.getLogger(ACCESS_LOGGER)

REQUEST_ID_HEADER = b"x-request-id"
REQUEST_ID_SCOPE = "pyreg.request_id"
# What we accept from a client or proxy: ids as tracing systems make them, nothing that could
# break a log line.
_SANE_ID = re.compile(rb"^[A-Za-z0-9][A-Za-z0-9._:+/=-]{0,127}$")
UNMATCHED = "unmatched"

_NAME = "/v2/{name:path}"
MANIFEST = f"{_NAME}/manifests/{{reference}}"
BLOB = f"{_NAME}/blobs/{{digest}}"
UPLOAD_STARTS = (f"{_NAME}/blobs/uploads/", f"{_NAME}/blobs/uploads")
UPLOAD = f"{_NAME}/blobs/uploads/{{upload_id}}"


# Made ids come from a generator seeded from os.urandom, not from os.urandom per request: the
# getrandom call released the GIL on the event-loop thread, which then waited for a storage
# thread to hand it back (~4 % of the loop's samples on a manifest PUT). An id is a label for
# logs, not a secret; reseeded in a forked child so two workers never make the same ids.
_IDS = random.Random(os.urandom(32))


def _reseed() -> None:
    _IDS.seed(os.urandom(32))


os.register_at_fork(after_in_child=_reseed)


def request_id(scope: Scope) -> str:
    for key, value in scope["headers"]:
        if key == REQUEST_ID_HEADER:
            if _SANE_ID.match(value):
                return bytes(value).decode("ascii")
            break
    return f"{_IDS.getrandbits(128):032x}"


class _Routes:
    """Endpoint -> route template, rebuilt when a route appears (the token endpoint is
    mounted by the lifespan)."""

    def __init__(self) -> None:
        self._paths: dict[Any, str] = {}

    def template(self, scope: Scope) -> str:
        endpoint = scope.get("endpoint")
        if endpoint is None:
            return UNMATCHED
        path = self._paths.get(endpoint)
        if path is None:
            app = scope.get("app")
            routes = getattr(getattr(app, "router", None), "routes", [])
            self._paths = {
                getattr(r, "endpoint", None): str(getattr(r, "path", UNMATCHED)) for r in routes
            }
            path = self._paths.get(endpoint, UNMATCHED)
        return path


class _Series:
    """The labelled children of the request metrics, resolved once per (method, route,
    status): `.labels()` validates, stringifies and locks on every call. Bounded as the
    labels are (route templates, known methods, statuses). The byte counters' children are
    made on the first bytes, as before: a route that never sent any shows no series."""

    __slots__ = ("_received", "_sent", "latency", "method", "requests", "route")

    def __init__(self, method: str, route: str, status: int) -> None:
        self.method, self.route = method, route
        self.requests = metrics.REQUESTS.labels(method, route, str(status))
        self.latency = metrics.LATENCY.labels(method, route)
        self._received: Any = None
        self._sent: Any = None

    def received(self, n: int) -> None:
        if self._received is None:
            self._received = metrics.RECEIVED.labels(self.method, self.route)
        self._received.inc(n)

    def sent(self, n: int) -> None:
        if self._sent is None:
            self._sent = metrics.SENT.labels(self.method, self.route)
        self._sent.inc(n)


class ObserveMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._routes = _Routes()
        self._series: dict[tuple[str, str, int], _Series] = {}

    def series(self, method: str, route: str, status: int) -> _Series:
        key = (method, route, status)
        found = self._series.get(key)
        if found is None:
            found = self._series[key] = _Series(method, route, status)
        return found

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        rid = request_id(scope)
        scope[REQUEST_ID_SCOPE] = rid
        rid_header = (REQUEST_ID_HEADER, rid.encode("ascii"))
        received = sent = status = 0
        response_headers: list[tuple[bytes, bytes]] = []

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
            return message

        async def observing_send(message: Message) -> None:
            nonlocal sent, status, response_headers
            if message["type"] == "http.response.start":
                status = message["status"]
                response_headers = [*message.get("headers", ()), rid_header]
                message = {**message, "headers": response_headers}
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            elif message["type"] == "http.response.zerocopysend":  # registry/zerocopy.py
                sent += message.get("count", 0)
            await send(message)

        method = scope["method"]
        upload = method in ("POST", "PATCH", "PUT") and "/blobs/uploads" in scope["path"]
        metrics.IN_FLIGHT.inc()
        if upload:
            metrics.UPLOADS_IN_PROGRESS.inc()
        try:
            await self.app(scope, counting_receive, observing_send)
        finally:
            metrics.IN_FLIGHT.dec()
            if upload:
                metrics.UPLOADS_IN_PROGRESS.dec()
            duration = time.perf_counter() - started
            route = self._routes.template(scope)
            series = self.series(metrics.method_label(method), route, status)
            series.requests.inc()
            series.latency.observe(duration)
            if received:
                series.received(received)
            if sent:
                series.sent(sent)
            if 200 <= status < 400:
                outcome = _OUTCOMES.get((method, route))
                if outcome is not None:
                    outcome(scope, status, response_headers)
            if access_logger.isEnabledFor(logging.INFO):
                _access_line(scope, rid, method, route, status, received, sent, duration)


def _client(scope: Scope) -> str | None:
    client = scope.get("client")
    return str(client[0]) if client else None


def _access_line(
    scope: Scope,
    rid: str,
    method: str,
    route: str,
    status: int,
    received: int,
    sent: int,
    duration: float,
) -> None:
    params = scope.get("path_params") or {}
    fields = {
        "request_id": rid,
        "client": _client(scope),
        "user": scope.get(USER_SCOPE),
        "method": method,
        "route": route,
        "repository": params.get("name"),
        "reference": params.get("reference") or params.get("digest"),
        "status": status,
        "bytes_in": received,
        "bytes_out": sent,
        "duration_ms": round(duration * 1000, 3),
    }
    access_logger.info("%s", Fields(fields), extra={"fields": fields})


# -- outcomes: the content counters and audit lines of successful requests ---------------------

Outcome = Callable[[Scope, int, list[tuple[bytes, bytes]]], None]


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _who(scope: Scope) -> dict[str, Any]:
    params = scope.get("path_params") or {}
    return {
        "repository": params.get("name"),
        "user": scope.get(USER_SCOPE),
        "client": _client(scope),
        "request_id": scope.get(REQUEST_ID_SCOPE),
    }


def _query(scope: Scope) -> dict[str, list[str]]:
    return parse_qs(scope.get("query_string", b"").decode("latin-1"))


def _manifest_pulled(scope: Scope, status: int, headers: list[tuple[bytes, bytes]]) -> None:
    if status == 200:
        metrics.MANIFESTS_PULLED.inc()


def _blob_pulled(scope: Scope, status: int, headers: list[tuple[bytes, bytes]]) -> None:
    if status in (200, 206, 307):
        metrics.BLOBS_PULLED.inc()


def _manifest_pushed(scope: Scope, status: int, headers: list[tuple[bytes, bytes]]) -> None:
    metrics.MANIFESTS_PUSHED.inc()
    reference = str((scope.get("path_params") or {}).get("reference", ""))
    tags = [] if ":" in reference else [reference]
    tags += _query(scope).get("tag", [])
    digest = _header(headers, b"docker-content-digest")
    audit.record("manifest.push", **_who(scope), digest=digest, tags=",".join(tags) or None)


def _manifest_deleted(scope: Scope, status: int, headers: list[tuple[bytes, bytes]]) -> None:
    metrics.MANIFESTS_DELETED.inc()
    reference = str((scope.get("path_params") or {}).get("reference", ""))
    if ":" in reference:  # a digest: the manifest and every tag on it
        audit.record("manifest.delete", **_who(scope), digest=reference)
    else:
        audit.record("tag.delete", **_who(scope), tag=reference)


def _blob_deleted(scope: Scope, status: int, headers: list[tuple[bytes, bytes]]) -> None:
    metrics.BLOBS_DELETED.inc()
    digest = (scope.get("path_params") or {}).get("digest")
    audit.record("blob.delete", **_who(scope), digest=digest)


def _upload_started(scope: Scope, status: int, headers: list[tuple[bytes, bytes]]) -> None:
    if status != 201:  # 202: a session opened (also when a mount fell back to one)
        return
    query = _query(scope)
    digest = _header(headers, b"docker-content-digest")
    if "mount" in query:
        metrics.BLOBS_MOUNTED.inc()
        source = query.get("from", [None])[0]
        audit.record("blob.mount", **_who(scope), digest=digest, source=source)
    else:
        metrics.BLOBS_PUSHED.inc()
        audit.record("blob.upload", **_who(scope), digest=digest)


def _upload_committed(scope: Scope, status: int, headers: list[tuple[bytes, bytes]]) -> None:
    metrics.BLOBS_PUSHED.inc()
    digest = _header(headers, b"docker-content-digest")
    audit.record("blob.upload", **_who(scope), digest=digest)


_OUTCOMES: dict[tuple[str, str], Outcome] = {
    ("GET", MANIFEST): _manifest_pulled,
    ("PUT", MANIFEST): _manifest_pushed,
    ("DELETE", MANIFEST): _manifest_deleted,
    ("GET", BLOB): _blob_pulled,
    ("DELETE", BLOB): _blob_deleted,
    ("PUT", UPLOAD): _upload_committed,
    **{("POST", start): _upload_started for start in UPLOAD_STARTS},
}
