"""A real Prometheus (Debian `prometheus`) scrapes `pyreg serve`'s metrics listener: `up` is 1
and a pyreg metric is queryable through its HTTP API."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.support.server import RegistryServer, free_port

pytestmark = [pytest.mark.slow, pytest.mark.interop]

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"


def _query(base: str, expression: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{base}/api/v1/query", params={"query": expression}, timeout=10)
    response.raise_for_status()
    result: list[dict[str, Any]] = response.json()["data"]["result"]
    return result


def test_prometheus_scrapes_the_listener(tmp_path: Path) -> None:
    if not Path(PROMETHEUS).exists():
        pytest.skip("prometheus is not installed (Debian package `prometheus`)")
    metrics_port = free_port()
    config = {"metrics": {"addr": f"127.0.0.1:{metrics_port}"}}
    with RegistryServer(f"file://{tmp_path / 'storage'}", config) as server:
        httpx.get(f"{server.url}/v2/_catalog")
        prom_config = tmp_path / "prometheus.yml"
        prom_config.write_text(
            yaml.safe_dump(
                {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "scrape_configs": [
                        {
                            "job_name": "pyreg",
                            "static_configs": [{"targets": [f"127.0.0.1:{metrics_port}"]}],
                        }
                    ],
                }
            )
        )
        web_port = free_port()
        log = (tmp_path / "prometheus.log").open("wb")
        prometheus = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={prom_config}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{web_port}",
            ],
            stdout=log,
            stderr=log,
        )
        base = f"http://127.0.0.1:{web_port}"
        try:
            deadline = time.monotonic() + 90
            up: list[dict[str, Any]] = []
            requests: list[dict[str, Any]] = []
            while time.monotonic() < deadline:
                if prometheus.poll() is not None:
                    output = (tmp_path / "prometheus.log").read_text(errors="replace")
                    pytest.skip(f"prometheus could not run here: {output[-500:]}")
                try:
                    up = _query(base, 'up{job="pyreg"}')
                    requests = _query(base, 'pyreg_http_requests_total{route="/v2/_catalog"}')
                except httpx.HTTPError:
                    up = []
                if up and up[0]["value"][1] == "1" and requests:
                    break
                time.sleep(0.5)
            assert up and up[0]["value"][1] == "1", up
            assert requests and float(requests[0]["value"][1]) >= 1, requests
            assert requests[0]["metric"]["method"] == "GET"
        finally:
            prometheus.terminate()
            try:
                prometheus.wait(timeout=30)
            except subprocess.TimeoutExpired:
                prometheus.kill()
                prometheus.wait()
            log.close()
