"""The shipped nginx config (`deploy/compose/nginx.conf`) as a real load balancer on loopback.

    with Nginx(tmp_path / "nginx", ["127.0.0.1:5001", "127.0.0.1:5002"]) as lb:
        lb.url   # http://127.0.0.1:PORT

Only the listen address and the upstream servers are substituted (each keeps the shipped
`max_fails`/`fail_timeout`), plus where a process without root keeps its temp files and logs;
everything that matters in front of pyreg (header handling, streaming, timeouts) is as shipped.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path
from types import TracebackType

import httpx
import pytest

from tests.support.processes import stop_process
from tests.support.server import REPO_ROOT, free_port

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
SHIPPED_NGINX_CONF = REPO_ROOT / "deploy" / "compose" / "nginx.conf"


def nginx_conf(prefix: Path, port: int, upstreams: list[str]) -> str:
    text = SHIPPED_NGINX_CONF.read_text()
    text, listens = re.subn(r"listen\s+8080;", f"listen 127.0.0.1:{port};", text)
    shipped = re.findall(r"^([ \t]*)server\s+registry-[a-z]+:5000\b([^;]*);\n", text, re.M)
    assert listens == 1 and len(shipped) >= 2, "the shipped nginx.conf changed shape"
    indent, options = shipped[0]
    lines = "".join(f"{indent}server {u}{options};\n" for u in upstreams)
    text = re.sub(
        r"(^\s*server\s+registry-[a-z]+:5000\b[^;]*;\n)+", lines, text, count=1, flags=re.M
    )
    paths = "".join(
        f"    {kind}_temp_path {prefix / kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    paths += f"    access_log {prefix / 'access.log'};\n"
    return text.replace("http {\n", "http {\n" + paths, 1)


class Nginx:
    def __init__(self, prefix: Path, upstreams: list[str]) -> None:
        if not Path(NGINX).exists():
            pytest.skip("nginx is not installed (Debian nginx-light)")
        prefix.mkdir(parents=True, exist_ok=True)
        self.prefix = prefix
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.conf = prefix / "nginx.conf"
        self.conf.write_text(nginx_conf(prefix, self.port, upstreams))
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Nginx:
        directives = f"daemon off; pid {self.prefix / 'nginx.pid'}; "
        directives += f"error_log {self.prefix / 'error.log'};"
        self.process = subprocess.Popen(
            [NGINX, "-p", str(self.prefix), "-c", str(self.conf), "-g", directives],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 30
        while True:
            if self.process.poll() is not None:
                assert self.process.stderr is not None
                err = self.process.stderr.read().decode(errors="replace")
                pytest.fail(f"nginx exited: {err}")
            try:
                if httpx.get(f"{self.url}/v2/", timeout=5).status_code in (200, 401):
                    return self
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("nginx did not come up")
            time.sleep(0.1)

    def stop(self) -> None:
        stop_process(self.process)

    def __enter__(self) -> Nginx:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
