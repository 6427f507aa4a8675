"""Listing at scale: a tags list of N tags and a catalog of N repositories, read in pages of
100 (following `Link` headers, as clients do). On a real S3 the S3 requests each page costs
are counted at the gateway: the point is that a page costs O(page), not O(N) (distribution
walks the bucket for its catalog, distribution#947).

Filling is untimed: one manifest per tag (distinct annotations) in one repository, and one
manifest per repository (its two blobs mounted from the first repository).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence

import httpx

from bench.http_bench import (
    BenchError,
    _bounded,
    _expect,
    _manifest,
    _put_manifest,
    push_small,
)
from bench.report import Measurement, Report
from bench.rss import tree_cpu
from bench.servers import RunningRegistry

PAGE = 100


async def _mount(client: httpx.AsyncClient, repo: str, digest: str, source: str) -> None:
    response = await client.post(
        f"/v2/{repo}/blobs/uploads/", params={"mount": digest, "from": source}
    )
    _expect(response, 201)


async def fill(
    client: httpx.AsyncClient, count: int, small: list[tuple[str, bytes]], concurrency: int
) -> None:
    config, layer = small[0], small[1]
    source = "listing/tags"
    await push_small(client, source, *config)
    await push_small(client, source, *layer)
    tag_jobs = [
        functools.partial(_put_manifest, client, source, f"t{n:06d}", _manifest(config, layer, n))
        for n in range(count)
    ]
    await _bounded(concurrency, tag_jobs)

    async def one_repository(n: int) -> None:
        repo = f"listing/repos/r{n:06d}"
        await _mount(client, repo, config[0], source)
        await _mount(client, repo, layer[0], source)
        await _put_manifest(client, repo, "v1", _manifest(config, layer, n))

    await _bounded(concurrency, [functools.partial(one_repository, n) for n in range(count)])


async def _pages(client: httpx.AsyncClient, url: str, key: str) -> list[int]:
    """Follow `Link: <...>; rel="next"` from `url`; the number of entries on each page."""
    sizes = []
    next_url: str | None = url
    while next_url:
        response = _expect(await client.get(next_url), 200)
        sizes.append(len(response.json().get(key) or []))
        link = response.headers.get("link", "")
        next_url = link.split(";")[0].strip().strip("<>") if 'rel="next"' in link else None
    return sizes


async def measure_listing(
    registries: Sequence[RunningRegistry],
    clients: dict[str, httpx.AsyncClient],
    count: int,
    s3_requests: Callable[[], int | None],
    report: Report,
) -> None:
    """Page through both lists on each registry (sequentially, so the gateway's request
    counter sees one registry at a time)."""
    cases = [
        (f"tags list {count} tags, pages of {PAGE}", f"/v2/listing/tags/tags/list?n={PAGE}",
         "tags", count),
        (f"catalog {count}+ repos, pages of {PAGE}", f"/v2/_catalog?n={PAGE}", "repositories",
         count + 1),
    ]  # fmt: skip
    for scenario, url, key, expected in cases:
        for registry in registries:
            client = clients[registry.name]
            before_requests = s3_requests()
            cpu_before = tree_cpu(registry.pid)
            start = time.perf_counter()
            sizes = await _pages(client, url, key)
            seconds = time.perf_counter() - start
            cpu = tree_cpu(registry.pid) - cpu_before
            after_requests = s3_requests()
            if sum(sizes) < expected:
                raise BenchError(f"{scenario} on {registry.name}: {sum(sizes)} entries")
            per_page = None
            if before_requests is not None and after_requests is not None:
                per_page = (after_requests - before_requests) / len(sizes)
            m = Measurement(
                "server", scenario, registry.name, [seconds], ops=len(sizes), cpu=[cpu],
                storage_requests=per_page,
            )  # fmt: skip
            report.add(m)
            extra = f", {per_page:.1f} S3 requests per page" if per_page is not None else ""
            print(
                f"  {registry.name:<12} {scenario:<38} {len(sizes)} pages in {seconds:.2f} s"
                f"{extra}",
                flush=True,
            )
