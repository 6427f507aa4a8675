"""Issuing and checking the JWTs of the Docker token protocol (distribution-docs/auth/jwt.md).

Access tokens carry `iss`, `sub` ("" for anonymous), `aud` (the service), `exp`, `nbf`, `iat`,
`jti` and `access: [{type, name, actions}]`. Refresh tokens are JWTs too, but with an audience
of their own (`<service>#refresh`), so one can never pass as an access token or vice versa.
A refresh token also carries `cred`, a fingerprint of the htpasswd entry it was issued against
(`htpasswd.credential_id`): the token endpoint honours it only while the entry is unchanged, so
a password change, or a removal (even followed by a new user of the same name), ends it.

Verification pins the algorithm to the signing key's (ES256 or RS256): PyJWT then refuses
`alg: none` and HS256 tokens keyed with the public key, whatever the header says.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jwt

from registry.auth.base import Access, Principal
from registry.auth.keys import SigningKey
from registry.auth.scopes import ResourceScope


class TokenError(Exception):
    """A token that is not valid here (bad signature, expired, wrong audience, malformed)."""


@dataclass(frozen=True, slots=True)
class Issued:
    token: str
    expires_in: int
    issued_at: str  # RFC 3339, UTC


@dataclass(frozen=True, slots=True)
class Grant:
    """What a verified access token allows."""

    principal: Principal
    access: frozenset[tuple[str, str, str]]  # (type, name, action)

    def covers(self, need: Access) -> bool:
        return (need.type, need.name, need.action) in self.access or (
            need.type,
            need.name,
            "*",
        ) in self.access


def _rfc3339(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class TokenService:
    def __init__(
        self,
        key: SigningKey,
        issuer: str,
        service: str,
        ttl: int,
        refresh_ttl: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.key = key
        self.issuer = issuer
        self.service = service
        self.ttl = ttl
        self.refresh_ttl = refresh_ttl
        self._clock = clock

    @property
    def _refresh_audience(self) -> str:
        return f"{self.service}#refresh"

    def _sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(
            claims, self.key.private, algorithm=self.key.algorithm, headers={"kid": self.key.kid}
        )

    def _claims(self, subject: str, audience: str, ttl: int) -> tuple[dict[str, Any], int]:
        now = int(self._clock())
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": audience,
            "exp": now + ttl,
            "nbf": now,
            "iat": now,
            "jti": secrets.token_urlsafe(16),
        }
        return claims, now

    def issue_access(self, principal: Principal, granted: Iterable[ResourceScope]) -> Issued:
        claims, now = self._claims(principal.name or "", self.service, self.ttl)
        claims["access"] = [
            {"type": s.type, "name": s.name, "actions": list(s.actions)} for s in granted
        ]
        return Issued(self._sign(claims), self.ttl, _rfc3339(now))

    def issue_refresh(self, principal: Principal, credential: str) -> str:
        """A refresh token for `principal`, bound to `credential` (the fingerprint of the
        htpasswd entry the login was checked against)."""
        if principal.anonymous:
            raise TokenError("anonymous callers get no refresh token")
        claims, _ = self._claims(principal.name or "", self._refresh_audience, self.refresh_ttl)
        claims["cred"] = credential
        return self._sign(claims)

    def _decode(self, token: str, audience: str) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self.key.public,
                algorithms=[self.key.algorithm],
                audience=audience,
                issuer=self.issuer,
                options={"require": ["iss", "sub", "aud", "exp", "nbf", "iat", "jti"]},
                leeway=0,
            )
        except jwt.PyJWTError as exc:
            raise TokenError(str(exc)) from None
        # PyJWT checks exp/nbf against the wall clock; check against ours too (tests move it).
        now = self._clock()
        if not isinstance(claims["exp"], int | float) or claims["exp"] <= now:
            raise TokenError("token has expired")
        if not isinstance(claims["nbf"], int | float) or claims["nbf"] > now:
            raise TokenError("token is not yet valid")
        if not isinstance(claims["sub"], str):
            raise TokenError("malformed subject")
        return claims

    def verify_access(self, token: str) -> Grant:
        claims = self._decode(token, self.service)
        raw_access = claims.get("access")
        if not isinstance(raw_access, list):
            raise TokenError("token has no access claim")
        access: set[tuple[str, str, str]] = set()
        for entry in raw_access:
            if not isinstance(entry, dict):
                raise TokenError("malformed access claim")
            type_, name, actions = entry.get("type"), entry.get("name"), entry.get("actions")
            if not isinstance(type_, str) or not isinstance(name, str):
                raise TokenError("malformed access claim")
            if not isinstance(actions, list) or not all(isinstance(a, str) for a in actions):
                raise TokenError("malformed access claim")
            access.update((type_, name, action) for action in actions)
        sub = claims["sub"]
        return Grant(Principal(sub or None), frozenset(access))

    def verify_refresh(self, token: str) -> tuple[Principal, str]:
        """The principal and the credential fingerprint a refresh token was issued for."""
        claims = self._decode(token, self._refresh_audience)
        if not claims["sub"]:
            raise TokenError("refresh token without a subject")
        credential = claims.get("cred")
        if not isinstance(credential, str) or not credential:
            raise TokenError("refresh token not bound to a credential")  # issued before binding
        return Principal(claims["sub"]), credential
