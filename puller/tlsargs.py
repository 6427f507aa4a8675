"""The TLS options of the client commands: `--tls-verify=BOOL` (podman) and `--cert-dir DIR`
(skopeo), next to `--insecure` (docker); their meaning is regclient/tls.py's."""

from __future__ import annotations

import argparse
from pathlib import Path

from regclient.tls import TLSOptions

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def _bool(value: str) -> bool:
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, not {value!r}")


def add_tls_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--tls-verify",
        type=_bool,
        default=None,
        metavar="BOOL",
        help="check the registry's certificate (default: true, except for loopback "
        "registries); false: as --insecure",
    )
    p.add_argument(
        "--cert-dir",
        type=Path,
        metavar="DIR",
        help="the registry's CAs (*.crt) and client certificate (*.cert + *.key), instead of "
        "/etc/containers/certs.d/HOST and /etc/docker/certs.d/HOST",
    )


def tls_options(args: argparse.Namespace) -> TLSOptions:
    verify: bool | None = getattr(args, "tls_verify", None)
    if verify and getattr(args, "insecure", False):
        raise ValueError("--insecure and --tls-verify=true contradict each other")
    return TLSOptions(verify=verify, cert_dir=getattr(args, "cert_dir", None))
