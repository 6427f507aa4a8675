"""Server-side measurements: the same HTTP requests, from one httpx client, to each registry
(`--load httpx`; the default lean load generator is `bench.lean_bench`, which shares
`interleaved` below).

Every scenario works in a fresh repository per run, so no run profits from an earlier one.
Large bodies go out as async iterators of 1 MiB pieces with an explicit Content-Length
(one big `bytes` body makes httpcore's send loop quadratic) and come back in 1 MiB pieces.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import resource
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass

import httpx

from bench.data import MIB, Blob
from bench.report import Measurement, MemoryReading, Report
from bench.rss import PeakRSS, tree_cpu
from bench.servers import RunningRegistry, log_tail

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"


class BenchError(RuntimeError):
    """A registry answered something a benchmark step cannot go on from."""


@dataclass(frozen=True)
class ServerPlan:
    blob: Blob
    chunk_size: int
    small: list[tuple[str, bytes]]
    manifests: int
    tag_lists: int
    concurrency: int
    repeat: int
    #: "N concurrent clients each pulling a different blob": N (0: off), and the file the
    #: N blobs are made of (each adds a suffix of its own)
    many_pulls: int = 0
    many_base: Blob | None = None


def _expect(response: httpx.Response, *status: int) -> httpx.Response:
    if response.status_code not in status:
        try:
            body = response.text[:300]
        except httpx.ResponseNotRead:  # a streamed response: the status says enough
            body = "(streamed body not read)"
        raise BenchError(
            f"{response.request.method} {response.request.url.path} -> "
            f"{response.status_code}: {body}"
        )
    return response


async def _file_body(
    blob: Blob, offset: int = 0, length: int | None = None
) -> AsyncIterator[bytes]:
    """Stream part of the blob's file in 1 MiB pieces (it sits in the page cache)."""
    left = blob.size - offset if length is None else length
    with blob.path.open("rb") as f:
        f.seek(offset)
        while left > 0:
            piece = f.read(min(MIB, left))
            if not piece:
                raise BenchError(f"{blob.path} is shorter than expected")
            left -= len(piece)
            yield piece


def _with_digest(location: str, digest: str) -> httpx.URL:
    # `params=` would replace the Location's own query (the reference registry keeps its
    # upload state there); merge instead.
    return httpx.URL(location).copy_merge_params({"digest": digest})


async def _start_upload(client: httpx.AsyncClient, repo: str) -> str:
    response = _expect(await client.post(f"/v2/{repo}/blobs/uploads/"), 202)
    return response.headers["location"]


async def push_monolithic(client: httpx.AsyncClient, repo: str, blob: Blob) -> None:
    """POST, then one PUT ?digest= carrying the whole blob."""
    location = await _start_upload(client, repo)
    _expect(
        await client.put(
            _with_digest(location, blob.digest),
            content=_file_body(blob),
            headers={"Content-Length": str(blob.size), "Content-Type": "application/octet-stream"},
        ),
        201,
    )


async def push_chunked(client: httpx.AsyncClient, repo: str, blob: Blob, chunk: int) -> None:
    """POST, PATCH with Content-Range per chunk, then PUT ?digest= without a body."""
    location = await _start_upload(client, repo)
    offset = 0
    while offset < blob.size:
        n = min(chunk, blob.size - offset)
        response = _expect(
            await client.patch(
                location,
                content=_file_body(blob, offset, n),
                headers={
                    "Content-Length": str(n),
                    "Content-Range": f"{offset}-{offset + n - 1}",
                    "Content-Type": "application/octet-stream",
                },
            ),
            202,
        )
        location = response.headers["location"]
        offset += n
    _expect(await client.put(_with_digest(location, blob.digest)), 201)


async def pull_blob(client: httpx.AsyncClient, repo: str, digest: str, size: int) -> None:
    received = 0
    async with client.stream("GET", f"/v2/{repo}/blobs/{digest}") as response:
        _expect(response, 200)
        async for piece in response.aiter_raw(MIB):
            received += len(piece)
    if received != size:
        raise BenchError(f"pulled {received} bytes of {digest}, expected {size}")


@dataclass(frozen=True)
class Distinct:
    """One of many distinct blobs made from one file: its bytes plus a unique suffix."""

    base: Blob
    suffix: bytes
    digest: str

    @property
    def size(self) -> int:
        return self.base.size + len(self.suffix)


