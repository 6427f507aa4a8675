"""A real `pyreg serve` (one worker and two): the metrics listener, parsed with
prometheus_client's parser; values move after a push and a pull; labels are route templates;
the access log replaces uvicorn's; the metrics directory is removed at exit."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from registry.routes import ROUTES
from tests.support.server import RegistryServer, free_port

pytestmark = pytest.mark.slow

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

CONFIG = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'


def scrape(url: str) -> Samples:
    response = httpx.get(url, timeout=30)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    out: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def total(samples: Samples, name: str, **labels: str) -> float:
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def route_labels(samples: Samples) -> set[str]:
    return {value for (_, ls) in samples for key, value in ls if key == "route"}


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def push_and_pull(url: str, repo: str, tag: str) -> None:
    layer = f"layer of {repo}:{tag}".encode()
    with httpx.Client(base_url=url, timeout=30) as client:
        for blob in (CONFIG, layer):
            posted = client.post(f"/v2/{repo}/blobs/uploads/?digest={digest(blob)}", content=blob)
            assert posted.status_code == 201, posted.text
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": digest(CONFIG),
                    "size": len(CONFIG),
                },
                "layers": [
                    {
                        "mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": digest(layer),
                        "size": len(layer),
                    }
                ],
            }
        ).encode()
        put = client.put(
            f"/v2/{repo}/manifests/{tag}",
            content=manifest,
            headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
        )
        assert put.status_code == 201, put.text
        assert client.get(f"/v2/{repo}/manifests/{tag}").status_code == 200
        assert client.get(f"/v2/{repo}/blobs/{digest(layer)}").content == layer


@pytest.fixture
def tmpdir_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    temp = tmp_path / "tmp"
    temp.mkdir()
    yield {"TMPDIR": str(temp)}


@pytest.mark.parametrize("workers", [1, 2])
def test_scrape_a_running_server(tmp_path: Path, tmpdir_env: dict[str, str], workers: int) -> None:
    metrics_port = free_port()
    config = {"workers": workers, "metrics": {"addr": f"127.0.0.1:{metrics_port}"}}
    storage = f"file://{tmp_path / 'storage'}"
    metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
    with RegistryServer(storage, config, env=tmpdir_env) as server:
        before = scrape(metrics_url)
        assert total(before, "pyreg_build_info") == 1
        # several requests, so that with two workers both most likely serve some
        for i in range(4):
            push_and_pull(server.url, f"team/app{i}", f"v{i}")
        after = scrape(metrics_url)
        manifest = "/v2/{name:path}/manifests/{reference}"
        assert (
            total(after, "pyreg_manifests_pushed_total")
            - total(before, "pyreg_manifests_pushed_total")
            == 4
        )
        assert total(after, "pyreg_manifests_pulled_total") == 4
        assert total(after, "pyreg_blobs_pushed_total") == 8
        assert total(after, "pyreg_blobs_pulled_total") == 4
        put_manifests = total(
            after, "pyreg_http_requests_total", method="PUT", route=manifest, status="201"
        )
        assert put_manifests == 4
        assert total(after, "pyreg_http_request_duration_seconds_count", route=manifest) == 8
        assert total(after, "pyreg_http_received_bytes_total", method="POST") > 0
        assert total(after, "pyreg_storage_operations_total", backend="filesystem") > 0
        assert total(after, "pyreg_uploads_in_progress") == 0
        templates = {str(getattr(r, "path", "")) for r in ROUTES} | {"unmatched"}
        labels = route_labels(after)
        assert manifest in labels and labels <= templates, labels - templates
        assert not any("team" in label for label in labels)
        temp = Path(tmpdir_env["TMPDIR"])
        # one worker counts in the serving process itself: no files to share
        assert len(list(temp.glob("pyreg-metrics-*"))) == (1 if workers > 1 else 0)
    assert list(temp.glob("pyreg-metrics-*")) == []  # removed at exit


def test_metrics_on_the_main_port_only_when_enabled(tmp_path: Path) -> None:
    storage = f"file://{tmp_path / 'storage'}"
    with RegistryServer(storage) as server:
        assert httpx.get(f"{server.url}/metrics").status_code == 404
    with RegistryServer(storage, {"metrics": {"on_main_port": True}}) as server:
        push_and_pull(server.url, "a", "v1")
        samples = scrape(f"{server.url}/metrics")
        assert total(samples, "pyreg_manifests_pushed_total") == 1
        assert total(samples, "pyreg_build_info") == 1


def test_access_log_lines_replace_uvicorns(tmp_path: Path) -> None:
    storage = f"file://{tmp_path / 'storage'}"
    args = ["--log-level", "info", "--log-format", "json", "--trusted-proxies", "127.0.0.1"]
    with RegistryServer(storage, args=args) as server:
        push_and_pull(server.url, "logged/repo", "v1")
        httpx.get(f"{server.url}/v2/logged/repo/tags/list", headers={"X-Request-ID": "abc-123"})
        proxied = {"X-Forwarded-For": "203.0.113.9", "X-Request-ID": "via-proxy"}
        httpx.get(f"{server.url}/v2/logged/repo/tags/list", headers=proxied)
        server.stop()
        log = server.log()
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    assert lines and len(lines) == len(log.splitlines()), log  # every line is JSON
    access = [line for line in lines if line["logger"] == "registry.access"]
    tags = [line for line in access if line["route"] == "/v2/{name:path}/tags/list"]
    assert len(tags) == 2
    assert tags[-2]["request_id"] == "abc-123" and tags[-2]["client"] == "127.0.0.1"
    assert tags[-2]["repository"] == "logged/repo" and tags[-2]["status"] == 200
    # the client address after proxy trust (the proxy on 127.0.0.1 is trusted)
    assert tags[-1]["request_id"] == "via-proxy" and tags[-1]["client"] == "203.0.113.9"
    assert not [line for line in lines if line["logger"] == "uvicorn.access"]
    audit = [line["action"] for line in lines if line["logger"] == "registry.audit"]
    assert audit == ["blob.upload", "blob.upload", "manifest.push"]
