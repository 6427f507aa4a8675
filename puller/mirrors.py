"""Pull an image through the mirrors registries.conf names for it (regclient/registries_conf.py),
as podman does: each mirror in order, then the primary location; the image is recorded under
the name that was asked for, whichever location served it.

A mirror that fails (unreachable, not found, 5xx, refused credentials, a download that broke
or did not match its digest) is skipped for the next location; with `debug` a line on stderr
says so. The primary's failure is the pull's failure. What a failed attempt already stored
(verified blobs) is reused by the next one. Pushes never use mirrors.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import httpx

from ocispec.digest import DigestMismatch
from ocispec.models import Platform
from ocispec.reference import Reference
from puller.netopts import NetOptions
from puller.progress import Reporter
from puller.pull import DEFAULT_CONCURRENCY, RESUMABLE, Puller, PullError, PullResult
from puller.store import GraphStore
from puller.store.images import image_name
from puller.store.limits import SizeCaps
from regclient import registries_conf
from regclient.api import RegistryError
from regclient.auth import AuthError
from regclient.registries_conf import PullSource
from regclient.tls import TLSConfigError

#: what makes a mirror skipped rather than the pull failed
MIRROR_FAILURES = (RegistryError, AuthError, httpx.HTTPError, TLSConfigError)


def pull_sources(ref: Reference, net: NetOptions) -> list[PullSource]:
    conf = registries_conf.load(net.registries_conf)
    return conf.pull_sources(ref, net.insecure)


def _mirror_failed(exc: BaseException) -> bool:
    if isinstance(exc, MIRROR_FAILURES):
        return True
    # a download that kept breaking or kept arriving wrong: PullError raised from it
    return isinstance(exc, PullError) and isinstance(exc.__cause__, (*RESUMABLE, DigestMismatch))


async def pull_image(
    store: GraphStore,
    ref: Reference,
    net: NetOptions,
    *,
    platform: Platform | None = None,
    reporter: Reporter | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    caps: SizeCaps | None = None,
    allow_nondistributable: bool | None = None,
    on_try: Callable[[PullSource], None] | None = None,
) -> PullResult:
    """`on_try(source)` before each location is tried: the last one is where a failure
    happened (messages name it, not a name registries.conf rewrote)."""
    sources = pull_sources(ref, net)
    name = image_name(ref)
    for i, source in enumerate(sources):
        last = i == len(sources) - 1
        if net.debug and len(sources) > 1:
            print(f"Trying to access {source.reference}", file=sys.stderr)
        if on_try is not None:
            on_try(source)
        try:
            client = net.client(
                source.reference.registry,
                repository=source.reference.repository,
                insecure=source.insecure,
            )
            async with client:
                puller = Puller(
                    client,
                    store,
                    reporter=reporter,
                    concurrency=concurrency,
                    caps=caps,
                    allow_nondistributable=allow_nondistributable,
                )
                return await puller.pull(source.reference, platform, name=name)
        except Exception as exc:
            if last or not _mirror_failed(exc):
                raise
            if net.debug:
                detail = str(exc) or type(exc).__name__
                print(
                    f"Pulling {source.reference} from the mirror failed: {detail}; "
                    "trying the next location",
                    file=sys.stderr,
                )
    raise AssertionError("unreachable: the primary location is always last")