def distinct_blobs(base: Blob, count: int) -> list[Distinct]:
    """`count` different blobs (different digests) without writing `count` files."""
    sha = hashlib.sha256()
    with base.path.open("rb") as f:
        while piece := f.read(MIB):
            sha.update(piece)
    blobs = []
    for i in range(count):
        suffix = f"distinct blob {i:08d}\n".encode()
        h = sha.copy()
        h.update(suffix)
        blobs.append(Distinct(base, suffix, f"sha256:{h.hexdigest()}"))
    return blobs


async def _distinct_body(blob: Distinct) -> AsyncIterator[bytes]:
    async for piece in _file_body(blob.base):
        yield piece
    yield blob.suffix


async def push_distinct(client: httpx.AsyncClient, repo: str, blob: Distinct) -> None:
    location = await _start_upload(client, repo)
    _expect(
        await client.put(
            _with_digest(location, blob.digest),
            content=_distinct_body(blob),
            headers={"Content-Length": str(blob.size), "Content-Type": "application/octet-stream"},
        ),
        201,
    )


async def _bounded(limit: int, jobs: Sequence[Callable[[], Awaitable[None]]]) -> None:
    semaphore = asyncio.Semaphore(limit)

    async def one(job: Callable[[], Awaitable[None]]) -> None:
        async with semaphore:
            await job()

    try:
        async with asyncio.TaskGroup() as group:
            for job in jobs:
                group.create_task(one(job))
    except ExceptionGroup as group_error:
        # Report the first failure as the run's failure (the rest are usually alike).
        first: BaseException = group_error
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        if isinstance(first, BenchError | httpx.HTTPError):
            raise first from group_error
        raise


async def push_small(client: httpx.AsyncClient, repo: str, digest: str, data: bytes) -> None:
    location = await _start_upload(client, repo)
    _expect(
        await client.put(
            _with_digest(location, digest),
            content=data,
            headers={"Content-Type": "application/octet-stream"},
        ),
        201,
    )


async def pull_small(client: httpx.AsyncClient, repo: str, digest: str, size: int) -> None:
    response = _expect(await client.get(f"/v2/{repo}/blobs/{digest}"), 200)
    if len(response.content) != size:
        raise BenchError(f"short read of {digest}")


def _manifest(config: tuple[str, bytes], layer: tuple[str, bytes], n: int) -> bytes:
    """A distinct manifest per `n` (an annotation), all sharing one config and one layer."""
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config[0], "size": len(config[1])},
            "layers": [{"mediaType": OCI_LAYER, "digest": layer[0], "size": len(layer[1])}],
            "annotations": {"bench.n": str(n)},
        }
    ).encode()


Run = Callable[[httpx.AsyncClient, int], Awaitable[None]]


@dataclass(frozen=True)
class ClientCost:
    """What a run cost the load generator: wall time and its own CPU (user+system)."""

    seconds: float
    cpu: float


#: one run of a scenario on a registry; returns its cost when the load generator measured it
#: itself (a worker process), None to have it measured here (wall time, and this process's CPU)
RegistryRun = Callable[[RunningRegistry, int], Awaitable[ClientCost | None]]


def own_cpu() -> float:
    """This process's user+system CPU, all threads (the in-process httpx client's cost)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def interleaved(
    registries: Sequence[RunningRegistry],
    repeat: int,
    report: Report,
    scenario: str,
    run: RegistryRun,
    bytes_: int = 0,
    ops: int = 0,
    errors: tuple[type[BaseException], ...] = (BenchError,),
) -> None:
    """Run `scenario` `repeat` times on each registry, alternating registries run by run,
    so that a change in the machine's load hits both alike. Also records the server's CPU
    time per run, which other load on the machine barely disturbs, and the load generator's."""
    seconds: dict[str, list[float]] = {r.name: [] for r in registries}
    cpu: dict[str, list[float]] = {r.name: [] for r in registries}
    client_cpu: dict[str, list[float]] = {r.name: [] for r in registries}
    failed: set[str] = set()
    for i in range(repeat):
        for registry in registries:
            if registry.name in failed:
                continue
            # a real suspension point: the lean runs never suspend, and Ctrl-C (asyncio.run
            # cancels the main task) is only delivered at one
            await asyncio.sleep(0)
            cpu_before = tree_cpu(registry.pid)
            own_before = own_cpu()
            start = time.perf_counter()
            try:
                cost = await run(registry, i)
            except errors as exc:
                failed.add(registry.name)
                # The server's own account of the failure, before its temp dir goes away.
                report.skip(
                    f"{scenario} on {registry.name}: {exc!r}\n"
                    f"    {registry.name} log tail:\n{log_tail(registry.log_path, 40)}"
                )
                continue
            if cost is None:
                cost = ClientCost(time.perf_counter() - start, own_cpu() - own_before)
            seconds[registry.name].append(cost.seconds)
            cpu[registry.name].append(tree_cpu(registry.pid) - cpu_before)
            client_cpu[registry.name].append(cost.cpu)
    for registry in registries:
        if registry.name in failed:
            continue
        m = Measurement(
            "server", scenario, registry.name, seconds[registry.name], bytes=bytes_, ops=ops,
            cpu=cpu[registry.name], client_cpu=client_cpu[registry.name],
        )  # fmt: skip
        report.add(m)
        print(
            f"  {registry.name:<10} {scenario:<38} {m.median:8.3f} s {m.rate()}"
            f"  (server CPU {m.cpu_median:.3f} s, load generator {m.client_cpu_median:.3f} s)",
            flush=True,
        )


