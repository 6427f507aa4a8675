"""How the client reaches registries, from the command line: `--insecure`, `--tls-verify`,
`--cert-dir` (tlsargs.py), `--authfile` and `--registries-conf`. Shared by the registry
commands (puller/cli.py) and by the commands that pull what they lack (`pyreg run`)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

from puller.tlsargs import add_tls_arguments, tls_options
from regclient import credentials
from regclient.api import RegistryClient
from regclient.tls import TLSOptions


@dataclass(frozen=True, slots=True)
class NetOptions:
    insecure: bool = False
    tls: TLSOptions = field(default_factory=TLSOptions)
    authfile: Path | None = None
    registries_conf: Path | None = None
    debug: bool = False  # say which locations are tried and why one failed

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> NetOptions:
        return cls(
            insecure=bool(getattr(args, "insecure", False)),
            tls=tls_options(args),
            authfile=getattr(args, "authfile", None),
            registries_conf=getattr(args, "registries_conf", None),
            debug=bool(getattr(args, "debug", False)),
        )

    def client(
        self, registry: str, *, repository: str | None = None, insecure: bool = False
    ) -> RegistryClient:
        """A client for `registry` with its own credentials (a mirror's are looked up by the
        mirror's host and path, as containers/image does); `insecure`: also insecure."""
        return RegistryClient(
            registry,
            credentials=credentials.load(registry, authfile=self.authfile, repository=repository),
            insecure=self.insecure or insecure,
            tls=self.tls,
        )


def add_authfile_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--authfile",
        type=Path,
        help="credentials file (podman's auth.json format; default $REGISTRY_AUTH_FILE, then "
        "$XDG_RUNTIME_DIR/containers/auth.json, ~/.config/containers/auth.json, "
        "docker's config.json)",
    )


def add_registries_conf_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--registries-conf",
        type=Path,
        metavar="FILE",
        help="registries.conf for mirrors, blocked and insecure registries (default "
        "$CONTAINERS_REGISTRIES_CONF, ~/.config/containers/registries.conf or "
        "/etc/containers/registries.conf, with their registries.conf.d)",
    )


def add_network_arguments(p: argparse.ArgumentParser, *, pulls: bool = False) -> None:
    """--insecure, --tls-verify, --cert-dir, --authfile; with `pulls` --registries-conf."""
    p.add_argument(
        "--insecure",
        action="store_true",
        help="no certificate checks, plain HTTP if no TLS (as loopback registries by default)",
    )
    add_tls_arguments(p)
    add_authfile_argument(p)
    if pulls:
        add_registries_conf_argument(p)
