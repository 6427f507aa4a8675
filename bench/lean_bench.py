"""Server-side scenarios driven by the lean load generator (`--load lean`, the default).

The same requests as `bench.http_bench` (POST + closing PUT ?digest= for monolithic and small
blobs; POST, PATCHes with Content-Range, PUT for chunked; GETs for pulls; distinct manifests
under distinct tags; tags lists; the N-client pull), written out as request sequences and sent
by one worker process (`bench.lean`) over blocking keep-alive sockets. The worker reports its
own wall time and CPU per run, so the report shows what the load itself cost next to the
server's CPU. Small bodies (small blobs, manifests) are written once to files in the data
directory so a job only names byte ranges.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from bench.data import MIB, Blob
from bench.http_bench import (
    OCI_MANIFEST,
    BenchError,
    ClientCost,
    ServerPlan,
    _manifest,
    distinct_blobs,
    interleaved,
)
from bench.report import MemoryReading, Report
from bench.rss import PeakRSS
from bench.servers import RunningRegistry

ROOT = Path(__file__).resolve().parents[1]
OCTET = {"Content-Type": "application/octet-stream"}
#: per-connection receive buffer; smaller when there are many connections
BUFFER = MIB
WIDE_BUFFER = 256 * 1024

OpSpec = dict[str, Any]


class LeanLoad:
    """The worker process (`python -m bench.lean`): send it a job, get its cost back."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.lean"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=ROOT,
            text=True,
        )

    def run(self, host: str, sequences: Sequence[Sequence[OpSpec]], concurrency: int) -> ClientCost:
        assert self.process.stdin is not None and self.process.stdout is not None
        job = {
            "host": host,
            "concurrency": concurrency,
            "buffer": BUFFER if concurrency <= 16 else WIDE_BUFFER,
            "sequences": sequences,
        }
        try:
            self.process.stdin.write(json.dumps(job) + "\n")
            self.process.stdin.flush()
        except BrokenPipeError as exc:
            raise BenchError(f"the load generator exited ({self.process.poll()})") from exc
        line = self.process.stdout.readline()
        if not line:
            raise BenchError(f"the load generator exited ({self.process.wait(10)})")
        answer = json.loads(line)
        if "error" in answer:
            raise BenchError(answer["error"])
        return ClientCost(answer["seconds"], answer["cpu"])

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


@contextlib.contextmanager
def lean_load() -> Iterator[LeanLoad]:
    load = LeanLoad()
    try:
        yield load
    finally:
        load.close()


# -- request sequences ---------------------------------------------------------------------


def post(repo: str) -> OpSpec:
    return {"method": "POST", "path": f"/v2/{repo}/blobs/uploads/", "expect": [202]}


def closing_put(digest: str, body: list[Any] | None = None) -> OpSpec:
    """PUT ?digest= to the Location of the previous answer, with or without a body."""
    op: OpSpec = {"method": "PUT", "path": None, "digest": digest, "expect": [201]}
    if body is not None:
        op["body"] = body
        op["headers"] = OCTET
    return op


def push_monolithic(repo: str, blob: Blob, suffix: str = "") -> list[OpSpec]:
    return [post(repo), closing_put(blob.digest, [str(blob.path), 0, blob.size, suffix])]


def push_chunked(repo: str, blob: Blob, chunk: int) -> list[OpSpec]:
    ops = [post(repo)]
    for offset in range(0, blob.size, chunk):
        n = min(chunk, blob.size - offset)
        ops.append(
            {
                "method": "PATCH",
                "path": None,
                "body": [str(blob.path), offset, n, ""],
                "range": True,
                "headers": OCTET,
                "expect": [202],
            }
        )
    ops.append(closing_put(blob.digest))
    return ops


def pull_blob(repo: str, digest: str, size: int) -> OpSpec:
    return {"method": "GET", "path": f"/v2/{repo}/blobs/{digest}", "expect": [200], "size": size}


