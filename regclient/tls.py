"""Which certificates the client trusts and shows, per registry, as docker, podman and skopeo.

- Server certificates are checked against the system trust store through `truststore` (the
  platform's own CA list, so a company CA installed there is trusted), or OpenSSL's default
  paths when truststore is not installed.
- Per registry `HOST[:PORT]`, the directory `ROOT/HOST[:PORT]/` of each certs root is read:
  `~/.config/containers/certs.d`, `/etc/containers/certs.d`, `/etc/docker/certs.d`
  (`PYREG_CERTS_DIRS`, os.pathsep-separated, replaces that list). In it `*.crt` files are
  extra CAs, and `NAME.cert` with `NAME.key` a client certificate (docker's `client.cert` and
  `client.key`). `--cert-dir DIR` (skopeo) names that directory itself instead.
- Verification: on, except with `--insecure` / `--tls-verify=false`, and for loopback
  registries (insecure by default, as docker's 127.0.0.0/8), unless `--tls-verify=true`.
  Where it is off, HTTPS is tried first and plain HTTP when the registry speaks no TLS.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from ocispec.reference import Reference

CERTS_DIRS_ENV = "PYREG_CERTS_DIRS"


class TLSConfigError(Exception):
    """A certificate file in a certs directory cannot be used."""


@dataclass(frozen=True, slots=True)
class TLSOptions:
    verify: bool | None = None  # --tls-verify; None: verify, except on loopback (docker)
    cert_dir: Path | None = None  # --cert-dir: this registry's certificates, no lookup
    #: plain HTTP and nothing else (an `http://` URL written in a configuration file)
    plain_http: bool = False

    def verifies(self, registry: str, insecure: bool = False) -> bool:
        if self.verify is not None:
            return self.verify
        return not insecure and not Reference(registry, "x").is_loopback

    def falls_back(self, registry: str, insecure: bool = False) -> bool:
        """Whether plain HTTP is tried when the registry speaks no TLS."""
        return not self.plain_http and not self.verifies(registry, insecure)


def certs_roots() -> list[Path]:
    value = os.environ.get(CERTS_DIRS_ENV)
    if value is not None:
        return [Path(p) for p in value.split(os.pathsep) if p]
    return [
        Path.home() / ".config/containers/certs.d",
        Path("/etc/containers/certs.d"),
        Path("/etc/docker/certs.d"),
    ]


def cert_dirs(registry: str, cert_dir: Path | None = None) -> list[Path]:
    """The directories holding `registry`'s CAs and client certificate, first wins."""
    if cert_dir is not None:
        return [cert_dir]
    return [root / registry for root in certs_roots() if (root / registry).is_dir()]


def system_context() -> ssl.SSLContext:
    """A verifying context on the system trust store."""
    try:
        import truststore
    except ImportError:  # pragma: no cover - truststore is a dependency; a stripped install
        return ssl.create_default_context()
    return truststore.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


def client_context(
    registry: str,
    *,
    verify: bool = True,
    cert_dir: Path | None = None,
    client_cert: bool = True,
) -> ssl.SSLContext:
    """The SSL context for `registry`: trust store plus its certs directories' CAs, and its
    client certificate (when `client_cert`)."""
    if verify:
        context = system_context()
    else:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["http/1.1"])
    pair_loaded = False
    for directory in cert_dirs(registry, cert_dir):
        try:
            entries = sorted(directory.iterdir())
        except OSError as exc:
            raise TLSConfigError(f"cannot read the certs directory {directory}: {exc}") from None
        for path in entries:
            try:
                if path.suffix == ".crt" and verify:
                    context.load_verify_locations(cafile=str(path))
                elif path.suffix == ".cert" and client_cert and not pair_loaded:
                    key = path.with_suffix(".key")
                    if not key.is_file():
                        raise TLSConfigError(f"client certificate {path} has no key {key.name}")
                    context.load_cert_chain(str(path), str(key))
                    pair_loaded = True
            except (ssl.SSLError, OSError) as exc:
                raise TLSConfigError(f"cannot load {path}: {exc}") from None
    return context
