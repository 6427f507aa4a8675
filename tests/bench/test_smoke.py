"""`python -m bench` runs end to end with tiny sizes, so the harness cannot rot."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TINY = [
    "--size", "2", "--chunk", "1", "--small-count", "4", "--small-size", "4",
    "--manifests", "3", "--tag-lists", "3", "--image-size", "2", "--layers", "2",
    "--repeat", "1", "--many-pulls", "3", "--many-size", "1",
]  # fmt: skip


def _bench(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench", *TINY, "--results", str(tmp_path), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


@pytest.mark.interop
@pytest.mark.slow
def test_bench_runs_end_to_end(tmp_path: Path) -> None:
    if shutil.which("docker-registry") is None:
        pytest.skip("docker-registry (the reference registry) is not installed")
    # Clients against one registry only: each pyreg/podman command costs a process start.
    result = _bench(tmp_path, "--registries", "pyreg,reference", "--client-registries", "reference")
    assert result.returncode == 0, result.stderr[-3000:]
    (path,) = tmp_path.glob("bench-*.json")
    written = json.loads(path.read_text())
    server = {(m["peer"], m["scenario"]) for m in written["measurements"] if m["group"] == "server"}
    for peer in ("pyreg", "reference"):
        scenarios = {s for p, s in server if p == peer}
        assert len(scenarios) == 10, (peer, scenarios, written["skipped"])
        assert "3 clients pull 1 MiB each" in scenarios  # --many-pulls 3 --many-size 1
        assert any(s.startswith("blob HEAD x") for s in scenarios)  # the lean load only
    assert {r["peer"] for r in written["memory"]} == {"pyreg", "reference"}
    assert {r["during"] for r in written["memory"]} >= {"3 clients pull 1 MiB each"}
    client_rows = [m for m in written["measurements"] if m["group"] == "client"]
    assert all(m["scenario"].endswith("on reference") for m in client_rows)
    clients = {m["peer"] for m in client_rows}
    if shutil.which("skopeo"):
        assert {"skopeo", "pyreg-client"} <= clients, written["skipped"]
    if shutil.which("skopeo"):  # the pull-through cache part seeds its upstream with skopeo
        proxy = {(m["scenario"].split()[0], m["peer"]) for m in written["measurements"]}
        assert {("first", "through-cache"), ("first", "upstream-direct")} <= proxy
        assert {("cached", "through-cache"), ("cached", "local-repo")} <= proxy
    assert all(m["median"] > 0 for m in written["measurements"])
    assert "ratio" in result.stdout
    assert written["options"]["load"] == "lean"  # the default
    assert all(len(m["client_cpu"]) == 1 for m in written["measurements"] if m["group"] == "server")


@pytest.mark.slow
def test_the_server_part_still_runs_with_the_httpx_client(tmp_path: Path) -> None:
    # the lean generator (the default) runs in the test above and in test_lean.py
    result = _bench(tmp_path, "--only", "server", "--registries", "pyreg", "--load", "httpx")
    assert result.returncode == 0, result.stderr[-3000:]
    (path,) = tmp_path.glob("bench-*.json")
    written = json.loads(path.read_text())
    assert written["options"]["load"] == "httpx"
    assert len(written["load_average"]["start"]) == 3
    rows = written["measurements"]
    assert len({m["scenario"] for m in rows}) == 9, written["skipped"]
    # the load generator's CPU per run, next to the server's
    assert all(len(m["client_cpu"]) == 1 and m["client_cpu"][0] >= 0 for m in rows)
    assert "load gen CPU s" in result.stdout


def test_a_plan_over_the_traffic_limit_is_refused(tmp_path: Path) -> None:
    result = _bench(tmp_path, "--max-traffic", "0.0001")
    assert result.returncode == 2
    assert "--max-traffic" in result.stderr
    assert not list(tmp_path.glob("*.json"))


def test_unknown_client_is_refused(tmp_path: Path) -> None:
    result = _bench(tmp_path, "--clients", "skopeo,crane")
    assert result.returncode == 2
    assert "crane" in result.stderr


def test_bad_sizes_are_refused(tmp_path: Path) -> None:
    result = _bench(tmp_path, "--size", "0")
    assert result.returncode == 2
    assert "--size must be at least 1" in result.stderr


@pytest.mark.interop
def test_a_registry_that_cannot_start_is_skipped_and_the_rest_runs(tmp_path: Path) -> None:
    if shutil.which("docker-registry") is None:
        pytest.skip("docker-registry (the reference registry) is not installed")
    result = _bench(tmp_path, "--only", "server", "--pyreg-arg=--no-such-flag")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "SKIP: registry pyreg: pyreg exited" in result.stdout
    (path,) = tmp_path.glob("bench-*.json")
    written = json.loads(path.read_text())
    assert {m["peer"] for m in written["measurements"]} == {"reference"}
    assert any("--no-such-flag" in s for s in written["skipped"])
