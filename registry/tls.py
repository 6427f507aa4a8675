"""HTTPS for `pyreg serve`: the server's SSL context, reloaded when its files change.

`tls: {certificate, key, client_ca}` (or `--tls-cert/--tls-key/--tls-client-ca`) turns HTTPS
on. uvicorn builds the context in every worker through `ssl_context_factory`; the factory here
builds it and re-checks the files' modification times (and sizes) once per
`RELOAD_INTERVAL` on the worker's event loop. When they changed, the new pair is first
loaded into a scratch context (a certificate without its matching key, half-written by a
renewal, is refused there and tried again at the next check, the old pair keeps serving), then
into the live context: new handshakes get the new certificate, open connections keep theirs.
Doing it on the event loop, not a thread, keeps it off the handshakes' way (OpenSSL does not
allow changing a context while another thread creates connections from it).

`client_ca`: clients must present a certificate signed by one of its CAs (CERT_REQUIRED);
a changed bundle adds its CAs at the next check, removing one takes a restart.

Protocols below TLS 1.2 are refused.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger("registry.tls")

RELOAD_INTERVAL = 1.0  # seconds between checks of the files' modification times


class TLSError(ValueError):
    """Certificate, key or CA files that cannot be used."""


@dataclass(frozen=True, slots=True)
class TLSFiles:
    certificate: str
    key: str
    client_ca: str = ""

    def paths(self) -> tuple[str, ...]:
        return tuple(p for p in (self.certificate, self.key, self.client_ca) if p)


def _stamp(files: TLSFiles) -> tuple[tuple[int, int, int], ...]:
    """What changes when a file is rewritten or replaced (renamed over)."""
    out = []
    for path in files.paths():
        try:
            st = os.stat(path)
        except OSError:
            out.append((0, 0, 0))
        else:
            out.append((st.st_mtime_ns, st.st_size, st.st_ino))
    return tuple(out)


def _load(context: ssl.SSLContext, files: TLSFiles) -> None:
    try:
        context.load_cert_chain(files.certificate, files.key)
        if files.client_ca:
            context.load_verify_locations(cafile=files.client_ca)
    except OSError as exc:
        raise TLSError(f"{exc.filename or files.certificate}: {exc.strerror}") from None
    except ssl.SSLError as exc:
        raise TLSError(f"cannot use {', '.join(files.paths())}: {exc.reason or exc}") from None


def new_context(files: TLSFiles) -> ssl.SSLContext:
    """A server context with the files loaded; TLSError when they cannot be used."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["http/1.1"])
    if files.client_ca:
        context.verify_mode = ssl.CERT_REQUIRED
    _load(context, files)
    return context


class ReloadingContext:
    """One live SSLContext and the files it came from."""

    def __init__(self, files: TLSFiles) -> None:
        self.files = files
        self._stamp = _stamp(files)
        self.context = new_context(files)
        self.reloads = 0  # successful reloads (for tests and metrics)
        self._failed_stamp: tuple[tuple[int, int, int], ...] | None = None

    def reload_if_changed(self) -> bool:
        """Load the files again if they changed since the last load; True when it did."""
        stamp = _stamp(self.files)
        if stamp == self._stamp:
            return False
        try:
            new_context(self.files)  # refuse a mismatched pair before touching the live one
            _load(self.context, self.files)
        except TLSError as exc:
            if stamp != self._failed_stamp:  # say it once per change, not every second
                logger.warning(
                    "TLS files changed but cannot be used yet (%s); keeping the old", exc
                )
                self._failed_stamp = stamp
            return False
        self._stamp = stamp
        self.reloads += 1
        logger.info("TLS certificate reloaded from %s", self.files.certificate)
        return True

    def watch(self, loop: asyncio.AbstractEventLoop, interval: float = RELOAD_INTERVAL) -> None:
        """Check every `interval` seconds on `loop`, for as long as it runs."""

        def tick() -> None:
            try:
                self.reload_if_changed()
            finally:
                loop.call_later(interval, tick)

        loop.call_later(interval, tick)


_active: ReloadingContext | None = None


def active() -> ReloadingContext | None:
    """This process's reloading context, once uvicorn has built it."""
    return _active


def context_factory(files: TLSFiles, config: Any, default: Callable[[], ssl.SSLContext]) -> Any:
    """uvicorn's `ssl_context_factory` (bound to `files` with functools.partial, which pickles
    to the worker processes): runs in each worker, inside its event loop."""
    global _active
    _active = ReloadingContext(files)
    try:
        _active.watch(asyncio.get_running_loop())
    except RuntimeError:  # no loop: built outside a server, nothing to reload for
        pass
    return _active.context


def uvicorn_options(certificate: str, key: str, client_ca: str = "") -> dict[str, Any]:
    """Keyword arguments for `uvicorn.run`: none without a certificate. Checks the files now,
    so a mistake is one line at start-up (TLSError), not a traceback in every worker."""
    if not certificate:
        return {}
    files = TLSFiles(certificate, key, client_ca)
    new_context(files)
    return {
        # uvicorn says "https://" in its start-up line when it sees a certificate file
        "ssl_certfile": certificate,
        "ssl_keyfile": key,
        "ssl_context_factory": functools.partial(context_factory, files),
    }
