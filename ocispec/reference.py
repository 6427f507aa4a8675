"""Image references in docker's grammar: `[host[:port]/]path[:tag][@digest]`.

A reference without a host means docker.io (and `library/` for a single path component),
as docker does. Repository names follow the distribution spec's regex.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from ocispec.digest import Digest, DigestError

DEFAULT_REGISTRY = "docker.io"
DEFAULT_TAG = "latest"
MAX_NAME_LENGTH = 255

_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
REPOSITORY_NAME_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
TAG_RE = re.compile(r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$")
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST_RE = re.compile(
    rf"^(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?$"
)


class ReferenceError(ValueError):
    """A string that is not a valid image reference."""


def valid_repository_name(name: str) -> bool:
    return len(name) <= MAX_NAME_LENGTH and bool(REPOSITORY_NAME_RE.fullmatch(name))


def valid_tag(tag: str) -> bool:
    return bool(TAG_RE.fullmatch(tag))


@dataclass(frozen=True, slots=True)
class Reference:
    registry: str
    repository: str
    tag: str | None = None
    digest: Digest | None = None

    @classmethod
    def parse(cls, value: str, default_registry: str = DEFAULT_REGISTRY) -> Reference:
        if not value or value != value.strip():
            raise ReferenceError(f"invalid reference: {value!r}")
        rest, digest = value, None
        if "@" in rest:
            rest, _, raw_digest = rest.partition("@")
            try:
                digest = Digest.parse(raw_digest)
            except DigestError as exc:
                raise ReferenceError(f"invalid reference {value!r}: {exc}") from None
        tag = None
        slash = rest.rfind("/")
        colon = rest.rfind(":")
        if colon > slash:
            rest, tag = rest[:colon], rest[colon + 1 :]
            if not valid_tag(tag):
                raise ReferenceError(f"invalid tag {tag!r} in {value!r}")
        first, sep, remainder = rest.partition("/")
        looks_like_host = "." in first or ":" in first or first == "localhost"
        if sep and (looks_like_host or first != first.lower()):
            if not _HOST_RE.fullmatch(first):
                raise ReferenceError(f"invalid registry host {first!r} in {value!r}")
            registry, path = first, remainder
        else:
            registry, path = default_registry, rest
        if registry in ("docker.io", "index.docker.io", "registry-1.docker.io"):
            registry = DEFAULT_REGISTRY
            if "/" not in path:
                path = f"library/{path}"
        if not valid_repository_name(path):
            raise ReferenceError(f"invalid repository name {path!r} in {value!r}")
        return cls(registry, path, tag, digest)

    def with_tag(self, tag: str | None) -> Reference:
        return Reference(self.registry, self.repository, tag, None)

    def with_digest(self, digest: Digest) -> Reference:
        return Reference(self.registry, self.repository, self.tag, digest)

    @property
    def identifier(self) -> str:
        """What goes after `/manifests/`: the digest if pinned, else the tag (default latest)."""
        if self.digest is not None:
            return str(self.digest)
        return self.tag or DEFAULT_TAG

    @property
    def name(self) -> str:
        """`registry/repository`, the way docker prints it."""
        return f"{self.registry}/{self.repository}"

    @property
    def is_loopback(self) -> bool:
        host = self.registry
        if host.startswith("["):
            host = host[1 : host.index("]")]
        else:
            host = host.rsplit(":", 1)[0]
        if host == "localhost":
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False

    def __str__(self) -> str:
        out = self.name
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out
