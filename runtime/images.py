"""A local image by name or digest, for running or building on: its manifest and config.

Shared by `pyreg run` and `pyreg build` (FROM): a name missing from the local store is pulled
with the client's own puller, as `docker run` and `docker build` do.
"""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import dataclass

import httpx

from ocispec.digest import Digest
from ocispec.models import ImageConfig, Index, Manifest, Platform, chain_ids, parse_manifest
from ocispec.reference import Reference
from puller import messages
from puller.mirrors import pull_image
from puller.netopts import NetOptions
from puller.pull import PullError, choose_platform, host_platform_spec
from puller.store import GraphStore, StoreError
from puller.store.images import image_name
from regclient.api import RegistryError
from regclient.auth import AuthError
from regclient.credentials import CredentialsError
from regclient.registries_conf import PullSource
from regclient.tls import TLSConfigError
from runtime.errors import ContainerError


@dataclass(frozen=True)
class LocalImage:
    name: str
    digest: Digest  # what the name points at (maybe an index)
    manifest_digest: Digest
    manifest: Manifest
    config: ImageConfig

    @property
    def chains(self) -> list[Digest]:
        return chain_ids(self.config.diff_ids)


def _lookup(store: GraphStore, value: str) -> tuple[str, Digest] | None:
    if Digest.is_valid(value):
        wanted = Digest.parse(value)
        for name, digest in store.images.list().items():
            if digest == wanted:
                return name, digest
        return (value, wanted) if store.content.has(wanted) else None
    name = image_name(Reference.parse(value))
    found = store.images.get(name)
    return (name, found) if found is not None else None


def _pull(store: GraphStore, value: str, platform: Platform | None, net: NetOptions) -> None:
    """As `pyreg pull` with the same options (`net`): mirrors, credentials, TLS trust."""
    ref = Reference.parse(value)
    failures = (
        RegistryError,
        AuthError,
        PullError,
        StoreError,
        httpx.HTTPError,
        CredentialsError,
        TLSConfigError,
    )
    where = argparse.Namespace(reference=value)

    def tried(source: PullSource) -> None:
        where.location = str(source.reference)

    try:
        asyncio.run(pull_image(store, ref, net, platform=platform, on_try=tried))
    except failures as exc:
        # the words and hints `pyreg pull` gives (login, TLS trust, is the registry running)
        said = messages.describe(exc, "pull", where)
        raise ContainerError(f"{value} is not in the local store and {said}") from None


def resolve_image(
    store: GraphStore,
    value: str,
    *,
    pull: bool = True,
    platform: Platform | None = None,
    net: NetOptions | None = None,
) -> LocalImage:
    """`net`: how a missing image is pulled (default: as `pyreg pull` without options)."""
    found = _lookup(store, value)
    if found is None and pull and not Digest.is_valid(value):
        _pull(store, value, platform, net or NetOptions())
        found = _lookup(store, value)
    if found is None:
        raise ContainerError(f"no local image named {value}")
    name, digest = found
    parsed = parse_manifest(store.content.read_bytes(digest))
    manifest_digest = digest
    wanted = platform or host_platform_spec()
    if isinstance(parsed, Index):
        entry = choose_platform(parsed, wanted)
        manifest_digest = entry.digest
        parsed = parse_manifest(store.content.read_bytes(entry.digest))
        if isinstance(parsed, Index):
            raise ContainerError(f"{entry.digest}: nested indexes are not supported")
    config = ImageConfig.parse(store.content.read_bytes(parsed.config.digest))
    if (
        config.os
        and config.architecture
        and (config.os, config.architecture)
        != (
            wanted.os,
            wanted.architecture,
        )
    ):
        raise ContainerError(
            f"image {name} is for {config.os}/{config.architecture}, "
            f"this host runs {wanted.os}/{wanted.architecture}"
        )
    return LocalImage(name, digest, manifest_digest, parsed, config)
