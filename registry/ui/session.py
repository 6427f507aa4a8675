"""Who is browsing: a signed session cookie naming a user, and a CSRF token for every form.

The session cookie is signed with itsdangerous, keyed from the registry's token signing key
(the same on every worker and replica, so any of them accepts it). It carries the user name
and a fingerprint of the user's stored password hash: removing the user or changing the
password ends their sessions. It expires after SESSION_SECONDS.

CSRF: the double-submit pattern. A random token lives in its own HttpOnly, SameSite=Strict
cookie; every form carries it in a hidden field, and a POST whose field does not match the
cookie is refused. Another site can neither read nor set that cookie, so it cannot forge the
field. It works without a server-side secret, so also on an open registry with no signing key.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from cryptography.hazmat.primitives import serialization
from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response

from registry.auth.base import ANONYMOUS, Principal
from registry.auth.controller import TokenAccess

SESSION_COOKIE = "pyreg_ui_session"
CSRF_COOKIE = "pyreg_ui_csrf"
CSRF_FIELD = "csrf_token"
SESSION_SECONDS = 12 * 3600
_SALT = "pyreg-ui-session"


def _serializer(controller: TokenAccess) -> URLSafeTimedSerializer:
    der = controller.tokens.key.private.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # A key of its own, derived from the signing key: a session is never a valid token.
    secret = hmac.new(der, b"pyreg ui session cookie", hashlib.sha256).digest()
    return URLSafeTimedSerializer(secret, salt=_SALT)


def _fingerprint(controller: TokenAccess, user: str) -> str | None:
    stored = controller.authenticator.users.users().get(user)
    if stored is None:
        return None
    return hashlib.sha256(stored.encode()).hexdigest()[:16]


def secure(request: Request) -> bool:
    """Served over TLS (directly, or by a trusted proxy that said so)."""
    return request.url.scheme == "https"


def current_user(request: Request, controller: TokenAccess) -> Principal:
    raw = request.cookies.get(SESSION_COOKIE)
    if not raw:
        return ANONYMOUS
    try:
        data = _serializer(controller).loads(raw, max_age=SESSION_SECONDS)
    except BadSignature:  # also SignatureExpired
        return ANONYMOUS
    if not isinstance(data, dict):
        return ANONYMOUS
    user, seen = data.get("u"), data.get("h")
    if not isinstance(user, str) or not isinstance(seen, str):
        return ANONYMOUS
    now = _fingerprint(controller, user)
    if now is None or not hmac.compare_digest(now, seen):
        return ANONYMOUS
    return Principal(user)


def start_session(request: Request, response: Response, controller: TokenAccess, user: str) -> None:
    value = _serializer(controller).dumps({"u": user, "h": _fingerprint(controller, user) or ""})
    response.set_cookie(
        SESSION_COOKIE,
        value,
        max_age=SESSION_SECONDS,
        path="/ui/",
        httponly=True,
        secure=secure(request),
        samesite="lax",
    )
    new_csrf(request, response)  # a fresh token at every login (no fixation)


def end_session(request: Request, response: Response) -> None:
    response.delete_cookie(
        SESSION_COOKIE, path="/ui/", httponly=True, secure=secure(request), samesite="lax"
    )
    new_csrf(request, response)


def csrf_token(request: Request) -> str:
    """The token forms on this page carry: the cookie's, or a new one (set by `keep_csrf`)."""
    token = request.cookies.get(CSRF_COOKIE)
    if token is None or len(token) != 43:
        token = getattr(request.state, "new_csrf", None) or secrets.token_urlsafe(32)
        request.state.new_csrf = token
    return token


def keep_csrf(request: Request, response: Response) -> None:
    """Set the CSRF cookie when this page made a new token."""
    token = getattr(request.state, "new_csrf", None)
    if token is not None:
        _set_csrf(request, response, token)


def new_csrf(request: Request, response: Response) -> None:
    request.state.new_csrf = secrets.token_urlsafe(32)
    _set_csrf(request, response, request.state.new_csrf)


def _set_csrf(request: Request, response: Response, token: str) -> None:
    response.set_cookie(
        CSRF_COOKIE, token, path="/ui/", httponly=True, secure=secure(request), samesite="strict"
    )


def csrf_ok(request: Request, submitted: object) -> bool:
    cookie = request.cookies.get(CSRF_COOKIE)
    if not cookie or not isinstance(submitted, str) or not submitted:
        return False
    return hmac.compare_digest(cookie.encode(), submitted.encode())