async def run_server_bench(
    registries: Sequence[RunningRegistry], plan: ServerPlan, report: Report
) -> None:
    """Every server-side scenario against every registry; results land in `report`."""
    # Idle connections expire well before uvicorn's 5 s keep-alive timeout: interleaving leaves
    # one registry's connections idle while the other runs, and a request sent just as the
    # server closes an idle connection fails ("Server disconnected without sending a response").
    limits = httpx.Limits(
        max_connections=plan.concurrency,
        max_keepalive_connections=plan.concurrency,
        keepalive_expiry=2.0,
    )
    timeout = httpx.Timeout(300.0, connect=10.0)
    async with contextlib.AsyncExitStack() as stack:
        clients = {
            r.name: await stack.enter_async_context(
                httpx.AsyncClient(base_url=r.url, limits=limits, timeout=timeout)
            )
            for r in registries
        }

        async def measure(scenario: str, run: Run, bytes_: int = 0, ops: int = 0) -> None:
            async def on(registry: RunningRegistry, i: int) -> None:
                await run(clients[registry.name], i)

            await interleaved(
                registries, plan.repeat, report, scenario, on, bytes_, ops,
                (BenchError, httpx.HTTPError),
            )  # fmt: skip

        blob = plan.blob
        size_label = f"{blob.size // MIB} MiB"
        with contextlib.ExitStack() as samplers:
            peaks = {r.name: samplers.enter_context(PeakRSS(r.pid)) for r in registries}
            await measure(
                f"blob push monolithic {size_label}",
                lambda c, i: push_monolithic(c, f"bench/mono-{i}", blob),
                blob.size,
            )
            await measure(
                f"blob push chunked {size_label} ({plan.chunk_size // MIB} MiB)",
                lambda c, i: push_chunked(c, f"bench/chunked-{i}", blob, plan.chunk_size),
                blob.size,
            )
            await measure(
                f"blob pull {size_label}",
                lambda c, i: pull_blob(c, f"bench/mono-{i}", blob.digest, blob.size),
                blob.size,
            )
        for name, rss in peaks.items():
            report.memory.append(
                MemoryReading(name, rss.start / MIB, rss.peak / MIB, f"{size_label} blob push/pull")
            )

        if plan.many_pulls and plan.many_base is not None:
            await _many_pulls(registries, plan, report, measure, limits, timeout)

        small = plan.small
        small_bytes = sum(len(d) for _, d in small)
        label = f"{len(small)} x {len(small[0][1]) // 1024} KiB"

        async def push_smalls(client: httpx.AsyncClient, i: int) -> None:
            repo = f"bench/small-{i}"
            jobs = [functools.partial(push_small, client, repo, d, b) for d, b in small]
            await _bounded(plan.concurrency, jobs)

        async def pull_smalls(client: httpx.AsyncClient, i: int) -> None:
            repo = f"bench/small-{i}"
            jobs = [functools.partial(pull_small, client, repo, d, len(b)) for d, b in small]
            await _bounded(plan.concurrency, jobs)

        await measure(f"small blobs push {label}", push_smalls, small_bytes)
        await measure(f"small blobs pull {label}", pull_smalls, small_bytes)

        config, layer = small[0], small[1]

        async def push_manifests(client: httpx.AsyncClient, i: int) -> None:
            repo = f"bench/manifests-{i}"
            # timed too, but two small blobs are little next to N manifests
            await push_small(client, repo, *config)
            await push_small(client, repo, *layer)
            jobs = [
                functools.partial(
                    _put_manifest, client, repo, f"t{n:05d}", _manifest(config, layer, n)
                )
                for n in range(plan.manifests)
            ]
            await _bounded(plan.concurrency, jobs)

        async def pull_manifests(client: httpx.AsyncClient, i: int) -> None:
            repo = f"bench/manifests-{i}"
            jobs = [
                functools.partial(_get_manifest, client, repo, f"t{n:05d}")
                for n in range(plan.manifests)
            ]
            await _bounded(plan.concurrency, jobs)

        async def list_tags(client: httpx.AsyncClient, i: int) -> None:
            repo = f"bench/manifests-{i}"
            job = functools.partial(_list_tags, client, repo, plan.manifests)
            await _bounded(plan.concurrency, [job] * plan.tag_lists)

        await measure(f"manifest push x{plan.manifests}", push_manifests, ops=plan.manifests)
        await measure(f"manifest pull x{plan.manifests}", pull_manifests, ops=plan.manifests)
        await measure(
            f"tags list x{plan.tag_lists} ({plan.manifests} tags)", list_tags, ops=plan.tag_lists
        )


