"""`pyreg serve`: run the registry with uvicorn.

Settings come from defaults, then `--config FILE` (YAML), then PYREG_* environment variables,
then the flags given here. Worker processes rebuild the app from the serialised settings
(`registry.app:create_app_from_env`), so every worker serves the same configuration.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from typing import Any

from registry.settings import LOG_LEVELS, SETTINGS_ENV, SettingsError, load_settings
from registry.tls import TLSError, uvicorn_options


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="run the registry (OCI Distribution API v1.1)",
        description="Run the registry server. Flags override the YAML config file, which "
        "overrides the defaults (127.0.0.1:5000, storage file://./var/registry).",
    )
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on (default 5000)")
    parser.add_argument(
        "--storage",
        metavar="URL",
        help="storage URL: file:///abs/path or file://./relative, s3://bucket/prefix, "
        "memory:// (default file://./var/registry)",
    )
    parser.add_argument(
        "--config", metavar="FILE", help="YAML settings file (see docs/registry.md)"
    )
    parser.add_argument("--workers", type=int, metavar="N", help="worker processes (default 1)")
    parser.add_argument("--log-level", choices=LOG_LEVELS, help="log level (default info)")
    parser.add_argument(
        "--trusted-proxies",
        metavar="ADDRS",
        help="comma-separated proxy addresses or networks (CIDR) whose X-Forwarded-For/-Proto "
        "are believed; default none",
    )
    parser.add_argument(
        "--read-only",
        action="store_const",
        const=True,
        dest="readonly",
        help="refuse every write (405): pulls only, no background writers (backups, migrations)",
    )
    parser.add_argument(
        "--shutdown-timeout",
        type=int,
        metavar="SECONDS",
        help="after SIGTERM, how long in-flight requests may run before they are cut (default 30)",
    )
    parser.add_argument("--tls-cert", metavar="FILE", help="PEM certificate chain: serve HTTPS")
    parser.add_argument("--tls-key", metavar="FILE", help="PEM private key of --tls-cert")
    parser.add_argument(
        "--tls-client-ca",
        metavar="FILE",
        help="PEM CA bundle: require client certificates signed by it",
    )
    parser.add_argument(
        "--log-format", choices=("text", "json"), help="log line format (default text)"
    )
    parser.add_argument(
        "--metrics-addr",
        metavar="HOST:PORT",
        help="serve Prometheus metrics on this separate address (default: none)",
    )
    parser.set_defaults(func=serve)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from registry import preflight
    from registry.http_limits import PROTOCOL
    from registry.observe import serving
    from registry.observe.logs import log_config

    try:
        settings = load_settings(
            args.config,
            host=args.host,
            port=args.port,
            storage_url=args.storage,
            workers=args.workers,
            log_level=args.log_level,
            trusted_proxies=args.trusted_proxies,
            readonly=args.readonly,
            shutdown_timeout=args.shutdown_timeout,
            tls_certificate=args.tls_cert,
            tls_key=args.tls_key,
            tls_client_ca=args.tls_client_ca,
            log_format=args.log_format,
            metrics_addr=args.metrics_addr,
        )
        tls_options = uvicorn_options(
            settings.tls_certificate, settings.tls_key, settings.tls_client_ca
        )
    except (SettingsError, TLSError) as exc:
        print(f"pyreg serve: {exc}", file=sys.stderr)
        return 2
    if settings.auth:
        # Check the auth section before uvicorn starts: a mistake there should be one line
        # here, not a traceback from inside every worker's lifespan.
        from registry.auth import parse_config

        try:
            parse_config(settings.auth)
        except ValueError as exc:
            print(f"pyreg serve: auth: {exc}", file=sys.stderr)
            return 2
    if not settings.auth and not _is_loopback(settings.host):
        print(
            f"WARNING: listening on {settings.host} without access control: anyone who can "
            "reach this address can push, overwrite and delete images. Configure `auth` "
            "(docs/registry.md) or bind to 127.0.0.1.",
            file=sys.stderr,
        )
    if settings.workers > 1 and settings.storage_url.startswith("memory:"):
        print("pyreg serve: memory:// storage cannot be shared by several workers", file=sys.stderr)
        return 2
    try:
        serving.check(settings)
        preflight.check(settings)  # one clear line for a bad storage or users file
        serving.start(settings)  # metrics directory and listener, before the app's import
    except (preflight.StartupError, serving.ServingError) as exc:
        print(f"pyreg serve: {exc}", file=sys.stderr)
        return 2

    # (registry.app, and with it the metrics, is imported by uvicorn only: after serving.start
    # chose multiprocess mode.)
    os.environ[SETTINGS_ENV] = settings.to_json()
    # (uvicorn drains on SIGTERM, then re-raises it with the handler found before it started:
    # serving.start installed one that exits 0, after atexit's clean-up.)
    uvicorn.run(
        "registry.app:create_app_from_env",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=settings.log_level,
        # Never uvicorn's: it believes the leftmost X-Forwarded-For entry, which the client
        # writes. registry.client_address takes the rightmost one a trusted proxy added.
        proxy_headers=False,
        # SIGTERM: stop accepting, let in-flight requests finish for this long, then exit 0
        timeout_graceful_shutdown=settings.shutdown_timeout,
        **tls_options,
        # Header size/URL caps and a header deadline (httptools has none): http_limits.py.
        http=PROTOCOL,
        timeout_keep_alive=settings.keep_alive_timeout,
        access_log=False,  # registry.access replaces it (registry.observe.middleware)
        log_config=log_config(settings.log_level, settings.log_format),
    )
    return 0
