"""`GET /metrics` on the registry's own port, when `metrics.on_main_port` is set.

Off by default: the listener (`metrics.addr`) keeps metrics away from registry clients. When
on, the page is unauthenticated like /healthz (Prometheus scrapes it without credentials);
restrict it at the proxy if the registry's port is public.
"""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response


async def metrics_page(request: Request) -> Response:
    from prometheus_client import CONTENT_TYPE_LATEST

    from registry.observe.metrics import exposition

    # multiprocess mode reads every worker's files: off the event loop
    body = await asyncio.to_thread(exposition)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
