"""Which upstream a client's repository name mirrors, and under which local name it is cached.

Three ways clients reach a mirror, one local name for each mirrored repository
(`<namespace>/<upstream repository>`), so all three share one cache:

- explicit: `GET /v2/docker.io/library/busybox/...` (the name starts with a namespace);
- containerd/podman mirrors: `GET /v2/library/busybox/...?ns=docker.io` (the upstream whose
  namespace, or host, is `ns`);
- docker's `registry-mirrors`: `GET /v2/library/busybox/...` with no host at all (the upstream
  marked `default`), unless a local repository of that name exists: local repositories win.

Only the first form names the mirror for writes; the other two map reads only, so a push of an
unprefixed name still goes to an ordinary local repository.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from registry.proxy.config import ProxyConfig, Upstream

#: repository API paths, name greedy as the route table's `{name:path}`
PATH_RE = re.compile(r"^/v2/(?P<name>.+)/(?P<kind>manifests|blobs|tags|referrers)/(?P<rest>.*)$")

_DOCKER_HUB = {"registry-1.docker.io", "index.docker.io", "docker.io"}


@dataclass(frozen=True, slots=True)
class Target:
    upstream: Upstream
    local: str  # the repository name in this registry (and in access rules)
    remote: str  # the repository name at the upstream


def remote_name(upstream: Upstream, rest: str) -> str:
    """Docker Hub keeps official images under `library/`: `docker.io/busybox` means that."""
    if upstream.registry in _DOCKER_HUB and "/" not in rest:
        return f"library/{rest}"
    return rest


def by_local_name(config: ProxyConfig, name: str) -> Target | None:
    """The upstream a local name mirrors (explicit form), else None."""
    for upstream in config.upstreams:
        prefix = upstream.namespace + "/"
        if name.startswith(prefix) and len(name) > len(prefix):
            return Target(upstream, name, remote_name(upstream, name[len(prefix) :]))
    return None


def for_read(config: ProxyConfig, name: str, ns: str | None, local_exists: bool) -> Target | None:
    """The target of a pull of `name` (with the `ns` query parameter, if any)."""
    explicit = by_local_name(config, name)
    if explicit is not None:
        return explicit
    upstream: Upstream | None = None
    if ns:
        upstream = next((u for u in config.upstreams if ns in (u.namespace, u.registry)), None) or (
            config.by_namespace("docker.io") if ns in _DOCKER_HUB else None
        )
    elif not local_exists:
        upstream = config.default
    if upstream is None:
        return None
    return Target(upstream, f"{upstream.namespace}/{name}", remote_name(upstream, name))
