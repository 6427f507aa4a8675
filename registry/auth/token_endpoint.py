"""The token service (`GET`/`POST /token`), as in distribution-docs/auth/token.md and oauth.md.

GET: optional Basic credentials (none = anonymous), `service`, any number of `scope` params,
`offline_token=true` for a refresh token. POST (OAuth2, form-encoded): `grant_type=password`
with `username`/`password`, or `grant_type=refresh_token` with `refresh_token`; `client_id`,
`access_type=offline` for a refresh token, one space-separated `scope`.

The token grants the intersection of what was asked and what the rules allow; asking for more
than allowed is not an error (the registry answers 401/403 when the token is used).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from registry.auth.base import ANONYMOUS, USER_SCOPE, Principal
from registry.auth.credentials import (
    Authenticator,
    LockedOut,
    LoginFailed,
    MalformedCredentials,
    parse_basic,
)
from registry.auth.rules import Rules
from registry.auth.scopes import ResourceScope, ScopeError, parse_scopes
from registry.auth.tokens import TokenError, TokenService

MAX_FORM_BYTES = 64 * 1024


class _Refused(Exception):
    def __init__(self, response: Response) -> None:
        self.response = response


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    # Both shapes in one body: the registry's {"errors": [...]} and OAuth2's {"error": ...}.
    body = {
        "errors": [{"code": code, "message": message, "detail": None}],
        "error": code.lower(),
        "error_description": message,
    }
    return JSONResponse(body, status_code=status, headers=headers)


def _bad_request(message: str) -> _Refused:
    return _Refused(_error(400, "INVALID_REQUEST", message))


def _locked(exc: LockedOut) -> _Refused:
    headers = {"Retry-After": str(exc.retry_after)}
    return _Refused(_error(429, "TOOMANYREQUESTS", str(exc), headers))


def _login_failed() -> _Refused:
    headers = {"WWW-Authenticate": 'Basic realm="pyreg"'}
    return _Refused(_error(401, "UNAUTHORIZED", "invalid user name or password", headers))


async def _read_form(request: Request) -> dict[str, list[str]]:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise _bad_request("expected an application/x-www-form-urlencoded body")
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > MAX_FORM_BYTES:
            raise _bad_request("form too large")
    try:
        return parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise _bad_request("form is not UTF-8") from None


def _one(form: dict[str, list[str]], key: str) -> str | None:
    values = form.get(key)
    return values[0] if values else None


class TokenEndpoint:
    def __init__(self, authenticator: Authenticator, rules: Rules, tokens: TokenService) -> None:
        self.authenticator = authenticator
        self.rules = rules
        self.tokens = tokens

    async def handle(self, request: Request) -> Response:
        try:
            if request.method == "POST":
                return await self._post(request)
            return await self._get(request)
        except _Refused as refused:
            return refused.response

    def _check_service(self, service: str | None) -> None:
        if service is not None and service != self.tokens.service:
            raise _bad_request(f"unknown service {service!r}; this is {self.tokens.service!r}")

    async def _login(self, request: Request, user: str, password: str) -> tuple[Principal, str]:
        """The principal, and the fingerprint of the htpasswd entry as it was *before* the
        check: a refresh token bound to it dies if the entry changes while the check runs."""
        credential = self.authenticator.users.credential(user) or ""
        try:
            principal = await self.authenticator.login(client_address(request), user, password)
            request.scope[USER_SCOPE] = principal.name  # for the access log
        except LockedOut as exc:
            raise _locked(exc) from None
        except LoginFailed:
            raise _login_failed() from None
        return principal, credential

    def _grant(self, principal: Principal, scope_params: list[str]) -> list[ResourceScope]:
        try:
            asked = parse_scopes(scope_params)
        except ScopeError as exc:
            raise _bad_request(str(exc)) from None
        granted = []
        for scope in asked:
            actions = self.rules.grant(principal, scope.type, scope.name, scope.actions)
            if actions:
                granted.append(ResourceScope(scope.type, scope.name, tuple(actions)))
        return granted

    def _respond(
        self, principal: Principal, granted: list[ResourceScope], refresh: str | None
    ) -> Response:
        issued = self.tokens.issue_access(principal, granted)
        body: dict[str, Any] = {
            "token": issued.token,
            "access_token": issued.token,
            "expires_in": issued.expires_in,
            "issued_at": issued.issued_at,
            "scope": " ".join(str(s) for s in granted),
        }
        if refresh is not None:
            body["refresh_token"] = refresh
        return JSONResponse(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})

    async def _get(self, request: Request) -> Response:
        params = request.query_params
        self._check_service(params.get("service"))
        principal, credential = ANONYMOUS, ""
        header = request.headers.get("authorization")
        if header:
            try:
                user, password = parse_basic(header)
            except MalformedCredentials as exc:
                raise _bad_request(str(exc)) from None
            principal, credential = await self._login(request, user, password)
        granted = self._grant(principal, params.getlist("scope"))
        refresh = None
        if params.get("offline_token", "").lower() == "true" and not principal.anonymous:
            refresh = self.tokens.issue_refresh(principal, credential)
        return self._respond(principal, granted, refresh)

    async def _post(self, request: Request) -> Response:
        form = await _read_form(request)
        self._check_service(_one(form, "service"))
        grant_type = _one(form, "grant_type")
        refresh: str | None = None
        if grant_type == "password":
            user, password = _one(form, "username"), _one(form, "password")
            if not user or password is None:
                raise _bad_request("grant_type=password needs username and password")
            principal, credential = await self._login(request, user, password)
            if _one(form, "access_type") == "offline":
                refresh = self.tokens.issue_refresh(principal, credential)
        elif grant_type == "refresh_token":
            presented = _one(form, "refresh_token") or ""
            try:
                principal, credential = self.tokens.verify_refresh(presented)
            except TokenError:
                raise _login_failed() from None
            if self.authenticator.users.credential(principal.name or "") != credential:
                # The password changed or the user was removed (maybe re-added) since.
                raise _login_failed()
            refresh = presented  # oauth.md: a refresh grant returns the same refresh token
        else:
            raise _bad_request("grant_type must be password or refresh_token")
        return self._respond(principal, self._grant(principal, form.get("scope", [])), refresh)
