"""The seam between HTTP handlers and access control.

Handlers never look at credentials. Each route states what it needs (`Access` items: pull or push
on a repository, `registry:catalog:*`), and calls `app.state.access.authorize(request, needs)`,
which returns the caller's `Principal` or raises `UNAUTHORIZED` (401, with the
`WWW-Authenticate` challenge in the error's headers) or `DENIED` (403).

`OpenAccess` (no access control configured) lets everything through. The token-based
controller lives in this package too and is chosen by the settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from starlette.requests import Request


@dataclass(frozen=True, slots=True)
class Principal:
    name: str | None  # None: anonymous

    @property
    def anonymous(self) -> bool:
        return self.name is None


ANONYMOUS = Principal(None)


@dataclass(frozen=True, slots=True)
class Access:
    type: str  # "repository" or "registry"
    name: str  # repository name, or "catalog"
    action: str  # "pull", "push", "delete" or "*"

    def scope(self) -> str:
        return f"{self.type}:{self.name}:{self.action}"


def pull(repo: str) -> Access:
    return Access("repository", repo, "pull")


def push(repo: str) -> Access:
    return Access("repository", repo, "push")


def delete(repo: str) -> Access:
    return Access("repository", repo, "delete")


CATALOG = Access("registry", "catalog", "*")

#: scope key where the authenticated caller's name is left for the access and audit logs
USER_SCOPE = "pyreg.user"

#: `request.state` attribute where a controller leaves what a Bearer token carries (an object
#: with `covers(Access) -> bool`); absent for other credentials
GRANT_STATE = "access_grant"


def credentials_cover(request: Request, need: Access) -> bool:
    """Whether the request's own credentials carry `need`. A Bearer token carries only the
    scopes it was issued for: a narrow token (say, for one CI job) must not reach its holder's
    other repositories through a mount. Other credentials stand for the whole principal."""
    grant = getattr(request.state, GRANT_STATE, None)
    return grant is None or bool(grant.covers(need))


class AccessController(Protocol):
    async def authorize(self, request: Request, needs: list[Access]) -> Principal:
        """Return the caller when every need is granted; raise UNAUTHORIZED or DENIED."""
        ...

    async def may(self, request: Request, principal: Principal, need: Access) -> bool:
        """Whether `principal` is granted `need`, without raising (catalog, mount sources)."""
        ...


class OpenAccess:
    """No access control: everyone may do everything (the default, as distribution's)."""

    enabled = False

    async def authorize(self, request: Request, needs: list[Access]) -> Principal:
        return ANONYMOUS

    async def may(self, request: Request, principal: Principal, need: Access) -> bool:
        return True
