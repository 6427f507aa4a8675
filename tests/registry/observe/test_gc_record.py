"""`pyreg gc` leaves its numbers in storage and audit lines; servers export them as gauges."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from ocispec.digest import digest_bytes
from pyreg.cli import main
from registry.observe.gc_record import export_record, read_record
from registry.stores import paths
from storage_backends.filesystem import FilesystemBackend


def _orphan(root: Path, data: bytes) -> str:
    async def write() -> str:
        backend = FilesystemBackend(root)
        await backend.open()
        digest = digest_bytes(data)
        await backend.put(paths.blob_data(digest), data)
        return str(digest)

    return asyncio.run(write())


def _record(root: Path) -> dict[str, object] | None:
    async def read() -> dict[str, object] | None:
        return await read_record(FilesystemBackend(root))

    return asyncio.run(read())


def test_gc_run_is_recorded_audited_and_exported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "storage"
    orphan = _orphan(root, b"nobody references me")
    time.sleep(0.05)
    storage = f"file://{root}"
    with caplog.at_level(logging.INFO, logger="registry.audit"):
        assert main(["gc", "--storage", storage, "--grace", "0", "--dry-run", "-q"]) == 0
        assert _record(root) is None  # a dry run leaves no record
        assert main(["gc", "--storage", storage, "--grace", "0", "-q"]) == 0
        assert main(["gc", "--storage", storage, "--grace", "0", "-q"]) == 0
    lines = [getattr(r, "fields", {}) for r in caplog.records if r.name == "registry.audit"]
    assert [(line["action"], line.get("mode")) for line in lines] == [
        ("gc.run", "dry_run"),
        ("gc.sweep", None),
        ("gc.run", "run"),
        ("gc.run", "run"),
    ]
    assert lines[1]["digest"] == orphan and lines[1]["user"] and lines[1]["client"]
    assert lines[2]["blobs"] == 1 and lines[2]["bytes"] == len(b"nobody references me")
    record = _record(root)
    assert record is not None and record["runs"] == 2 and record["blobs_deleted"] == 0

    async def export() -> None:
        backend = FilesystemBackend(root)
        await backend.put(
            paths.GC_LAST_RUN,
            json.dumps({**record, "blobs_deleted": 5, "bytes_freed": 1234}).encode(),
        )
        await export_record(backend)

    asyncio.run(export())
    value = REGISTRY.get_sample_value
    assert value("pyreg_gc_runs") == 2
    assert value("pyreg_gc_last_run_blobs_swept") == 5
    assert value("pyreg_gc_last_run_bytes_swept") == 1234
    assert value("pyreg_gc_last_run_timestamp_seconds") == record["finished"]


def test_pyreg_gc_writes_audit_lines_to_stderr(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from tests.support.server import REPO_ROOT

    root = tmp_path / "storage"
    orphan = _orphan(root, b"swept by a real pyreg gc")
    time.sleep(0.05)
    argv = [sys.executable, "-m", "pyreg", "gc", "--storage", f"file://{root}", "--grace", "0"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYREG_")}
    env["PYREG_LOG_FORMAT"] = "json"
    done = subprocess.run(argv, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stderr.splitlines()]
    sweeps = [line for line in lines if line.get("action") == "gc.sweep"]
    assert [line["digest"] for line in sweeps] == [orphan]
    assert sweeps[0]["logger"] == "registry.audit" and sweeps[0]["client"]
    assert "freed 1 blob(s)" in done.stdout
