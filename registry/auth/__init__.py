"""Access control: who the caller is, and what they may do to which repository.

`build_access(config, backend)` is the one entry point the app uses: with no `auth` section in
the settings it returns `OpenAccess`; otherwise `TokenAccess` (users from htpasswd, ordered
rules, the built-in token service). A controller may expose `routes` (the token endpoint),
which the app mounts.

Modules: `config` (the YAML section), `rules` (who may do what where), `htpasswd` (users),
`credentials` (password checks, cache), `lockout` (brute force), `keys` (signing key),
`tokens` (JWT issue/verify), `scopes` (scope grammar), `token_endpoint` (/token),
`controller` (per-request checks), `cli` (`pyreg user ...`).
"""

from __future__ import annotations

import logging
from typing import Any

from registry.auth.base import AccessController, OpenAccess
from registry.auth.config import AuthConfig, AuthConfigError, parse_config
from registry.auth.controller import TokenAccess
from registry.auth.credentials import Authenticator
from registry.auth.htpasswd import Htpasswd
from registry.auth.keys import load_or_create_file, load_or_create_stored
from registry.auth.lockout import InProcessLockout, LockoutState
from registry.auth.rules import Rules
from registry.auth.tokens import TokenService
from registry.shared import RedisGuard
from registry.shared.lockout import FallbackLockout, RedisLockout
from storage_backends.base import StorageBackend

logger = logging.getLogger("registry.auth")

__all__ = ["AuthConfig", "AuthConfigError", "TokenAccess", "build_access", "parse_config"]


async def build_access(
    config: dict[str, Any] | None, backend: StorageBackend, redis: RedisGuard | None = None
) -> AccessController:
    """The access controller for `config`; with `redis`, the login lockout is shared by every
    replica (registry/shared/lockout.py), falling back to this process's counts."""
    if not config:
        return OpenAccess()
    settings = parse_config(config)
    if not settings.htpasswd.exists():
        # Not fatal: `pyreg user add` may create it later, and it is re-read when it changes.
        logger.warning("no users yet: %s does not exist (pyreg user add NAME)", settings.htpasswd)
    if not settings.rules:
        logger.warning("auth has no rules: every repository is denied to everyone")
    if settings.key is not None:
        key = load_or_create_file(settings.key)
    else:
        key = await load_or_create_stored(backend)
    lock = settings.lockout
    local = InProcessLockout(lock.max_failures, lock.window, lock.lock_for)
    lockout: LockoutState = local
    if redis is not None:
        shared = RedisLockout(redis, lock.max_failures, lock.window, lock.lock_for)
        lockout = FallbackLockout(shared, local)
    authenticator = Authenticator(Htpasswd(settings.htpasswd), lockout)
    tokens = TokenService(
        key, settings.issuer, settings.service, settings.token_ttl, settings.refresh_ttl
    )
    return TokenAccess(
        authenticator, Rules(settings.rules), tokens, settings.token_path, settings.realm
    )