def head_blob(repo: str, digest: str) -> OpSpec:
    return {"method": "HEAD", "path": f"/v2/{repo}/blobs/{digest}", "expect": [200]}


def put_manifest(repo: str, tag: str, body: list[Any]) -> OpSpec:
    path = f"/v2/{repo}/manifests/{tag}"
    headers = {"Content-Type": OCI_MANIFEST}
    return {"method": "PUT", "path": path, "body": body, "headers": headers, "expect": [201]}


def get_manifest(repo: str, tag: str) -> OpSpec:
    headers = {"Accept": OCI_MANIFEST}
    path = f"/v2/{repo}/manifests/{tag}"
    return {"method": "GET", "path": path, "headers": headers, "expect": [200]}


def list_tags(repo: str, expected: int) -> OpSpec:
    path = f"/v2/{repo}/tags/list?n=10000"
    return {"method": "GET", "path": path, "expect": [200], "tags": expected}


def write_bodies(path: Path, bodies: Sequence[bytes]) -> list[list[Any]]:
    """Concatenate `bodies` into `path`: the body spec (file, offset, length, suffix) of each."""
    specs: list[list[Any]] = []
    offset = 0
    with path.open("wb") as f:
        for body in bodies:
            f.write(body)
            specs.append([str(path), offset, len(body), ""])
            offset += len(body)
    return specs


# -- the scenarios -------------------------------------------------------------------------


async def run_lean_server_bench(
    registries: Sequence[RunningRegistry], plan: ServerPlan, report: Report
) -> None:
    """Every server-side scenario against every registry, sent by the lean generator."""
    with lean_load() as load:
        await _scenarios(load, registries, plan, report)


async def _scenarios(
    load: LeanLoad, registries: Sequence[RunningRegistry], plan: ServerPlan, report: Report
) -> None:
    def measure(scenario: str, build: Any, concurrency: int, bytes_: int = 0, ops: int = 0) -> Any:
        """`build(i)`: the sequences of run i (built before the clock starts)."""

        async def run(registry: RunningRegistry, i: int) -> ClientCost:
            return load.run(registry.host, build(i), concurrency)

        return interleaved(registries, plan.repeat, report, scenario, run, bytes_, ops)

    blob = plan.blob
    size_label = f"{blob.size // MIB} MiB"
    with contextlib.ExitStack() as samplers:
        peaks = {r.name: samplers.enter_context(PeakRSS(r.pid)) for r in registries}
        await measure(
            f"blob push monolithic {size_label}",
            lambda i: [push_monolithic(f"bench/mono-{i}", blob)],
            1,
            blob.size,
        )
        await measure(
            f"blob push chunked {size_label} ({plan.chunk_size // MIB} MiB)",
            lambda i: [push_chunked(f"bench/chunked-{i}", blob, plan.chunk_size)],
            1,
            blob.size,
        )
        await measure(
            f"blob pull {size_label}",
            lambda i: [[pull_blob(f"bench/mono-{i}", blob.digest, blob.size)]],
            1,
            blob.size,
        )
    for name, rss in peaks.items():
        report.memory.append(
            MemoryReading(name, rss.start / MIB, rss.peak / MIB, f"{size_label} blob push/pull")
        )

    if plan.many_pulls and plan.many_base is not None:
        await _many_pulls(load, registries, plan, report)

    small = plan.small
    small_bytes = sum(len(d) for _, d in small)
    label = f"{len(small)} x {len(small[0][1]) // 1024} KiB"
    workdir = blob.path.parent
    small_specs = write_bodies(workdir / "lean-small.bin", [d for _, d in small])
    digests = [digest for digest, _ in small]
    c = plan.concurrency
    await measure(
        f"small blobs push {label}",
        lambda i: [
            [post(f"bench/small-{i}"), closing_put(d, spec)]
            for d, spec in zip(digests, small_specs, strict=True)
        ],
        c,
        small_bytes,
    )
    await measure(
        f"small blobs pull {label}",
        lambda i: [[pull_blob(f"bench/small-{i}", d, len(b))] for d, b in small],
        c,
        small_bytes,
    )
    await measure(
        f"blob HEAD x{len(small)}",
        lambda i: [[head_blob(f"bench/small-{i}", d)] for d, _ in small],
        c,
        ops=len(small),
    )

    config, layer = small[0], small[1]
    manifests = write_bodies(
        workdir / "lean-manifests.bin",
        [_manifest(config, layer, n) for n in range(plan.manifests)],
    )

    def push_manifests(i: int) -> list[list[OpSpec]]:
        repo = f"bench/manifests-{i}"
        # Config and layer first, then the manifests: one sequence on one connection, as
        # the httpx path awaits the two blobs before the manifests; the manifests go out
        # `concurrency` at a time through the other connections.
        blobs = [
            post(repo),
            closing_put(config[0], small_specs[0]),
            post(repo),
            closing_put(layer[0], small_specs[1]),
        ]
        return [blobs] + [
            [put_manifest(repo, f"t{n:05d}", manifests[n])] for n in range(plan.manifests)
        ]

    await _measure_manifest_push(load, registries, plan, report, push_manifests)
    await measure(
        f"manifest pull x{plan.manifests}",
        lambda i: [
            [get_manifest(f"bench/manifests-{i}", f"t{n:05d}")] for n in range(plan.manifests)
        ],
        c,
        ops=plan.manifests,
    )
    await measure(
        f"tags list x{plan.tag_lists} ({plan.manifests} tags)",
        lambda i: [[list_tags(f"bench/manifests-{i}", plan.manifests)]] * plan.tag_lists,
        c,
        ops=plan.tag_lists,
    )


