"""At-least-once delivery with real processes: a `pyreg serve` with a webhook endpoint whose
receiver is down; pushes and deletes are acknowledged (their events already in storage);
the registry is killed with SIGKILL and restarted; the receiver comes back; every event
arrives, signed, in distribution's envelope."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import httpx

from registry.events.envelope import MEDIA_TYPE, SIGNATURE_HEADER, verify_signature
from tests.registry.helpers import CONFIG, descriptor, encode
from tests.support.server import RegistryServer
from tests.support.webhook import WebhookReceiver

SECRET = "receiver-shared-secret"
NAME = "events/app"


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _key(event: dict[str, Any]) -> tuple[str, str, str]:
    target = event["target"]
    return event["action"], target.get("digest", ""), target.get("tag", "")


def _config(url: str) -> dict[str, Any]:
    endpoint = {
        "name": "hook",
        "url": url,
        "timeout": "2s",
        "threshold": 1,
        "backoff": "200ms",
        "max_backoff": "1s",
        "secret": SECRET,
        "ignore": {"actions": ["pull"]},
    }
    return {"notifications": {"poll_interval": "200ms", "lease": "2s", "endpoints": [endpoint]}}


def _push(client: httpx.Client) -> set[tuple[str, str, str]]:
    """Blobs, a manifest under two tags, a tag delete and a blob delete; the events owed."""
    layer = b"a layer for the events test"
    for blob in (CONFIG, layer):
        digest = _digest(blob)
        assert (
            client.post(f"/v2/{NAME}/blobs/uploads/?digest={digest}", content=blob).status_code
            == 201
        )
    manifest = encode(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": descriptor("application/vnd.oci.image.config.v1+json", CONFIG),
            "layers": [descriptor("application/vnd.oci.image.layer.v1.tar+gzip", layer)],
        }
    )
    headers = {"Content-Type": "application/vnd.oci.image.manifest.v1+json"}
    for tag in ("v1", "v2"):
        put = client.put(f"/v2/{NAME}/manifests/{tag}", content=manifest, headers=headers)
        assert put.status_code == 201
    assert client.delete(f"/v2/{NAME}/manifests/v2").status_code == 202
    spare = b"a blob that is deleted"
    assert (
        client.post(f"/v2/{NAME}/blobs/uploads/?digest={_digest(spare)}", content=spare).status_code
        == 201
    )
    assert client.delete(f"/v2/{NAME}/blobs/{_digest(spare)}").status_code == 202
    assert client.get(f"/v2/{NAME}/manifests/v1").status_code == 200  # a pull: ignored
    m = _digest(manifest)
    return {
        ("push", _digest(CONFIG), ""),
        ("push", _digest(layer), ""),
        ("push", m, "v1"),
        ("push", m, "v2"),
        ("delete", "", "v2"),
        ("push", _digest(spare), ""),
        ("delete", _digest(spare), ""),
    }


def test_every_event_arrives_after_receiver_downtime_and_a_kill_9(tmp_path: Path) -> None:
    receiver = WebhookReceiver()  # not started: the receiver is down
    storage = tmp_path / "storage"
    server = RegistryServer(f"file://{storage}", config=_config(receiver.url)).start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            expected = _push(client)
        # acknowledged means queued: the records are in storage before the kill
        queued = list((storage / "_events" / "queue").iterdir())
        assert queued
        server.kill()
        server.start()  # same storage and port; the dead process's lease must expire first
        receiver.start()
        events = receiver.wait_for(lambda ev: expected <= {_key(e) for e in ev}, timeout=90)
        assert expected <= {_key(e) for e in events}
        assert not {_key(e) for e in events if e["action"] == "pull"}
        for received in receiver.received:
            assert received.headers["Content-Type"] == MEDIA_TYPE
            assert verify_signature(SECRET, received.body, received.headers[SIGNATURE_HEADER])
        push = next(e for e in events if _key(e)[2] == "v1" and e["action"] == "push")
        target = push["target"]
        assert target["repository"] == NAME
        assert target["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
        assert target["size"] == target["length"] > 0
        assert target["url"].endswith(f"/v2/{NAME}/manifests/{target['digest']}")
        assert push["request"]["method"] == "PUT"
        assert push["request"]["useragent"].startswith("python-httpx")
        assert set(push["source"]) == {"addr", "instanceID"}
        # the queue drains once everything is delivered
        queue = storage / "_events" / "queue"

        def drained(_: object) -> bool:
            return not queue.exists() or not list(queue.iterdir())

        receiver.wait_for(drained, timeout=30)
        assert drained(None)
    finally:
        server.close()
        receiver.stop()


def test_with_two_workers_every_event_arrives(tmp_path: Path) -> None:
    """Each worker records its own requests and runs a deliverer; the lease lets one
    deliver, and it picks up what the other worker queued."""
    receiver = WebhookReceiver().start()
    storage = tmp_path / "storage"
    config = {**_config(receiver.url), "workers": 2}
    server = RegistryServer(f"file://{storage}", config=config).start()
    try:
        # a new connection per request, so the requests spread over both workers
        no_reuse = httpx.Limits(max_keepalive_connections=0)
        with httpx.Client(base_url=server.url, timeout=30, limits=no_reuse) as client:
            expected = _push(client)
        events = receiver.wait_for(lambda ev: expected <= {_key(e) for e in ev}, timeout=90)
        assert expected <= {_key(e) for e in events}
    finally:
        server.close()
        receiver.stop()
