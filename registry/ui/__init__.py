"""The web interface at `/ui/` (docs/ui.md): server-rendered pages over the same stores and
the same access controller as the API. `ui: false` in the settings leaves it unmounted.

Modules: `pages` (handlers), `views` (what a page shows, from the stores), `session` (login
cookie, CSRF), `render` (Jinja2, autoescaped), `templates/`, `static/` (CSS, a little JS)."""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from registry.ui import pages

STATIC = Path(__file__).parent / "static"


async def _to_index(request: Request) -> Response:
    return RedirectResponse("/ui/", status_code=308)


def ui_routes() -> list[BaseRoute]:
    return [
        Route("/ui", _to_index, methods=["GET", "HEAD"]),
        Route("/ui/", pages.repositories, methods=["GET", "HEAD"]),
        Route("/ui/login", pages.login_form, methods=["GET", "HEAD"]),
        Route("/ui/login", pages.login, methods=["POST"]),
        Route("/ui/logout", pages.logout, methods=["POST"]),
        Route("/ui/r/{rest:path}", pages.dispatch, methods=["GET", "HEAD", "POST"]),
        Mount("/ui/static", StaticFiles(directory=STATIC), name="ui-static"),
        Route("/ui/{rest:path}", pages.unknown, methods=["GET", "HEAD"]),
    ]
