"""One line per client failure: the operation, the registry and repository, what happened in
words and, where it helps, what to do. `--debug` adds the traceback (puller/cli.py)."""

from __future__ import annotations

import argparse
import ssl

import httpx

from ocispec.reference import Reference, ReferenceError
from regclient.api import NotFound, RegistryError, Unauthorized
from regclient.auth import AuthError
from regclient.transport import base_url


def target(args: argparse.Namespace) -> tuple[str | None, str | None]:
    """(registry, repository) a command works on, as far as its arguments say; `location`:
    where a pull actually went (a registries.conf location or mirror)."""
    for name in ("location", "reference", "repository", "source"):
        value = getattr(args, name, None)
        if isinstance(value, str):
            try:
                ref = Reference.parse(value)
            except ReferenceError:
                return None, None
            return ref.registry, ref.repository
    registry = getattr(args, "registry", None)
    return (registry if isinstance(registry, str) else None), None


def _where(command: str, registry: str | None, repository: str | None) -> str:
    if registry and repository:
        return f"{command} {repository} on {registry}"
    if registry:
        return f"{command} on {registry}"
    return command


def _is_tls_failure(exc: BaseException) -> bool:
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLError):
            return True
        cause = cause.__cause__ or cause.__context__
    return "SSL" in str(exc) or "certificate" in str(exc).lower()


def describe(exc: BaseException, command: str, args: argparse.Namespace) -> str:
    """The user's one line for `exc` raised by `command`."""
    registry, repository = target(args)
    where = _where(command, registry, repository)
    login = f"pyreg login {registry}" if registry else "pyreg login HOST"
    if isinstance(exc, ReferenceError):
        value = getattr(args, "reference", None) or getattr(args, "repository", None) or ""
        hint = ""
        path = str(value).split("/", 1)[-1] if "/" in str(value) else str(value)
        if path.split(":")[0].split("@")[0] != path.split(":")[0].split("@")[0].lower():
            hint = " (repository names must be lower case)"
        return f"{command}: {exc}{hint}"
    if isinstance(exc, Unauthorized):
        status = "denied" if exc.status == 403 else "not authorized"
        return f"{where}: {status} ({exc.code or exc.status}); log in with `{login}`"
    if isinstance(exc, NotFound):
        return f"{where}: not found on the registry ({exc})"
    if isinstance(exc, RegistryError):
        return f"{where}: the registry refused: {exc}"
    if isinstance(exc, AuthError):
        text = str(exc)
        if " answered 401" in text or " answered 403" in text:
            return f"{where}: the user name or password was refused; log in again with `{login}`"
        return f"{where}: {text}"
    if isinstance(exc, httpx.ConnectError) and _is_tls_failure(exc):
        detail = str(exc).split("] ", 1)[-1].split(" (_ssl", 1)[0]
        if "WRONG_VERSION_NUMBER" in str(exc) or "wrong version number" in str(exc):
            return (
                f"{where}: the registry does not speak TLS; drop --tls-verify=true "
                "(or use --tls-verify=false)"
            )
        return (
            f"{where}: TLS failed ({detail}); trust its CA with --cert-dir DIR or "
            f"/etc/containers/certs.d/{registry}/ca.crt, or skip the check with "
            "--tls-verify=false"
        )
    if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
        url = base_url(registry) if registry else "the registry"
        return f"{where}: cannot connect: is the registry running at {url}?"
    if isinstance(exc, httpx.TimeoutException):
        return f"{where}: the registry stopped answering (timed out)"
    if isinstance(exc, (httpx.ReadError, httpx.RemoteProtocolError, httpx.WriteError)):
        return f"{where}: the connection to the registry broke ({type(exc).__name__}); try again"
    return f"{where}: {exc}" if str(exc) else f"{where}: {type(exc).__name__}"
