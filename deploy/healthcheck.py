"""The image's HEALTHCHECK: GET /healthz on the port `pyreg serve` listens on.

The port comes from the same place the server takes it: the config file, then PYREG_PORT
(registry.settings.load_settings). Exit 0 when /healthz answers 200, else 1 (Docker's
"unhealthy"). Usage: python healthcheck.py [CONFIG] (default /etc/pyreg/config.yaml).
"""

from __future__ import annotations

import http.client
import sys

from registry.settings import SettingsError, load_settings


def main(argv: list[str]) -> int:
    config = argv[1] if len(argv) > 1 else "/etc/pyreg/config.yaml"
    try:
        port = load_settings(config).port
    except SettingsError as exc:
        print(f"healthcheck: {exc}", file=sys.stderr)
        return 1
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=4)
    try:
        connection.request("GET", "/healthz")
        status = connection.getresponse().status
    except OSError as exc:
        print(f"healthcheck: 127.0.0.1:{port}: {exc}", file=sys.stderr)
        return 1
    finally:
        connection.close()
    return 0 if status == 200 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
