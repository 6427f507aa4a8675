"""`create_app(settings)`: the registry as a Starlette app.

The lifespan opens the storage backend and builds the access controller (mounting its routes,
e.g. a token endpoint). Errors are rendered in one place: typed `RegistryError`s and unknown
routes/methods as the spec's JSON; anything unexpected as a JSON 500 without a traceback
(logged here instead).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from registry import errors
from registry.auth import build_access
from registry.client_address import ClientAddressMiddleware
from registry.events.service import EventService
from registry.handlers.base import API_VERSION, API_VERSION_HEADER
from registry.observe import gc_record, multiproc
from registry.observe.bridge import StatsBridge
from registry.observe.exposition import metrics_page
from registry.observe.middleware import ObserveMiddleware
from registry.observe.storage import InstrumentedBackend
from registry.policies.config import parse_policies
from registry.proxy.cache import ProxyCache
from registry.proxy.config import parse_proxy_config
from registry.proxy.middleware import ProxyMiddleware
from registry.readonly import ReadOnlyMiddleware
from registry.routes import ROUTES
from registry.settings import SETTINGS_ENV, Settings
from registry.shared import open_redis
from registry.shared.blobcache import RedisBlobCache
from registry.stores.foreign import parse_validation
from registry.stores.repository import RegistryStore
from storage_backends import open_backend
from storage_backends.base import (
    InvalidPath,
    StorageBackend,
    StorageError,
    StorageFull,
    StorageUnavailable,
)

logger = logging.getLogger("registry")


def render_error(exc: errors.RegistryError) -> Response:
    return JSONResponse(exc.to_json(), status_code=exc.status, headers=exc.headers)


async def _registry_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, errors.RegistryError)
    return render_error(exc)


async def _storage_error(request: Request, exc: Exception) -> Response:
    """A storage failure is the server's trouble, not the client's: 503 (507 when full) with
    Retry-After, logged with its cause. (An invalid key is a bug here: a plain 500.)"""
    assert isinstance(exc, StorageError)
    where = f"{request.method} {request.url.path}"
    if isinstance(exc, InvalidPath):
        logger.error("invalid storage key on %s", where, exc_info=exc)
        return render_error(errors.RegistryError("internal server error"))
    cause = exc.__cause__ or exc
    logger.error("storage failed on %s: %s (%r)", where, exc, cause)
    kind = errors.STORAGE_FULL if isinstance(exc, StorageFull) else errors.STORAGE_UNAVAILABLE
    storage = exc.storage if isinstance(exc, StorageUnavailable) else "storage backend"
    retry = {"Retry-After": str(errors.STORAGE_RETRY_AFTER)}
    return render_error(kind(f"{kind.default_message}: {storage}", headers=retry))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    error: errors.RegistryError
    if exc.status_code == 404:
        error = errors.ROUTE_UNKNOWN(detail={"path": request.url.path})
    elif exc.status_code == 405:
        error = errors.METHOD_NOT_ALLOWED(headers=dict(exc.headers or {}))
    else:
        error = errors.RegistryError(exc.detail, headers=dict(exc.headers or {}))
        error.status = exc.status_code
    return render_error(error)


class RegistryMiddleware:
    """Adds the API version header to every response; turns a crash into a JSON 500."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_with_version(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                MutableHeaders(scope=message).append(API_VERSION_HEADER, API_VERSION)
            await send(message)

        try:
            await self.app(scope, receive, send_with_version)
        except ClientDisconnect:
            logger.info("client went away: %s %s", scope.get("method"), scope.get("path"))
        except Exception:
            logger.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if not started:
                error = errors.RegistryError("internal server error")
                await render_error(error)(scope, receive, send_with_version)


async def purge_uploads_forever(store: RegistryStore, ttl: float, interval: float) -> None:
    """Sweep abandoned upload sessions now and then. Every worker or replica may run this:
    purging is idempotent, and a session in use is never older than the TTL."""
    while True:
        await asyncio.sleep(interval)
        try:
            purged = await store.uploads.purge(older_than=ttl)
        except Exception:
            logger.exception("purging stale uploads failed; will retry")
            continue
        if purged:
            logger.info("purged %d stale upload session(s)", purged)


def create_app(
    settings: Settings | None = None, backend: StorageBackend | None = None
) -> Starlette:
    """The registry app; `backend` overrides `settings.storage_url` (tests inject one)."""
    config = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        storage: StorageBackend = InstrumentedBackend(
            backend
            or open_backend(
                config.storage_url, fsync=config.storage_fsync, **config.storage_options
            )
        )
        await storage.open()
        try:
            guard = open_redis(config.redis_url, config.redis_timeout) if config.redis_url else None
            app.state.redis = guard
            controller = await build_access(config.auth, storage, guard)
            registry_store = RegistryStore(
                storage,
                blob_cache=RedisBlobCache(guard) if guard else None,
                policies=parse_policies(config.policies),
                url_rules=parse_validation(config.validation),
            )
            app.state.store = registry_store
            app.state.access = controller
            app.state.proxy = ProxyCache(parse_proxy_config(config.proxy), registry_store)
            app.state.proxy.start()
            extra_routes = getattr(controller, "routes", None)
            if extra_routes:
                app.router.routes[0:0] = list(extra_routes)
            purger = None
            app.state.events = EventService.open(config, storage)
            if config.upload_purge_interval > 0 and not config.readonly:
                purger = asyncio.create_task(
                    purge_uploads_forever(
                        registry_store, config.upload_ttl, config.upload_purge_interval
                    )
                )
            gc_watcher = asyncio.create_task(gc_record.watch(storage))
            bridge = asyncio.create_task(StatsBridge(app.state).run_forever())
            try:
                yield
            finally:
                await app.state.proxy.aclose()
                for task in (gc_watcher, bridge):
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                if purger is not None:
                    purger.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await purger
                if app.state.events is not None:
                    await app.state.events.close()
        finally:
            if app.state.redis is not None:
                await app.state.redis.close()
            await storage.close()
            multiproc.mark_dead()

    routes = list(ROUTES)
    if config.metrics_on_main_port:
        routes.append(Route("/metrics", metrics_page, methods=["GET"]))
    if config.ui:
        from registry.ui import ui_routes  # Jinja2 is loaded only when the UI is on

        routes.extend(ui_routes())
    app = Starlette(
        routes=routes,
        # ClientAddress first (the access log's client is the one after proxy trust), then
        # ObserveMiddleware outside RegistryMiddleware, to count the 500s that one renders.
        middleware=[
            Middleware(ClientAddressMiddleware, trusted=config.trusted_proxies),
            Middleware(ObserveMiddleware),
            Middleware(RegistryMiddleware),
            Middleware(ProxyMiddleware),
        ]
        + ([Middleware(ReadOnlyMiddleware)] if config.readonly else []),
        exception_handlers={
            errors.RegistryError: _registry_error,
            HTTPException: _http_error,
            StorageError: _storage_error,
        },
        lifespan=lifespan,
    )
    app.state.settings = config
    app.state.redis = None
    return app


def create_app_from_env() -> Starlette:
    """uvicorn factory (`registry.app:create_app_from_env`): settings serialised by `serve`,
    so every worker process builds the same app."""
    raw = os.environ.get(SETTINGS_ENV)
    settings = Settings.from_json(raw) if raw else Settings()
    # uvicorn configures only its own loggers; give the registry's the same level and stderr.
    level = "DEBUG" if settings.log_level == "trace" else settings.log_level.upper()
    logging.basicConfig(level=level, format="%(levelname)s:  %(name)s: %(message)s")
    return create_app(settings)
