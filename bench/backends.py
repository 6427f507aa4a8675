"""Where the registries under test store: a temp directory each (default), or buckets on a
real S3, a throwaway Ceph RGW on loopback (`--storage rgw`), the reference registry on its
`s3` driver and pyreg on its S3 backend, pointed at the same gateway.

`pyreg+redis` is pyreg with a redis-server for its shared state and blob-descriptor cache
(docs/replicas-and-gc.md), to compare with and without it. The RGW and Redis bring-ups are
the test suite's (tests/support/), so the bench measures exactly what the tests check.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.servers import PeerUnavailable, RunningRegistry, S3Target, start_pyreg, start_reference

STORAGES = ("filesystem", "rgw")


@dataclass
class StorageSetup:
    kind: str
    workdir: Path
    rgw: Any = None  # tests.support.rgw.Rgw when kind == "rgw"
    redis_url: str = ""
    _closers: list[Any] = field(default_factory=list)

    def start(self, name: str, pyreg_args: list[str]) -> RunningRegistry:
        if name == "reference":
            s3 = None
            if self.rgw is not None:
                target = S3Target(self.rgw.endpoint, self.rgw.access_key, self.rgw.secret_key)
                s3 = (target, self.rgw.create_bucket())
            return start_reference(self.workdir, s3=s3)
        if name == "pyreg+redis" and not self.redis_url:
            self.redis_url = self._start_redis()
        storage_url = None
        if self.rgw is not None:
            storage_url = self.rgw.storage_url(self.rgw.create_bucket(), "pyreg")
        env_redis = self.redis_url if name == "pyreg+redis" else ""
        return start_pyreg(
            self.workdir, pyreg_args, storage_url=storage_url, name=name, redis_url=env_redis
        )

    def s3_requests(self) -> int | None:
        """S3 requests served so far (None on the filesystem)."""
        return None if self.rgw is None else int(self.rgw.request_count())

    def _start_redis(self) -> str:
        try:
            from tests.support.redis_server import RedisServer

            server = RedisServer().start()
        except (ImportError, FileNotFoundError, RuntimeError) as exc:
            raise PeerUnavailable(f"redis-server cannot run: {exc}") from None
        self._closers.append(server.close)
        return server.url


@contextlib.contextmanager
def storage_setup(kind: str, workdir: Path) -> Iterator[StorageSetup]:
    setup = StorageSetup(kind, workdir)
    try:
        if kind == "rgw":
            try:
                from tests.support.rgw import RgwUnavailable, start_rgw
            except ImportError as exc:
                raise PeerUnavailable(f"the RGW fixture cannot be imported: {exc}") from None
            try:
                setup.rgw = start_rgw()
            except RgwUnavailable as exc:
                raise PeerUnavailable(f"Ceph RGW cannot run here: {exc}") from None
        yield setup
    finally:
        for close in setup._closers:
            close()
