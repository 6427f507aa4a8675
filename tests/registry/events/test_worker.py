"""Events in process: the app records pushes, mounts, deletes and pulls; a real loopback
receiver gets them in distribution's envelope; ignored media types and actions are not sent;
pulls are batched (no storage write per pull); a failing endpoint backs off, keeps its order
and ends in the dead letter; one deliverer holds the lease at a time."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from registry.app import create_app
from registry.events.config import Endpoint
from registry.events.envelope import SIGNATURE_HEADER, verify_signature
from registry.events.queue import EventQueue, Lease
from registry.events.stats import DeliveryStats
from registry.events.worker import Deliverer
from registry.settings import Settings
from registry.stores import paths
from storage_backends.memory import MemoryBackend
from tests.registry.helpers import digest_of, push_image
from tests.support.auth import auth_section, basic
from tests.support.server import free_port
from tests.support.webhook import WebhookReceiver

NAME = "team/app"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    running = WebhookReceiver().start()
    yield running
    running.stop()


@pytest.fixture
def second_receiver() -> Iterator[WebhookReceiver]:
    running = WebhookReceiver().start()
    yield running
    running.stop()


def _settings(*endpoints: dict[str, Any], **extra: Any) -> Settings:
    notifications = {"poll_interval": "100ms", "pull_flush_interval": "100ms", **extra}
    return Settings(notifications={**notifications, "endpoints": list(endpoints)})


async def _app_client(
    settings: Settings, backend: MemoryBackend
) -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    app = create_app(settings, backend=backend)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://registry") as client:
            yield app, client


async def _wait(predicate: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await asyncio.sleep(0.05)


async def _push_tagged(client: httpx.AsyncClient) -> str:
    manifest, _ = await push_image(client, NAME)
    headers = {"Content-Type": OCI_MANIFEST, "User-Agent": "events-test/1"}
    response = await client.put(f"/v2/{NAME}/manifests/v1", content=manifest, headers=headers)
    assert response.status_code == 201
    return digest_of(manifest)


async def test_pushes_mounts_deletes_and_pulls_reach_the_receiver(
    receiver: WebhookReceiver,
) -> None:
    backend = MemoryBackend()
    endpoint = {"name": "hook", "url": receiver.url, "secret": "k", "headers": {"X-Token": "t"}}
    async for _, client in _app_client(_settings(endpoint), backend):
        manifest = await _push_tagged(client)
        layer = digest_of(b"layer-one")
        mounted = await client.post(f"/v2/other/app/blobs/uploads/?mount={layer}&from={NAME}")
        assert mounted.status_code == 201
        assert (await client.get(f"/v2/{NAME}/manifests/v1")).status_code == 200
        assert (await client.get(f"/v2/{NAME}/blobs/{layer}")).status_code == 200
        assert (await client.head(f"/v2/{NAME}/blobs/{layer}")).status_code == 200  # not a pull
        assert (await client.delete(f"/v2/{NAME}/manifests/{manifest}")).status_code == 202
        await _wait(lambda: len(receiver.events()) >= 7)
    events = receiver.events()
    by_action: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        by_action.setdefault(event["action"], []).append(event["target"])
    pushes = by_action["push"]
    assert {t["digest"] for t in pushes if t["mediaType"] == "application/octet-stream"} == {
        digest_of(b"layer-one"),
        digest_of(
            b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
        ),
    }
    (manifest_push,) = [t for t in pushes if t["mediaType"] == OCI_MANIFEST]
    assert manifest_push["tag"] == "v1"
    assert manifest_push["digest"] == manifest
    assert manifest_push["url"] == f"http://registry/v2/{NAME}/manifests/{manifest}"
    (mount,) = by_action["mount"]
    assert mount["repository"] == "other/app"
    assert mount["fromRepository"] == NAME
    assert sorted(t.get("tag", t["digest"]) for t in by_action["pull"]) == sorted(["v1", layer])
    assert by_action["delete"] == [{"digest": manifest, "repository": NAME}]
    for received in receiver.received:
        assert received.headers["X-Token"] == "t"
        assert verify_signature("k", received.body, received.headers[SIGNATURE_HEADER])


async def test_ignored_media_types_and_actions_are_not_sent(
    receiver: WebhookReceiver, second_receiver: WebhookReceiver
) -> None:
    everything = {"name": "all", "url": receiver.url}
    manifests_only = {
        "name": "manifests",
        "url": second_receiver.url,
        "ignoredmediatypes": ["application/octet-stream"],
        "ignore": {"actions": ["pull"]},
    }
    async for _, client in _app_client(_settings(everything, manifests_only), MemoryBackend()):
        await _push_tagged(client)
        assert (await client.get(f"/v2/{NAME}/manifests/v1")).status_code == 200
        await _wait(lambda: len(receiver.events()) >= 4 and second_receiver.events())
        await asyncio.sleep(0.5)  # time for anything that should not come
    assert {e["action"] for e in receiver.events()} == {"push", "pull"}
    assert len(receiver.events()) == 4
    (only,) = second_receiver.events()
    assert (only["action"], only["target"]["mediaType"]) == ("push", OCI_MANIFEST)


async def test_pulls_are_batched_without_a_write_per_pull() -> None:
    backend = MemoryBackend()
    down = {"name": "down", "url": f"http://127.0.0.1:{free_port()}/"}
    settings = _settings(down, pull_flush_interval="1h")
    async for app, client in _app_client(settings, backend):
        await _push_tagged(client)
        pushed = await backend.list_dir(paths.EVENTS_QUEUE, limit=1000)
        for _ in range(5):
            assert (await client.get(f"/v2/{NAME}/manifests/v1")).status_code == 200
        assert await backend.list_dir(paths.EVENTS_QUEUE, limit=1000) == pushed
        await app.state.events.recorder.flush_pulls()
        after = await backend.list_dir(paths.EVENTS_QUEUE, limit=1000)
        (batch,) = set(after) - set(pushed)
        record = await EventQueue(backend).read(batch)
        assert record is not None
        assert [e["action"] for e in record.events] == ["pull"] * 5


def _deliverer(backend: MemoryBackend, endpoint: Endpoint, stats: DeliveryStats) -> Deliverer:
    lease = Lease(backend, "me", ttl=30)
    return Deliverer(EventQueue(backend), lease, (endpoint,), 0.05, stats=stats)


async def test_a_failing_endpoint_keeps_order_backs_off_then_dead_letters(
    receiver: WebhookReceiver,
) -> None:
    backend = MemoryBackend()
    receiver.status = 500
    queue = EventQueue(backend)
    first = await queue.put([{"action": "push", "id": "1"}], ["hook"])
    await queue.put([{"action": "push", "id": "2"}], ["hook"])
    stats = DeliveryStats()
    endpoint = Endpoint("hook", receiver.url, threshold=1, backoff=3600, max_attempts=2)
    deliverer = _deliverer(backend, endpoint, stats)
    try:
        assert not await deliverer.round()
        assert not await deliverer.round()  # backing off: neither record is tried
        assert [json_ids(r.body) for r in receiver.received] == [["1"]]
        record = await queue.read(first)
        assert record is not None and record.pending["hook"].attempts == 1
        record.pending["hook"].next = 0  # the back-off is over
        await queue.save(first, record)
        assert await deliverer.round()  # the second failure: dead letter
        assert await queue.dead_letters("hook") == [first]
        assert stats.endpoints["hook"].dead_lettered == 1
        # the same round went on to the second record, which failed once and now waits
        assert stats.endpoints["hook"].failures == 3
        assert "HTTP 500" in stats.endpoints["hook"].last_error
        (second,) = await queue.oldest(10)
        record = await queue.read(second)
        assert record is not None and record.pending["hook"].attempts == 1
        record.pending["hook"].next = 0
        await queue.save(second, record)
        receiver.status = 200
        assert await deliverer.round()
        assert await queue.oldest(10) == []
        assert [json_ids(r.body) for r in receiver.received] == [["1"], ["1"], ["2"], ["2"]]
        assert stats.endpoints["hook"].delivered == 1
    finally:
        await deliverer.close()


def json_ids(body: bytes) -> list[str]:
    return [e["id"] for e in json.loads(body)["events"]]


async def test_one_deliverer_holds_the_lease_until_released_or_expired() -> None:
    backend = MemoryBackend()
    a, b = Lease(backend, "a", ttl=0.6), Lease(backend, "b", ttl=0.6)
    assert await a.hold()
    assert not await b.hold()
    await a.release()
    assert await b.hold()
    assert not await a.hold()
    await asyncio.sleep(0.8)  # b died without releasing: its lease runs out
    assert await a.hold()


async def test_the_actor_is_the_authenticated_user(
    receiver: WebhookReceiver, tmp_path: Path
) -> None:
    rules = [{"repository": "**", "pull": ["alice"], "push": ["alice"], "delete": ["alice"]}]
    auth = auth_section(tmp_path, {"alice": "wonderland"}, rules)
    endpoint = {"name": "hook", "url": receiver.url}
    settings = Settings(
        auth=auth, notifications={"poll_interval": "100ms", "endpoints": [endpoint]}
    )
    async for _, client in _app_client(settings, MemoryBackend()):
        client.headers.update(basic("alice", "wonderland"))
        await _push_tagged(client)
        await _wait(lambda: len(receiver.events()) >= 3)
    assert {e["actor"]["name"] for e in receiver.events()} == {"alice"}
