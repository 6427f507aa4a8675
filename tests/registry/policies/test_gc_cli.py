"""`pyreg gc --config` applies the config's retention: the dry run prints exactly the real
run's deletions with their rules; the real run queues a delete event per deletion for the
webhooks; `--no-policies` skips retention."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest

from pyreg.cli import main
from registry.app import create_app
from registry.events.queue import EventQueue
from registry.settings import Settings
from registry.stores import paths
from storage_backends.filesystem import FilesystemBackend
from tests.registry.helpers import push_image, put_manifest

CONFIG = """
storage: file://{root}
notifications:
  endpoints:
    - {{name: ci, url: "http://127.0.0.1:9/hook"}}
policies:
  retention:
    - {{repository: "ci/**", keep_last: 1, untagged_after: 0}}
"""


def setup(root: Path) -> None:
    async def push() -> None:
        backend = FilesystemBackend(str(root))
        await backend.open()
        try:
            app = create_app(Settings(), backend=backend)
            async with app.router.lifespan_context(app):
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=transport, base_url="http://r") as c:
                    for tag, pushed in [("old", 10.0), ("older", 5.0), ("new", 100.0)]:
                        data, _ = await push_image(c, "ci/app", [tag.encode()])
                        assert (await put_manifest(c, "ci/app", tag, data)).status_code == 201
                        key = paths.tag_link("ci/app", tag)  # as if pushed at `pushed`
                        body = json.loads(await backend.get(key))
                        await backend.put(key, json.dumps({**body, "pushed": pushed}).encode())
        finally:
            await backend.close()

    asyncio.run(push())


async def queued_events(root: Path) -> list[dict[str, object]]:
    backend = FilesystemBackend(str(root))
    await backend.open()
    try:
        queue = EventQueue(backend)
        out = []
        for name in await queue.oldest(100):
            record = await queue.read(name)
            assert record is not None
            out += record.events
        return out
    finally:
        await backend.close()


def test_dry_run_prints_the_real_runs_deletions_and_events_are_queued(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "storage"
    setup(root)
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG.format(root=root))
    assert main(["gc", "--config", str(config), "--grace", "0", "--no-policies"]) == 0
    assert "by retention" not in capsys.readouterr().out
    assert main(["gc", "--config", str(config), "--grace", "0", "--dry-run"]) == 0
    dry = capsys.readouterr().out.splitlines()
    assert main(["gc", "--config", str(config), "--grace", "0"]) == 0
    real = capsys.readouterr().out.splitlines()

    def listed(lines: list[str], verb: str) -> list[str]:
        return sorted(line.removeprefix(verb) for line in lines if line.startswith(verb))

    assert listed(dry, "would delete ") == listed(real, "deleted ")
    tags = listed(real, "deleted tag ")
    assert [t.split(" ")[0] for t in tags] == ["ci/app:old", "ci/app:older"]
    assert all("policies.retention[0]: not among the 1 most recently pushed" in t for t in tags)
    assert len(listed(real, "deleted untagged manifest ")) == 2
    assert real[-1].endswith("2 tag(s) by retention")
    events = asyncio.run(queued_events(root))
    deleted = sorted(
        str(e["target"].get("tag") or e["target"].get("digest"))  # type: ignore[attr-defined]
        for e in events
        if e["action"] == "delete"
    )
    assert len(deleted) == 4 and deleted[:2] == ["old", "older"]
