"""The deliverer: POSTs queued events to their endpoints, at least once, in order per endpoint.

Every worker and replica runs one; the storage lease (registry.events.queue.Lease) lets one
of them deliver at a time, and another takes over when it stops or dies. Each round lists up
to `BATCH` oldest records; for each endpoint a record still owes, it POSTs the events that
endpoint does not ignore. A 2xx or 3xx answer (as distribution) settles it; anything else
counts a failure: retried at once up to `threshold` failures, then after `backoff` doubling
to `max_backoff`, and after `maxattempts` the record goes to the endpoint's dead letter. An
endpoint waiting to retry holds back its later records (delivery order is kept per endpoint,
and a receiver that is down gets one request per back-off, not one per event).
"""

from __future__ import annotations

import asyncio
import logging
import time

import httpx

from registry.events.config import Endpoint
from registry.events.envelope import MEDIA_TYPE, SIGNATURE_HEADER, envelope, signature
from registry.events.queue import EventQueue, Lease, Record
from registry.events.stats import STATS, DeliveryStats

logger = logging.getLogger("registry.events")

BATCH = 100  # records looked at per round


class Deliverer:
    def __init__(
        self,
        queue: EventQueue,
        lease: Lease,
        endpoints: tuple[Endpoint, ...],
        poll_interval: float,
        client: httpx.AsyncClient | None = None,
        stats: DeliveryStats = STATS,
    ) -> None:
        self.queue = queue
        self.lease = lease
        self.endpoints = {e.name: e for e in endpoints}
        self.poll_interval = poll_interval
        self.client = client or httpx.AsyncClient(follow_redirects=False)
        self.stats = stats
        self.wake = asyncio.Event()  # set by the recorder: something was queued here

    async def run_forever(self) -> None:
        while True:
            try:
                progressed = await self.round()
            except Exception:
                logger.exception("event delivery round failed; will retry")
                progressed = False
            if progressed:
                continue
            self.wake.clear()
            try:
                await asyncio.wait_for(self.wake.wait(), self.poll_interval)
            except TimeoutError:
                pass

    async def round(self) -> bool:
        """One pass over the oldest records; True when something was settled."""
        held = await self.lease.hold()
        self.stats.deliverer = held
        if not held:
            return False
        names = await self.queue.oldest(BATCH)
        self.stats.pending_records = len(names)
        progressed = False
        blocked: set[str] = set()
        for name in names:
            if not await self.lease.hold():  # renewed only when half its time is gone
                self.stats.deliverer = False
                return progressed
            record = await self.queue.read(name)
            if record is None:
                continue
            progressed |= await self._serve(name, record, blocked)
        return progressed

    async def _serve(self, name: str, record: Record, blocked: set[str]) -> bool:
        changed = settled = False
        for endpoint_name in list(record.pending):
            endpoint = self.endpoints.get(endpoint_name)
            state = record.pending[endpoint_name]
            if endpoint is None:  # taken out of the configuration: nobody to deliver to
                del record.pending[endpoint_name]
                changed = True
                continue
            if endpoint_name in blocked or state.next > time.time():
                blocked.add(endpoint_name)
                continue
            events = [e for e in record.events if endpoint.wants(e)]
            error = await self.post(endpoint, record) if events else None
            counters = self.stats.endpoint(endpoint_name)
            changed = True
            if error is None:
                del record.pending[endpoint_name]
                counters.delivered += len(events)
                settled = True
                continue
            state.attempts += 1
            state.last_error = error
            counters.failures += 1
            counters.last_error = error
            if state.attempts >= endpoint.max_attempts:
                await self.queue.dead_letter(endpoint_name, name, record)
                del record.pending[endpoint_name]
                counters.dead_lettered += len(events)
                settled = True
                logger.error(
                    "events %s: gave up on %s after %d attempts (%s); kept in the dead letter",
                    endpoint_name,
                    name,
                    state.attempts,
                    error,
                )
            else:
                state.next = time.time() + endpoint.retry_delay(state.attempts)
                blocked.add(endpoint_name)
                if state.attempts == endpoint.threshold:
                    logger.warning("events %s: %s; backing off", endpoint_name, error)
        if not record.pending:
            await self.queue.done(name)
        elif changed:
            await self.queue.save(name, record)
        return settled

    async def post(self, endpoint: Endpoint, record: Record) -> str | None:
        """POST the record's events this endpoint wants; None on success, else why not."""
        body = envelope([e for e in record.events if endpoint.wants(e)])
        headers = [("Content-Type", MEDIA_TYPE), *endpoint.headers]
        if endpoint.secret:
            headers.append((SIGNATURE_HEADER, signature(endpoint.secret, body)))
        try:
            response = await self.client.post(
                endpoint.url, content=body, headers=headers, timeout=endpoint.timeout
            )
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if 200 <= response.status_code < 400:
            return None
        return f"HTTP {response.status_code}"

    async def close(self) -> None:
        await self.client.aclose()
