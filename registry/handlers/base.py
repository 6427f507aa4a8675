"""What every handler shares: the app's store and access controller, and request parsing that
turns malformed input into typed errors (never a 500)."""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ocispec.digest import Digest, DigestError
from ocispec.reference import valid_repository_name
from registry import errors
from registry.auth.base import USER_SCOPE, Access, AccessController, Principal
from registry.settings import Settings
from registry.stores.repository import RegistryStore

API_VERSION_HEADER = "Docker-Distribution-Api-Version"
API_VERSION = "registry/2.0"


def store(request: Request) -> RegistryStore:
    registry_store: RegistryStore = request.app.state.store
    return registry_store


def settings(request: Request) -> Settings:
    current: Settings = request.app.state.settings
    return current


def access(request: Request) -> AccessController:
    controller: AccessController = request.app.state.access
    return controller


async def authorize(request: Request, needs: list[Access]) -> Principal:
    principal = await access(request).authorize(request, needs)
    request.state.principal = principal  # who did it, for events (registry.events.emit)
    request.scope[USER_SCOPE] = principal.name  # for the access and audit logs
    return principal


def check_name(name: str) -> str:
    if not valid_repository_name(name):
        raise errors.NAME_INVALID(detail={"name": name})
    return name


def repo_name(request: Request) -> str:
    """The repository name from the path; NAME_INVALID for anything outside the spec's grammar.

    Starlette decodes the path, so an encoded slash (`a%2Fb`) would pass the grammar as
    `a/b`: refuse it from the raw path.
    """
    raw_path: bytes = request.scope.get("raw_path") or b""
    name = str(request.path_params["name"])
    if b"%2f" in raw_path.lower():
        raise errors.NAME_INVALID("encoded slashes are not allowed", detail={"name": name})
    return check_name(name)


def parse_digest(value: str | None) -> Digest:
    if not value:
        raise errors.DIGEST_INVALID("a digest is required")
    try:
        return Digest.parse(value)
    except DigestError as exc:
        raise errors.DIGEST_INVALID(str(exc), detail={"digest": value}) from None


#: digits a byte count or offset in a header may have: 10**19 bytes is more than any blob, and
#: int() refuses numbers past 4300 digits with a ValueError (a 500 if it got that far)
MAX_DIGITS = 19


def header_number(text: str) -> int | None:
    """A non-negative decimal number from a header, or None when it is not ASCII digits or
    longer than MAX_DIGITS (str.isdigit() also accepts digits int() refuses, such as "²")."""
    if not text or len(text) > MAX_DIGITS or not (text.isascii() and text.isdigit()):
        return None
    return int(text)


def content_length(request: Request) -> int | None:
    raw = request.headers.get("content-length")
    if raw is None:
        return None
    length = header_number(raw)
    if length is None:
        raise errors.SIZE_INVALID(f"invalid Content-Length {raw[:40]!r}")
    return length


def pagination(request: Request) -> tuple[int | None, str | None]:
    raw_n = request.query_params.get("n")
    n: int | None = None
    if raw_n is not None:
        if not (raw_n.isascii() and raw_n.isdigit()) or len(raw_n) > 9:
            raise errors.PAGINATION_NUMBER_INVALID(detail={"n": raw_n})
        n = int(raw_n)
    return n, request.query_params.get("last")


def next_link(path: str, n: int | None, last: str) -> str:
    query = {"last": last} if n is None else {"n": str(n), "last": last}
    return f'<{path}?{urlencode(query)}>; rel="next"'


def media_type(request: Request) -> str | None:
    """The Content-Type without parameters (the spec says to ignore them)."""
    raw = request.headers.get("content-type")
    if raw is None:
        return None
    return raw.split(";", 1)[0].strip() or None


def empty(status: int, headers: dict[str, str] | None = None) -> Response:
    return Response(status_code=status, headers=headers)


async def root(request: Request) -> Response:
    """`GET /v2/`: the API exists (and, with access control, the caller is authenticated)."""
    await authorize(request, [])
    return JSONResponse({})