async def _put_manifest(client: httpx.AsyncClient, repo: str, tag: str, body: bytes) -> None:
    _expect(
        await client.put(
            f"/v2/{repo}/manifests/{tag}", content=body, headers={"Content-Type": OCI_MANIFEST}
        ),
        201,
    )


async def _get_manifest(client: httpx.AsyncClient, repo: str, tag: str) -> None:
    _expect(await client.get(f"/v2/{repo}/manifests/{tag}", headers={"Accept": OCI_MANIFEST}), 200)


async def _list_tags(client: httpx.AsyncClient, repo: str, expected: int) -> None:
    response = _expect(await client.get(f"/v2/{repo}/tags/list", params={"n": 10000}), 200)
    tags = response.json().get("tags") or []
    if len(tags) != expected:
        raise BenchError(f"tags/list of {repo}: {len(tags)} tags, expected {expected}")


async def _many_pulls(
    registries: Sequence[RunningRegistry],
    plan: ServerPlan,
    report: Report,
    measure: Callable[[str, Run, int, int], Awaitable[None]],
    limits: httpx.Limits,
    timeout: httpx.Timeout,
) -> None:
    """N clients at once, each pulling a different blob (cold for the server's caches):
    aggregate throughput, server CPU and the peak of the server's memory."""
    assert plan.many_base is not None
    many = distinct_blobs(plan.many_base, plan.many_pulls)
    repo = "bench/many"
    print(f"  pushing {len(many)} distinct blobs to each registry (untimed)", flush=True)
    async with contextlib.AsyncExitStack() as stack:
        for registry in registries:
            client = await stack.enter_async_context(
                httpx.AsyncClient(base_url=registry.url, limits=limits, timeout=timeout)
            )
            jobs = [functools.partial(push_distinct, client, repo, b) for b in many]
            await _bounded(plan.concurrency, jobs)
    wide = httpx.Limits(
        max_connections=plan.many_pulls,
        max_keepalive_connections=plan.many_pulls,
        keepalive_expiry=2.0,
    )
    async with contextlib.AsyncExitStack() as stack:
        wide_clients = {
            r.name: await stack.enter_async_context(
                httpx.AsyncClient(base_url=r.url, limits=wide, timeout=timeout)
            )
            for r in registries
        }

        async def pull_many(client: httpx.AsyncClient, i: int) -> None:
            # the measured client is the wide one of the same registry
            own = next(c for n, c in wide_clients.items() if c.base_url == client.base_url)
            jobs = [functools.partial(pull_blob, own, repo, b.digest, b.size) for b in many]
            await _bounded(plan.many_pulls, jobs)

        with contextlib.ExitStack() as samplers:
            peaks = {r.name: samplers.enter_context(PeakRSS(r.pid)) for r in registries}
            label = f"{len(many)} clients pull {plan.many_base.size // MIB} MiB each"
            await measure(label, pull_many, sum(b.size for b in many), len(many))
        for name, rss in peaks.items():
            report.memory.append(MemoryReading(name, rss.start / MIB, rss.peak / MIB, label))
