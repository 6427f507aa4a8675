"""`python -m bench`: parse options, generate data, start the registries, run, report."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from bench import data
from bench.backends import STORAGES, StorageSetup, storage_setup
from bench.client_bench import ClientPlan, run_client_bench
from bench.http_bench import BenchError, ServerPlan, run_server_bench
from bench.lean_bench import run_lean_server_bench
from bench.listing import fill, measure_listing
from bench.proxy_bench import run_proxy_bench
from bench.report import Report
from bench.servers import PeerUnavailable, RunningRegistry, start_reference

MIB = data.MIB
RESULTS = Path(__file__).resolve().parent / "results"
REGISTRIES = ("pyreg", "reference")
#: may be named in --registries too: pyreg with a redis-server for its shared state and cache
EXTRA_REGISTRIES = ("pyreg+redis",)
CLIENTS = ("pyreg-client", "skopeo", "podman")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Side-by-side benchmark: pyreg's registry vs the reference registry "
        "(docker-registry), and pyreg's client vs skopeo and podman. Loopback only.",
    )
    p.add_argument("--size", type=int, default=256, metavar="MIB", help="large blob (256)")
    p.add_argument("--chunk", type=int, default=16, metavar="MIB", help="PATCH size (16)")
    p.add_argument("--small-count", type=int, default=200, metavar="N", help="small blobs (200)")
    p.add_argument("--small-size", type=int, default=64, metavar="KIB", help="their size (64)")
    p.add_argument("--manifests", type=int, default=100, metavar="N", help="manifests (100)")
    p.add_argument("--tag-lists", type=int, default=200, metavar="N", help="tags/list calls")
    p.add_argument(
        "--many-pulls",
        type=int,
        default=100,
        metavar="N",
        help="N concurrent clients each pulling a different blob (100; 0: off)",
    )
    p.add_argument(
        "--many-size", type=int, default=16, metavar="MIB", help="their blobs' size (16)"
    )
    p.add_argument(
        "--image-size", type=int, default=150, metavar="MB", help="image content, MB (150)"
    )
    p.add_argument("--layers", type=int, default=3, metavar="N", help="image layers (3)")
    p.add_argument("--repeat", type=int, default=3, metavar="N", help="runs; median (3)")
    p.add_argument("--concurrency", type=int, default=8, metavar="N", help="requests (8)")
    p.add_argument(
        "--only", choices=("all", "server", "client", "proxy"), default="all", help="which part"
    )
    p.add_argument(
        "--load",
        choices=("lean", "httpx"),
        default="lean",
        help="server scenarios' load generator: a worker process on blocking sockets (lean, "
        "cheap on CPU) or the in-process httpx client of earlier results (httpx)",
    )
    p.add_argument(
        "--registries",
        default=",".join(REGISTRIES),
        help="comma-separated subset of pyreg,reference",
    )
    p.add_argument(
        "--clients",
        default=",".join(CLIENTS),
        help="comma-separated subset of pyreg-client,skopeo,podman",
    )
    p.add_argument(
        "--client-registries",
        default=None,
        metavar="NAMES",
        help="registries the clients run against (default: all of --registries)",
    )
    p.add_argument(
        "--pyreg-arg",
        action="append",
        default=None,
        metavar="ARG",
        help="extra `pyreg serve` argument (repeatable; default: --log-level warning)",
    )
    p.add_argument(
        "--max-traffic",
        type=float,
        default=40.0,
        metavar="GIB",
        help="refuse plans that would move more than this over loopback (40)",
    )
    p.add_argument(
        "--storage",
        choices=STORAGES,
        default="filesystem",
        help="where the registries store: a temp dir each, or buckets on a throwaway Ceph "
        "RGW on loopback (real S3; the reference registry on its s3 driver)",
    )
    p.add_argument(
        "--listing",
        type=int,
        default=0,
        metavar="N",
        help="also page through a tags list of N tags and a catalog of N repositories "
        "(pages of 100; with --storage rgw, S3 requests per page); 0: off",
    )
    p.add_argument("--workdir", type=Path, default=None, help="temp data here (default: /tmp)")
    p.add_argument("--results", type=Path, default=RESULTS, help="JSON output directory")
    return p


def _names(text: str) -> list[str]:
    return [n.strip() for n in text.split(",") if n.strip()]


def planned_traffic(args: argparse.Namespace, registries: int) -> int:
    """Bytes over loopback, roughly: what the bench promises to stay under."""
    server = 0
    if args.only in ("all", "server"):
        server = 3 * args.size * MIB + 2 * args.small_count * args.small_size * 1024
        server += 2 * args.many_pulls * args.many_size * MIB  # pushed once, pulled per run
    client = 0
    if args.only in ("all", "client"):
        client = (1 + 2 * 3) * args.image_size * 1_000_000  # seed + 3 clients, push/pull
    proxy = 0
    if args.only in ("all", "proxy"):
        proxy = 6 * args.image_size * 1_000_000  # seed, local copy, four pulls (one via two hops)
    total: int = registries * args.repeat * (server + client) + args.repeat * proxy
    return total


def _check(args: argparse.Namespace) -> list[str]:
    problems = []
    for name in ("size", "chunk", "small_count", "small_size", "image_size", "layers", "repeat"):
        if getattr(args, name) < 1:
            problems.append(f"--{name.replace('_', '-')} must be at least 1")
    if args.small_count < 2:
        problems.append("--small-count must be at least 2 (manifests use two of them)")
    if args.many_pulls < 0 or args.many_size < 1:
        problems.append("--many-pulls must not be negative, --many-size at least 1")
    for name in ("manifests", "tag_lists", "concurrency"):
        if getattr(args, name) < 1:
            problems.append(f"--{name.replace('_', '-')} must be at least 1")
    unknown = set(_names(args.registries)) - set(REGISTRIES) - set(EXTRA_REGISTRIES)
    if args.client_registries is not None:
        unknown |= set(_names(args.client_registries)) - set(_names(args.registries))
    if unknown:
        problems.append(f"unknown registries (or not in --registries): {sorted(unknown)}")
    unknown_clients = set(_names(args.clients)) - set(CLIENTS)
    if unknown_clients:
        problems.append(f"unknown clients: {sorted(unknown_clients)}")
    return problems


@contextlib.contextmanager
def _registries(
    names: list[str], setup: StorageSetup, pyreg_args: list[str], report: Report
) -> Iterator[list[RunningRegistry]]:
    running: list[RunningRegistry] = []
    try:
        for name in names:
            try:
                running.append(setup.start(name, pyreg_args))
                print(f"started {name} on {running[-1].host} ({setup.kind})", flush=True)
            except PeerUnavailable as exc:
                report.skip(f"registry {name}: {exc}")
        yield running
    finally:
        for registry in running:
            registry.stop()


def run(args: argparse.Namespace) -> Report:
    names = _names(args.registries)
    pyreg_args = args.pyreg_arg if args.pyreg_arg is not None else ["--log-level", "warning"]
    options = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    report = Report(options={**options, "pyreg_arg": pyreg_args})
    with tempfile.TemporaryDirectory(prefix="pyreg-bench-", dir=args.workdir) as tmp:
        workdir = Path(tmp)
        started = time.perf_counter()
        blob = small = image = many_base = None
        if args.only in ("all", "server"):
            blob = data.large_blob(workdir, args.size * MIB)
            if args.many_pulls:
                many_base = data.large_blob(workdir, args.many_size * MIB, seed=4)
            small = data.small_blobs(args.small_count, args.small_size * 1024)
        if args.only in ("all", "client", "proxy"):
            image = data.oci_image(workdir, args.image_size * 1_000_000, args.layers)
        print(f"generated data in {time.perf_counter() - started:.1f} s", flush=True)
        side_by_side = names if args.only != "proxy" else []  # the proxy part starts its own
        with contextlib.ExitStack() as stack:
            try:
                setup = stack.enter_context(storage_setup(args.storage, workdir))
            except PeerUnavailable as exc:
                report.skip(f"storage {args.storage}: {exc}")
                return report
            registries = stack.enter_context(_registries(side_by_side, setup, pyreg_args, report))
            if blob is not None and small is not None:
                plan = ServerPlan(
                    blob, args.chunk * MIB, small, args.manifests, args.tag_lists,
                    args.concurrency, args.repeat, args.many_pulls, many_base,
                )  # fmt: skip
                print("server side", flush=True)
                try:
                    drive = run_lean_server_bench if args.load == "lean" else run_server_bench
                    asyncio.run(drive(registries, plan, report))
                except (BenchError, OSError) as exc:
                    report.skip(f"server bench stopped: {exc!r}")
                if args.listing:
                    print(f"listing ({args.listing} tags and repositories)", flush=True)
                    try:
                        asyncio.run(_listing(registries, args, small, setup, report))
                    except (BenchError, OSError) as exc:
                        report.skip(f"listing bench stopped: {exc!r}")
            if image is not None and args.only != "proxy":
                print("client side", flush=True)
                client_dir = workdir / "clients"
                client_dir.mkdir()
                wanted = _names(args.client_registries or args.registries)
                run_client_bench(
                    [r for r in registries if r.name in wanted],
                    _names(args.clients),
                    ClientPlan(image, client_dir, args.repeat),
                    report,
                )
        if image is not None and args.only in ("all", "proxy"):
            print("pull-through cache", flush=True)
            _proxy_part(workdir, image, args.repeat, pyreg_args, report)
    return report


async def _listing(
    registries: list[RunningRegistry],
    args: argparse.Namespace,
    small: list[tuple[str, bytes]],
    setup: StorageSetup,
    report: Report,
) -> None:
    import httpx

    timeout = httpx.Timeout(300.0, connect=10.0)
    async with contextlib.AsyncExitStack() as stack:
        clients = {
            r.name: await stack.enter_async_context(
                httpx.AsyncClient(base_url=r.url, timeout=timeout)
            )
            for r in registries
        }
        for r in registries:
            started = time.perf_counter()
            await fill(clients[r.name], args.listing, small, 16)
            print(f"  filled {r.name} in {time.perf_counter() - started:.1f} s", flush=True)
        await measure_listing(registries, clients, args.listing, setup.s3_requests, report)


def _proxy_part(
    workdir: Path, image: data.Image, repeat: int, pyreg_args: list[str], report: Report
) -> None:
    """The reference registry as the upstream, a fresh `pyreg serve` mirror per run."""
    proxy_dir = workdir / "proxy"
    proxy_dir.mkdir()
    try:
        upstream = start_reference(proxy_dir)
    except PeerUnavailable as exc:
        report.skip(f"proxy bench: {exc}")
        return
    try:
        run_proxy_bench(upstream, ClientPlan(image, proxy_dir, repeat), pyreg_args, report)
    finally:
        upstream.stop()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    problems = _check(args)
    if problems:
        for problem in problems:
            print(f"bench: {problem}", file=sys.stderr)
        return 2
    traffic = planned_traffic(args, len(_names(args.registries)))
    if traffic > args.max_traffic * 2**30:
        print(
            f"bench: this plan moves about {traffic / 2**30:.1f} GiB over loopback, more than "
            f"--max-traffic {args.max_traffic} GiB",
            file=sys.stderr,
        )
        return 2
    print(f"plan: about {traffic / 2**30:.1f} GiB over loopback", flush=True)
    report = run(args)
    print(report.table())
    path = report.write_json(args.results)
    print(f"\nresults: {path}")
    return 0 if report.measurements else 1
