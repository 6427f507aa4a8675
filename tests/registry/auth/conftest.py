"""A TokenAccess over a tiny app of our own: `GET /check?need=repository:x:pull` authorizes the
listed needs and answers the principal's name, so the controller is tested without handlers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from registry.auth import TokenAccess, build_access
from registry.auth.base import Access
from registry.errors import RegistryError
from storage_backends.memory import MemoryBackend
from tests.support.auth import auth_section

USERS = {"alice": "alice-pw", "bob": "bob-pw", "admin": "admin-pw"}
RULES: list[dict[str, Any]] = [
    {"repository": "library/*", "pull": ["anonymous"], "push": ["admin"]},
    {"repository": "team-a/**", "pull": ["*"], "push": ["alice"], "delete": ["alice"]},
    {"repository": "private/*", "pull": ["alice"]},
]


def _need(text: str) -> Access:
    type_, name, action = text.split(":")
    return Access(type_, name, action)


async def _check(request: Request) -> Response:
    needs = [_need(n) for n in request.query_params.getlist("need")]
    principal = await request.app.state.access.authorize(request, needs)
    return JSONResponse({"name": principal.name})


async def _render(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RegistryError)
    return JSONResponse(exc.to_json(), status_code=exc.status, headers=exc.headers)


@pytest.fixture
def auth_config(tmp_path: Path) -> dict[str, Any]:
    return auth_section(
        tmp_path, USERS, RULES, lockout={"max_failures": 3, "window": 60, "lock_for": 60}
    )


@pytest.fixture
async def access(auth_config: dict[str, Any]) -> TokenAccess:
    controller = await build_access(auth_config, MemoryBackend())
    assert isinstance(controller, TokenAccess)
    return controller


@pytest.fixture
async def client(access: TokenAccess) -> AsyncIterator[httpx.AsyncClient]:
    app = Starlette(
        routes=[*access.routes, Route("/check", _check)],
        exception_handlers={RegistryError: _render},
    )
    app.state.access = access
    transport = httpx.ASGITransport(app=app, client=("10.0.0.1", 1234))
    async with httpx.AsyncClient(transport=transport, base_url="http://reg.test") as http:
        yield http
