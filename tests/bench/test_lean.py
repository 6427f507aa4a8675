"""The lean load generator against real registries on loopback: every scenario's requests go
through, and a wrong answer fails the job (and the run) with a clear message."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench import data
from bench.http_bench import BenchError, ServerPlan, _manifest
from bench.lean import _target, parse_ops
from bench.lean_bench import (
    LeanLoad,
    OpSpec,
    closing_put,
    get_manifest,
    lean_load,
    list_tags,
    post,
    pull_blob,
    push_chunked,
    push_monolithic,
    put_manifest,
    run_lean_server_bench,
    write_bodies,
)
from bench.report import Report
from bench.servers import RunningRegistry, start_pyreg, start_reference

KIB = 1024


@pytest.fixture(scope="module")
def pyreg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    """One server for the module (starting one takes seconds on a busy machine); each test
    uses repositories of its own, or pushes what an earlier one pushed again."""
    workdir = tmp_path_factory.mktemp("pyreg")
    registry = start_pyreg(workdir, ["--log-level", "warning"], timeout=120)
    try:
        yield registry
    finally:
        registry.stop()


@pytest.fixture
def load() -> Iterator[LeanLoad]:
    with lean_load() as worker:
        yield worker


def _push_small(
    load: LeanLoad,
    host: str,
    repo: str,
    small: list[tuple[str, bytes]],
    specs: list[list[Any]],
) -> None:
    sequences = [[post(repo), closing_put(d, s)] for (d, _), s in zip(small, specs, strict=True)]
    load.run(host, sequences, 2)


def _plan(tmp_path: Path, blob: data.Blob | None = None) -> ServerPlan:
    big = data.large_blob(tmp_path, 3 * data.MIB + 5)  # above the inline limit: sendfile
    return ServerPlan(
        blob=blob or big,
        chunk_size=data.MIB,
        small=data.small_blobs(5, 3 * KIB),
        manifests=7,
        tag_lists=3,
        concurrency=4,
        repeat=1,
        many_pulls=5,
        many_base=data.large_blob(tmp_path, data.MIB, seed=4),
    )


@pytest.mark.slow
def test_every_scenario_runs_against_pyreg(tmp_path: Path, pyreg: RunningRegistry) -> None:
    report = Report(options={})
    asyncio.run(run_lean_server_bench([pyreg], _plan(tmp_path), report))
    assert report.skipped == []
    scenarios = {m.scenario for m in report.measurements}
    assert len(scenarios) == 10, scenarios
    assert "5 clients pull 1 MiB each" in scenarios
    assert "blob HEAD x5" in scenarios
    for m in report.measurements:
        assert m.seconds[0] > 0
        assert len(m.client_cpu) == 1  # the worker's own CPU, next to the server's


def test_the_requests_reach_the_server_as_sent(
    tmp_path: Path, pyreg: RunningRegistry, load: LeanLoad
) -> None:
    blob = data.large_blob(tmp_path, 2 * data.MIB + 3)
    small = data.small_blobs(2, 2 * KIB)
    specs = write_bodies(tmp_path / "bodies", [b for _, b in small])
    host = pyreg.host
    load.run(host, [push_chunked("r/chunked", blob, data.MIB)], 1)
    load.run(host, [push_monolithic("r/mono", blob)], 1)
    _push_small(load, host, "r/mono", small, specs)
    manifest = _manifest(small[0], small[1], 1)
    (spec,) = write_bodies(tmp_path / "manifest", [manifest])
    load.run(host, [[put_manifest("r/mono", "v1", spec)]], 1)
    cost = load.run(
        host,
        [
            [pull_blob("r/chunked", blob.digest, blob.size)],
            [pull_blob("r/mono", small[1][0], len(small[1][1]))],
            [get_manifest("r/mono", "v1"), list_tags("r/mono", 1)],
        ],
        3,
    )
    assert cost.seconds > 0 and cost.cpu >= 0
    # what the server stored is what was sent
    digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    by_digest = get_manifest("r/mono", digest)
    by_digest["size"] = len(manifest)
    load.run(host, [[by_digest]], 1)


def test_a_wrong_status_fails_the_job(pyreg: RunningRegistry, load: LeanLoad) -> None:
    cases: list[tuple[OpSpec, str]] = [
        (pull_blob("r/x", "sha256:" + "0" * 64, 1), "GET /v2/r/x/blobs/sha256:0+ -> 404"),
        (list_tags("r/none", 3), "-> 404"),
        (get_manifest("r/none", "v1"), "MANIFEST_UNKNOWN"),
    ]
    for op, message in cases:
        with pytest.raises(BenchError, match=message):
            load.run(pyreg.host, [[op]], 1)


def test_a_wrong_size_or_tag_count_fails_the_job(
    tmp_path: Path, pyreg: RunningRegistry, load: LeanLoad
) -> None:
    small = data.small_blobs(2, 2 * KIB)
    specs = write_bodies(tmp_path / "bodies", [b for _, b in small])
    _push_small(load, pyreg.host, "r/a", small, specs)
    with pytest.raises(BenchError, match="2048 bytes, expected 2047"):
        load.run(pyreg.host, [[pull_blob("r/a", small[0][0], 2047)]], 1)
    (spec,) = write_bodies(tmp_path / "m", [_manifest(small[0], small[1], 1)])
    load.run(pyreg.host, [[put_manifest("r/a", "v1", spec)]], 1)
    with pytest.raises(BenchError, match="1 tags, expected 2"):
        load.run(pyreg.host, [[list_tags("r/a", 2)]], 1)
    # the worker goes on serving jobs after a failed one
    load.run(pyreg.host, [[list_tags("r/a", 1)]], 1)


def test_a_failing_scenario_fails_the_run_with_the_servers_answer(
    tmp_path: Path, pyreg: RunningRegistry
) -> None:
    good = data.large_blob(tmp_path, 2 * data.MIB)
    wrong = data.Blob(good.path, good.size, "sha256:" + "1" * 64)  # the server must refuse it
    report = Report(options={})
    asyncio.run(run_lean_server_bench([pyreg], _plan(tmp_path, wrong), report))
    failed = [s for s in report.skipped if s.startswith("blob push monolithic 2 MiB on pyreg")]
    assert failed, report.skipped
    assert "-> 400" in failed[0] and "DIGEST_INVALID" in failed[0]
    assert not any(m.scenario.startswith("blob push monolithic") for m in report.measurements)


def test_a_location_keeps_its_query_and_gets_the_digest() -> None:
    op = closing_put("sha256:00")
    (parsed,) = parse_ops([[op]])[0]
    absolute = "http://127.0.0.1:5/v2/a/blobs/uploads/u?_state=abc%3D"
    assert _target(parsed, absolute) == "/v2/a/blobs/uploads/u?_state=abc%3D&digest=sha256%3A00"
    assert _target(parsed, "/v2/a/blobs/uploads/u") == "/v2/a/blobs/uploads/u?digest=sha256%3A00"


@pytest.mark.interop
def test_the_reference_registrys_chunked_answers_are_read(tmp_path: Path, load: LeanLoad) -> None:
    if shutil.which("docker-registry") is None:
        pytest.skip("docker-registry (the reference registry) is not installed")
    reference = start_reference(tmp_path, timeout=120)
    try:
        small = data.small_blobs(2, 2 * KIB)
        specs = write_bodies(tmp_path / "bodies", [b for _, b in small])
        _push_small(load, reference.host, "r/a", small, specs)
        count = 300  # a tags list over Go's 2 KiB response buffer goes out chunked
        manifests = write_bodies(
            tmp_path / "m", [_manifest(small[0], small[1], n) for n in range(count)]
        )
        puts = [[put_manifest("r/a", f"t{n:05d}", m)] for n, m in enumerate(manifests)]
        load.run(reference.host, puts, 4)
        load.run(reference.host, [[list_tags("r/a", count)]] * 3, 1)
    finally:
        reference.stop()