async def _measure_manifest_push(
    load: LeanLoad,
    registries: Sequence[RunningRegistry],
    plan: ServerPlan,
    report: Report,
    build: Any,
) -> None:
    """The two blobs must exist before any manifest refers to them: send them as a job of
    their own, then the manifests, and count both in the run (as the httpx path does)."""

    async def run(registry: RunningRegistry, i: int) -> ClientCost:
        first, *rest = build(i)
        blobs = load.run(registry.host, [first], 1)
        puts = load.run(registry.host, rest, plan.concurrency)
        return ClientCost(blobs.seconds + puts.seconds, blobs.cpu + puts.cpu)

    scenario = f"manifest push x{plan.manifests}"
    await interleaved(registries, plan.repeat, report, scenario, run, ops=plan.manifests)


async def _many_pulls(
    load: LeanLoad, registries: Sequence[RunningRegistry], plan: ServerPlan, report: Report
) -> None:
    """N clients at once, each pulling a different blob (cold for the server's caches):
    aggregate throughput, server CPU and the peak of the server's memory."""
    base = plan.many_base
    assert base is not None
    many = distinct_blobs(base, plan.many_pulls)
    repo = "bench/many"
    print(f"  pushing {len(many)} distinct blobs to each registry (untimed)", flush=True)
    pushes = [
        push_monolithic(repo, Blob(base.path, base.size, b.digest), b.suffix.decode("latin-1"))
        for b in many
    ]
    for registry in registries:
        try:
            load.run(registry.host, pushes, plan.concurrency)
        except BenchError as exc:
            report.skip(f"pushing the many-pulls blobs to {registry.name}: {exc}")
            return
    pulls = [[pull_blob(repo, b.digest, b.size)] for b in many]
    label = f"{len(many)} clients pull {base.size // MIB} MiB each"

    async def run(registry: RunningRegistry, i: int) -> ClientCost:
        return load.run(registry.host, pulls, len(pulls))

    with contextlib.ExitStack() as samplers:
        peaks = {r.name: samplers.enter_context(PeakRSS(r.pid)) for r in registries}
        await interleaved(
            registries, plan.repeat, report, label, run, sum(b.size for b in many), len(many)
        )
    for name, rss in peaks.items():
        report.memory.append(MemoryReading(name, rss.start / MIB, rss.peak / MIB, label))
