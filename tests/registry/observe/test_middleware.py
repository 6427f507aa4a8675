"""The per-request middleware in process: request ids, access-log fields, request metrics with
route templates, content counters and audit lines."""

from __future__ import annotations

import logging
import os
from typing import Any

import pytest
from prometheus_client import REGISTRY

from registry.observe.middleware import BLOB, MANIFEST, UPLOAD, UPLOAD_STARTS, request_id
from registry.settings import Settings
from tests.registry.helpers import digest_of, push_blob, push_image, put_manifest
from tests.registry.observe.conftest import AppClient
from tests.support.auth import basic


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def records(caplog: pytest.LogCaptureFixture, logger: str) -> list[dict[str, Any]]:
    return [r.fields for r in caplog.records if r.name == logger and hasattr(r, "fields")]


async def test_request_id_is_made_returned_and_taken_when_sane(app_client: AppClient) -> None:
    client = await app_client()
    made = (await client.get("/v2/")).headers["x-request-id"]
    assert len(made) == 32 and made != (await client.get("/v2/")).headers["x-request-id"]
    given = {"X-Request-ID": "trace-1234.abc"}
    assert (await client.get("/v2/", headers=given)).headers["x-request-id"] == "trace-1234.abc"
    for bad in ("has space", "x" * 200, "new\\nline", "-leading"):
        answered = (await client.get("/v2/", headers={"X-Request-ID": bad})).headers
        assert answered["x-request-id"] != bad and len(answered["x-request-id"]) == 32


def test_a_forked_worker_makes_other_request_ids_than_its_parent() -> None:
    # made ids come from a seeded generator: a child must not replay its parent's sequence
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.write(write, request_id({"headers": []}).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)
    mine = request_id({"headers": []})
    assert len(child) == len(mine) == 32 and child != mine


