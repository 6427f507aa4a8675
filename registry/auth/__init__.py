"""Access control: who the caller is, and what they may do to which repository.

`build_access(config, backend)` is the one entry point the app uses: with no `auth` section in
the settings it returns `OpenAccess`; otherwise the token-based controller. A controller may
expose `routes` (the token endpoint), which the app mounts.
"""

from __future__ import annotations

from typing import Any

from registry.auth.base import AccessController, OpenAccess
from storage_backends.base import StorageBackend


async def build_access(config: dict[str, Any] | None, backend: StorageBackend) -> AccessController:
    if not config:
        return OpenAccess()
    raise NotImplementedError("access control is not built yet")
