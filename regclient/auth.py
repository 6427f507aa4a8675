"""Registry authentication as an `httpx.Auth` flow: anonymous, Basic and Bearer tokens.

A 401 carries `WWW-Authenticate`. For `Basic` the stored credentials are sent. For `Bearer`
a token is fetched from the challenge's realm with its service and the request's scopes
(distribution-docs/auth/token.md): a GET with Basic credentials (or anonymous), or the OAuth2
POST form with `grant_type=refresh_token` when config.json holds an identity token
(oauth.md). Tokens are cached per scope set and fetched again shortly before they expire.

Once a challenge is known, later requests get their token *before* they are sent, so a
streamed upload body never has to be replayed after a 401.

Credentials never go where the user did not send them: `Authorization` (Basic or Bearer) is
only ever set on requests to the registry's own origin (scheme, host, port), never on an upload
`Location` or `Link: rel=next` URL on another host, and httpx drops it on a redirect to another
origin (blob GETs sent to object storage or a CDN); a challenge is only taken from that origin
too. A password or refresh token goes to a realm over plain HTTP only on loopback or on the very
host of an insecure (plain HTTP) registry; anywhere else the realm must be HTTPS. The token
service's answer is read streaming and refused beyond MAX_TOKEN_BODY.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import json
import re
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import httpx

from regclient.credentials import Credentials

_NAME_RE = re.compile(r"^/v2/(?P<name>.+?)/(?:blobs|manifests|tags|referrers)/")
_PARAM_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))')
MIN_EXPIRES_IN = 60  # token.md: a token lives at least 60 s when the server says nothing
#: a token answer is a small JSON object (Docker Hub's: a few KiB); more is refused unread
MAX_TOKEN_BODY = 1024 * 1024
CLIENT_ID = "pyreg"


class AuthError(Exception):
    """The token service refused us or answered something that is not a token."""


@dataclass(frozen=True, slots=True)
class Challenge:
    scheme: str  # lower-case: "basic" or "bearer"
    params: dict[str, str]


def parse_www_authenticate(header: str) -> list[Challenge]:
    """Parse `Bearer realm="...",service="...",scope="..."` (several challenges allowed)."""
    out: list[Challenge] = []
    # a challenge starts with a bare token (the scheme) followed by a space or the end
    parts = re.split(r"(?:^|,)\s*([A-Za-z][A-Za-z0-9_-]*)(?=\s+[A-Za-z_]|\s*$)", header)
    # re.split gives [before, scheme1, rest1, scheme2, rest2, ...]
    for i in range(1, len(parts) - 1, 2):
        params = {
            m.group(1).lower(): (
                m.group(2).replace('\\"', '"') if m.group(2) is not None else m.group(3)
            )
            for m in _PARAM_RE.finditer(parts[i + 1])
        }
        out.append(Challenge(parts[i].lower(), params))
    return out


def scopes_for(request: httpx.Request) -> list[str]:
    """The token scopes a registry request needs (token.md, scope.md)."""
    path = request.url.path
    if path.startswith("/v2/_catalog"):
        return ["registry:catalog:*"]
    match = _NAME_RE.match(path)
    if match is None:
        return []
    name = match["name"]
    method = request.method
    if method in ("GET", "HEAD"):
        actions = "pull"
    elif method == "DELETE":
        actions = "delete"
    else:
        actions = "pull,push"
    scopes = [f"repository:{name}:{actions}"]
    source = parse_qs(request.url.query.decode()).get("from")
    if source and source[0] != name:
        scopes.append(f"repository:{source[0]}:pull")  # a cross-repository mount reads there
    return scopes


@dataclass
class _Token:
    value: str
    expires_at: float  # time.monotonic()
    refresh_token: str | None


class RegistryAuth(httpx.Auth):
    """One registry's auth state: the challenge it sent and the tokens it gave."""

    def __init__(
        self,
        credentials: Credentials | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        origins: tuple[str | httpx.URL, ...] = (),
    ) -> None:
        """`origins`: the registry's own origin(s), the only ones that get credentials; when
        empty, the origin of the first request is taken."""
        self.credentials = credentials
        self.origins = {_origin(httpx.URL(o)) for o in origins}
        self.challenge: Challenge | None = None
        self._registry_url: httpx.URL | None = None  # where the challenge came from
        self._tokens: dict[tuple[str, str, str], _Token] = {}
        self._lock: asyncio.Lock | None = None
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self.token_fetches = 0  # for tests and diagnostics

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def sync_auth_flow(self, request: httpx.Request) -> Any:
        raise NotImplementedError("RegistryAuth works with httpx.AsyncClient only")

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        if not self.origins:
            self.origins.add(_origin(request.url))
        if not self.is_registry(request.url):
            # an upload Location or a next-page Link on another host: no credentials, and its
            # 401 does not choose our auth either
            request.headers.pop("Authorization", None)
            yield request
            return
        scopes = scopes_for(request)
        if self.challenge is not None:
            await self._authorize(request, scopes)
        response = yield request
        if response.status_code != 401:
            return
        if not self.is_registry(response.request.url):
            return  # a redirect's target (object storage, another host) does not pick our auth
        challenge = _pick(response.headers.get_list("WWW-Authenticate"))
        if challenge is None:
            return
        self._registry_url = request.url
        if challenge.scheme == "basic" and not self._has_password():
            return  # anonymous: the 401 stands
        # a body already streamed out cannot be sent again: the caller sees the 401
        if not isinstance(request.stream, httpx.ByteStream):
            self.challenge = challenge
            return
        extra = challenge.params.get("scope")
        if extra:
            scopes = sorted(set(scopes) | set(extra.split(" ")))
        stale = self.challenge == challenge and "authorization" in request.headers
        self.challenge = challenge
        await self._authorize(request, scopes, force=stale)
        yield request  # httpx reads and closes the 401 itself

    def is_registry(self, url: httpx.URL) -> bool:
        """Whether `url` is on the registry's own origin (the only one given credentials)."""
        return _origin(url) in self.origins

    def _has_password(self) -> bool:
        return bool(self.credentials and self.credentials.username and self.credentials.password)

    async def _authorize(
        self, request: httpx.Request, scopes: list[str], force: bool = False
    ) -> None:
        challenge = self.challenge
        assert challenge is not None
        if challenge.scheme == "basic":
            if self._has_password():
                assert self.credentials is not None
                request.headers["Authorization"] = basic_header(
                    self.credentials.username or "", self.credentials.password or ""
                )
        elif challenge.scheme == "bearer":
            token = await self.token(scopes, force=force)
            request.headers["Authorization"] = f"Bearer {token}"

    async def token(self, scopes: list[str], force: bool = False) -> str:
        """A bearer token for `scopes` from the cache, or fetched from the realm."""
        challenge = self.challenge
        if challenge is None or challenge.scheme != "bearer" or "realm" not in challenge.params:
            raise AuthError("the registry did not send a Bearer challenge with a realm")
        key = (
            challenge.params["realm"],
            challenge.params.get("service", ""),
            " ".join(sorted(scopes)),
        )
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:  # one fetch per scope set, however many requests wait
            cached = self._tokens.get(key)
            if cached is not None and not force and cached.expires_at > time.monotonic():
                return cached.value
            refresh = cached.refresh_token if cached else None
            fresh = await self._fetch(key[0], key[1], scopes, refresh)
            self._tokens[key] = fresh
            return fresh.value

    async def _fetch(
        self, realm: str, service: str, scopes: list[str], refresh_token: str | None
    ) -> _Token:
        if self._client is None:
            self._client = httpx.AsyncClient(transport=self._transport, timeout=30.0)
        self.token_fetches += 1
        creds = self.credentials
        refresh_token = refresh_token or (creds.identity_token if creds else None)
        if (refresh_token or self._has_password()) and not _safe_realm(realm, self._registry_url):
            raise AuthError(
                f"refusing to send credentials to the token realm {realm} over plain HTTP "
                "(only HTTPS, loopback or the insecure registry's own host)"
            )
        kwargs: dict[str, Any]
        if refresh_token:
            method = "POST"
            kwargs = {
                "data": {
                    "grant_type": "refresh_token",
                    "refresh_token": refresh_token,
                    "service": service,
                    "client_id": CLIENT_ID,
                    "scope": " ".join(scopes),
                }
            }
        else:
            method = "GET"
            params: list[tuple[str, str | int | float | bool | None]] = [
                ("service", service),
                ("client_id", CLIENT_ID),
            ]
            params += [("scope", s) for s in scopes]
            kwargs = {"params": params}
            if self._has_password():
                assert creds is not None and creds.username and creds.password
                params.append(("account", creds.username))
                kwargs["auth"] = httpx.BasicAuth(creds.username, creds.password)
        try:
            async with self._client.stream(method, realm, **kwargs) as response:
                data = await _read_capped(response, MAX_TOKEN_BODY)
        except httpx.HTTPError as exc:
            raise AuthError(f"token service {realm} unreachable: {exc}") from None
        if data is None:
            raise AuthError(
                f"token service {realm} answered more than {MAX_TOKEN_BODY} bytes: refused"
            )
        if response.status_code != 200:
            detail = data[:200].decode("utf-8", "replace").strip()
            raise AuthError(
                f"token service {realm} answered {response.status_code}"
                + (f": {detail}" if detail else "")
            )
        try:
            body = json.loads(data)
        except ValueError:
            raise AuthError(f"token service {realm} did not answer JSON") from None
        value = body.get("token") or body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(value, str) or not value:
            raise AuthError(f"token service {realm} answered without a token")
        expires_in = body.get("expires_in")
        if not isinstance(expires_in, int) or isinstance(expires_in, bool) or expires_in <= 0:
            expires_in = MIN_EXPIRES_IN
        # renew a little early so a token does not lapse between check and use
        margin = min(10.0, expires_in / 4)
        new_refresh = body.get("refresh_token")
        return _Token(
            value,
            time.monotonic() + expires_in - margin,
            new_refresh if isinstance(new_refresh, str) and new_refresh else refresh_token,
        )


def basic_header(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def _pick(headers: list[str]) -> Challenge | None:
    challenges = [c for h in headers for c in parse_www_authenticate(h)]
    for scheme in ("bearer", "basic"):
        for c in challenges:
            if c.scheme == scheme:
                return c
    return None


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return (url.scheme, url.host, url.port)  # httpx normalises a default port to None


async def _read_capped(response: httpx.Response, limit: int) -> bytes | None:
    """The body, or None as soon as it passes `limit` bytes (the rest is never read)."""
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


def _is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _safe_realm(realm: str, registry: httpx.URL | None) -> bool:
    """Whether a password or refresh token may be sent to `realm` (see the module docstring)."""
    try:
        url = httpx.URL(realm)
    except httpx.InvalidURL:
        return False
    if url.scheme == "https":
        return True
    if url.scheme != "http":
        return False
    if _is_loopback_host(url.host):
        return True
    return registry is not None and registry.scheme == "http" and registry.host == url.host