async def test_access_line_has_every_field(
    app_client: AppClient, auth_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    client = await app_client(auth_settings)
    alice = basic("alice", "alice-pw")
    with caplog.at_level(logging.INFO, logger="registry.access"):
        digest = digest_of(b"layer")
        url = f"/v2/team/app/blobs/uploads/?digest={digest}"
        pushed = await client.post(url, content=b"layer", headers=alice)
        assert pushed.status_code == 201
        pulled = await client.get(
            f"/v2/team/app/blobs/{digest}", headers={**alice, "X-Request-ID": "req-1"}
        )
        assert pulled.status_code == 200
        anonymous = await client.get("/v2/team/app/manifests/latest")
        assert anonymous.status_code == 401
    lines = records(caplog, "registry.access")
    assert len(lines) == 3
    push, pull, refused = lines
    assert push["route"] == UPLOAD_STARTS[0] and push["method"] == "POST"
    assert push["bytes_in"] == 5 and push["status"] == 201 and push["user"] == "alice"
    assert pull == {
        "request_id": "req-1",
        "client": "127.0.0.1",
        "user": "alice",
        "method": "GET",
        "route": BLOB,
        "repository": "team/app",
        "reference": digest,
        "status": 200,
        "bytes_in": 0,
        "bytes_out": 5,
        "duration_ms": pull["duration_ms"],
    }
    assert isinstance(pull["duration_ms"], float) and pull["duration_ms"] >= 0
    assert refused["user"] is None and refused["status"] == 401
    assert refused["route"] == MANIFEST and refused["reference"] == "latest"


async def test_request_metrics_use_route_templates(app_client: AppClient) -> None:
    client = await app_client()
    labels = {"method": "GET", "route": MANIFEST, "status": "404"}
    before = sample("pyreg_http_requests_total", **labels)
    unmatched = {"method": "GET", "route": "unmatched", "status": "404"}
    before_other = sample("pyreg_http_requests_total", **unmatched)
    timed = {"method": "GET", "route": MANIFEST}
    latency_before = sample("pyreg_http_request_duration_seconds_count", **timed)
    for name in ("one", "two/three", "four"):
        assert (await client.get(f"/v2/{name}/manifests/latest")).status_code == 404
    await client.get("/no/such/route")
    assert sample("pyreg_http_requests_total", **labels) == before + 3
    assert sample("pyreg_http_requests_total", **unmatched) == before_other + 1
    assert sample("pyreg_http_request_duration_seconds_count", **timed) == latency_before + 3
    exposed = {
        route
        for metric in REGISTRY.collect()
        for s in metric.samples
        if (route := s.labels.get("route")) is not None
    }
    assert not any("one" in r or "three" in r for r in exposed), exposed


async def test_each_status_of_a_route_is_its_own_series_and_byte_series_wait_for_bytes(
    app_client: AppClient,
) -> None:
    # the middleware keeps the labelled children per (method, route, status)
    client = await app_client()
    missing = {"method": "DELETE", "route": MANIFEST, "status": "404"}
    gone = {"method": "DELETE", "route": MANIFEST, "status": "202"}
    before_missing, before_gone = (
        sample("pyreg_http_requests_total", **s) for s in (missing, gone)
    )
    data, _ = await push_image(client, "series/app")
    assert (await put_manifest(client, "series/app", "v1", data)).status_code == 201
    digest = digest_of(data)
    assert (await client.delete(f"/v2/series/app/manifests/{digest}")).status_code == 202
    assert (await client.delete(f"/v2/series/app/manifests/{digest}")).status_code == 404
    assert (await client.delete(f"/v2/series/app/manifests/{digest}")).status_code == 404
    assert sample("pyreg_http_requests_total", **gone) == before_gone + 1
    assert sample("pyreg_http_requests_total", **missing) == before_missing + 2
    # no request body on a DELETE: no received-bytes series for it (not even a 0)
    labels = {"method": "DELETE", "route": MANIFEST}
    assert REGISTRY.get_sample_value("pyreg_http_received_bytes_total", labels) is None


async def test_odd_methods_share_one_label(app_client: AppClient) -> None:
    client = await app_client()
    before = sample("pyreg_http_requests_total", method="OTHER", route="/v2/", status="405")
    await client.request("BREW", "/v2/")
    await client.request("PROPFIND", "/v2/")
    assert sample("pyreg_http_requests_total", method="OTHER", route="/v2/", status="405") == (
        before + 2
    )


async def test_bytes_and_content_counters_move(app_client: AppClient) -> None:
    client = await app_client()
    counters = (
        "pyreg_blobs_pushed_total",
        "pyreg_blobs_pulled_total",
        "pyreg_manifests_pushed_total",
        "pyreg_manifests_pulled_total",
        "pyreg_manifests_deleted_total",
        "pyreg_blobs_deleted_total",
        "pyreg_blobs_mounted_total",
    )
    before = {name: sample(name) for name in counters}
    received = sample("pyreg_http_received_bytes_total", method="PUT", route=MANIFEST)
    sent = sample("pyreg_http_sent_bytes_total", method="GET", route=MANIFEST)
    data, manifest = await push_image(client, "a/b", [b"L1"])  # config + 1 layer
    assert (await put_manifest(client, "a/b", "v1", data)).status_code == 201
    assert (await client.get("/v2/a/b/manifests/v1")).status_code == 200
    assert (await client.head("/v2/a/b/manifests/v1")).status_code == 200  # not a pull
    layer = manifest["layers"][0]["digest"]
    assert (await client.get(f"/v2/a/b/blobs/{layer}")).status_code == 200
    mounted = await client.post(f"/v2/c/d/blobs/uploads/?mount={layer}&from=a/b")
    assert mounted.status_code == 201
    assert (await client.delete(f"/v2/c/d/blobs/{layer}")).status_code == 202
    assert (await client.delete("/v2/a/b/manifests/v1")).status_code == 202
    moved = {name: sample(name) - before[name] for name in counters}
    assert moved == {
        "pyreg_blobs_pushed_total": 2,
        "pyreg_blobs_pulled_total": 1,
        "pyreg_manifests_pushed_total": 1,
        "pyreg_manifests_pulled_total": 1,
        "pyreg_manifests_deleted_total": 1,
        "pyreg_blobs_deleted_total": 1,
        "pyreg_blobs_mounted_total": 1,
    }
    assert sample("pyreg_http_received_bytes_total", method="PUT", route=MANIFEST) == (
        received + len(data)
    )
    assert sample("pyreg_http_sent_bytes_total", method="GET", route=MANIFEST) == sent + len(data)


async def test_chunked_upload_is_counted_once_and_in_progress_returns_to_zero(
    app_client: AppClient,
) -> None:
    client = await app_client()
    before = sample("pyreg_blobs_pushed_total")
    started = await client.post("/v2/a/blobs/uploads/")
    location = started.headers["location"]
    patched = await client.patch(location, content=b"abc")
    assert patched.status_code == 202
    done = await client.put(f"{location}?digest={digest_of(b'abc')}")
    assert done.status_code == 201
    assert sample("pyreg_blobs_pushed_total") == before + 1
    assert sample("pyreg_http_requests_total", method="PATCH", route=UPLOAD, status="202") >= 1
    assert sample("pyreg_uploads_in_progress") == 0
    assert sample("pyreg_http_requests_in_progress") == 0


async def test_audit_lines_for_state_changes(
    app_client: AppClient, auth_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    client = await app_client(auth_settings)
    alice = basic("alice", "alice-pw")
    client.headers.update(alice)
    with caplog.at_level(logging.INFO, logger="registry.audit"):
        data, manifest = await push_image(client, "a/b", [b"L1"])
        digest = digest_of(data)
        assert (await put_manifest(client, "a/b", digest, data)).status_code == 201
        tagged = await client.put(
            f"/v2/a/b/manifests/{digest}?tag=v1&tag=v2",
            content=data,
            headers={"Content-Type": manifest["mediaType"]},
        )
        assert tagged.status_code == 201
        layer = manifest["layers"][0]["digest"]
        assert (await client.post(f"/v2/c/blobs/uploads/?mount={layer}&from=a/b")).is_success
        assert (await client.delete(f"/v2/c/blobs/{layer}")).status_code == 202
        assert (await client.delete("/v2/a/b/manifests/v2")).status_code == 202
        assert (await client.delete(f"/v2/a/b/manifests/{digest}")).status_code == 202
        await client.get("/v2/a/b/tags/list")  # reads: no audit line
    lines = records(caplog, "registry.audit")
    assert [line["action"] for line in lines] == [
        "blob.upload",
        "blob.upload",
        "manifest.push",
        "manifest.push",
        "blob.mount",
        "blob.delete",
        "tag.delete",
        "manifest.delete",
    ]
    for line in lines:
        assert line["user"] == "alice" and line["client"] == "127.0.0.1" and line["request_id"]
    assert lines[2]["tags"] is None and lines[2]["digest"] == digest
    assert lines[3]["tags"] == "v1,v2"
    assert lines[4]["source"] == "a/b" and lines[4]["repository"] == "c"
    assert lines[6]["tag"] == "v2" and lines[7]["digest"] == digest


async def test_login_failures_and_lockout_are_counted_and_audited(
    app_client: AppClient, auth_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    client = await app_client(auth_settings)
    failures = sample("pyreg_auth_failures_total", reason="password")
    locked = sample("pyreg_auth_failures_total", reason="locked")
    lockouts = sample("pyreg_auth_lockouts_total")
    tokens = sample("pyreg_auth_failures_total", reason="token")
    with caplog.at_level(logging.INFO, logger="registry.audit"):
        for _ in range(3):  # max_failures: 3
            wrong = await client.get("/v2/", headers=basic("bob", "wrong"))
            assert wrong.status_code == 401
        refused = await client.get("/v2/", headers=basic("bob", "bob-pw"))
        assert refused.status_code == 429
        forged = await client.get("/v2/", headers={"Authorization": "Bearer not.a.token"})
        assert forged.status_code == 401
    assert sample("pyreg_auth_failures_total", reason="password") == failures + 3
    assert sample("pyreg_auth_failures_total", reason="locked") == locked + 1
    assert sample("pyreg_auth_lockouts_total") == lockouts + 1
    assert sample("pyreg_auth_failures_total", reason="token") == tokens + 1
    lines = records(caplog, "registry.audit")
    assert [line["action"] for line in lines] == ["login.failed"] * 3 + ["login.lockout"]
    assert all(line["user"] == "bob" and line["client"] == "127.0.0.1" for line in lines)


async def test_crash_is_counted_as_500(app_client: AppClient) -> None:
    from tests.registry.test_app import _BrokenBackend

    client = await app_client(backend=_BrokenBackend())
    labels = {"method": "HEAD", "route": BLOB, "status": "500"}
    before = sample("pyreg_http_requests_total", **labels)
    digest = await push_blob(client, "a", b"x")
    assert (await client.head(f"/v2/a/blobs/{digest}")).status_code == 500
    assert sample("pyreg_http_requests_total", **labels) == before + 1
    assert sample("pyreg_storage_errors_total", backend="_broken", operation="stat") >= 1
