"""`TokenAccess`: the access controller used when the settings have an `auth` section.

For each request, from the Authorization header:
- none: allowed when the rules grant every need to `anonymous` (public pulls work with plain
  curl); otherwise 401 with a Bearer challenge naming the scope. `GET /v2/` (no needs) and the
  catalog always challenge anonymous callers, so clients discover the token realm and log in.
- `Bearer <jwt>`: signature, algorithm, issuer, audience, expiry checked; every need must be in
  the token's `access`. If not: 401 (with `error="insufficient_scope"`) when a fresh token could
  grant it, 403 DENIED when the token's subject is a user the rules refuse.
- `Basic`: checked against htpasswd (with lockout, 429 when locked); then the rules: 403 DENIED
  when the user may not.
`may()` answers from the rules for the principal (catalog filtering, mount sources).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.routing import Route

from registry.auth.base import ANONYMOUS, CATALOG, GRANT_STATE, Access, Principal
from registry.auth.credentials import (
    Authenticator,
    LockedOut,
    LoginFailed,
    MalformedCredentials,
    parse_basic,
)
from registry.auth.rules import Rules
from registry.auth.scopes import merge
from registry.auth.token_endpoint import TokenEndpoint, client_address
from registry.auth.tokens import TokenError, TokenService
from registry.errors import DENIED, TOOMANYREQUESTS, UNAUTHORIZED
from registry.observe import audit


def _detail(needs: list[Access]) -> list[dict[str, str]]:
    return [{"Type": n.type, "Name": n.name, "Action": n.action} for n in needs]


class TokenAccess:
    enabled = True

    def __init__(
        self,
        authenticator: Authenticator,
        rules: Rules,
        tokens: TokenService,
        token_path: str = "/token",
        realm: str | None = None,
    ) -> None:
        self.authenticator = authenticator
        self.rules = rules
        self.tokens = tokens
        self.token_path = token_path
        self.realm = realm
        endpoint = TokenEndpoint(authenticator, rules, tokens)
        self.routes = [Route(token_path, endpoint.handle, methods=["GET", "POST"], name="token")]

    def realm_for(self, request: Request) -> str:
        if self.realm:
            return self.realm
        return f"{request.url.scheme}://{request.url.netloc}{self.token_path}"

    def challenge(self, request: Request, needs: list[Access], error: str | None = None) -> str:
        parts = [f'realm="{self.realm_for(request)}"', f'service="{self.tokens.service}"']
        if needs:
            parts.append(f'scope="{" ".join(str(s) for s in merge(needs))}"')
        if error:
            parts.append(f'error="{error}"')
        return "Bearer " + ",".join(parts)

    def _unauthorized(
        self, request: Request, needs: list[Access], error: str | None = None, message: str = ""
    ) -> Exception:
        detail = _detail(needs)
        headers = {"WWW-Authenticate": self.challenge(request, needs, error)}
        return UNAUTHORIZED(message or None, detail=detail or None, headers=headers)

    def _public(self, needs: list[Access]) -> bool:
        """Everything needed is granted to `anonymous` (the catalog and `/v2/` never are, so
        that clients are challenged there and log in)."""
        return bool(needs) and CATALOG not in needs and self.rules.allows_all(ANONYMOUS, needs)

    async def authorize(self, request: Request, needs: list[Access]) -> Principal:
        header = request.headers.get("authorization", "")
        scheme = header.split(" ", 1)[0].lower()
        if not header:
            if self._public(needs):
                return ANONYMOUS
            raise self._unauthorized(request, needs)
        if scheme == "bearer":
            return self._bearer(request, header, needs)
        if scheme == "basic":
            return await self._basic(request, header, needs)
        raise self._unauthorized(request, needs, "invalid_request", "unsupported authorization")

    def _bearer(self, request: Request, header: str, needs: list[Access]) -> Principal:
        try:
            grant = self.tokens.verify_access(header.split(" ", 1)[1].strip())
        except (TokenError, IndexError):
            audit.token_refused()
            raise self._unauthorized(request, needs, "invalid_token", "invalid token") from None
        setattr(request.state, GRANT_STATE, grant)  # mounts check their source against it
        if all(grant.covers(need) for need in needs) or self._public(needs):
            return grant.principal  # a token never leaves its holder worse off than anonymous
        if not grant.principal.anonymous and not self.rules.allows_all(grant.principal, needs):
            raise DENIED(detail=_detail(needs))
        raise self._unauthorized(request, needs, "insufficient_scope", "insufficient scope")

    async def _basic(self, request: Request, header: str, needs: list[Access]) -> Principal:
        try:
            user, password = parse_basic(header)
            principal = await self.authenticator.login(client_address(request), user, password)
        except MalformedCredentials:
            raise self._unauthorized(request, needs, "invalid_request", "bad credentials") from None
        except LoginFailed:
            message = "invalid user name or password"
            raise self._unauthorized(request, needs, message=message) from None
        except LockedOut as exc:
            raise TOOMANYREQUESTS(str(exc), headers={"Retry-After": str(exc.retry_after)}) from None
        if not self.rules.allows_all(principal, needs):
            raise DENIED(detail=_detail(needs))
        return principal

    async def may(self, request: Request, principal: Principal, need: Access) -> bool:
        return self.rules.allows(principal, need)
