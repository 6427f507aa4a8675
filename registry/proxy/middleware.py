"""Pure ASGI middleware: rewrite mirror-style pulls to their local name; refuse pushes to
mirrored namespaces.

Rewriting the path before routing means everything downstream (access rules, handlers,
stores, GC) sees one name per mirrored repository, `<namespace>/<upstream name>`, whichever
of the three forms (registry/proxy/mapping.py) the client used.
"""

from __future__ import annotations

import logging
from urllib.parse import parse_qs

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from ocispec.reference import valid_repository_name
from registry import errors
from registry.proxy import mapping
from registry.proxy.cache import ProxyCache

logger = logging.getLogger("registry.proxy")

_READS = frozenset({"GET", "HEAD"})
_WRITES = frozenset({"POST", "PUT", "PATCH"})


class ProxyMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        cache: ProxyCache | None = None
        if scope["type"] == "http":
            cache = getattr(scope["app"].state, "proxy", None)
        if cache is None or not cache.config.upstreams:
            await self.app(scope, receive, send)
            return
        match = mapping.PATH_RE.match(scope["path"])
        if match is None or not valid_repository_name(match["name"]):
            await self.app(scope, receive, send)  # the handlers render the errors
            return
        name, method = match["name"], scope["method"]
        if method in _WRITES:
            target = mapping.by_local_name(cache.config, name)
            if target is not None and not target.upstream.allow_push:
                denied = errors.DENIED(
                    f"{target.upstream.namespace}/ mirrors {target.upstream.name}: "
                    "pushes are refused",
                    detail={"name": name},
                )
                await JSONResponse(denied.to_json(), status_code=denied.status)(
                    scope, receive, send
                )
                return
        elif method in _READS and match["kind"] in ("manifests", "blobs"):
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            ns = (query.get("ns") or [None])[0]
            target = mapping.by_local_name(cache.config, name)
            if target is None and (ns or cache.config.default is not None):
                local = await cache.local_repository_exists(name)
                target = mapping.for_read(cache.config, name, ns, local)
            if target is not None and target.local != name:
                path = f"/v2/{target.local}/{match['kind']}/{match['rest']}"
                scope = {**scope, "path": path, "raw_path": path.encode()}
        await self.app(scope, receive, send)
