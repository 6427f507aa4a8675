"""A real S3 for tests: a throwaway single-node Ceph cluster with its RADOS Gateway on loopback.

    from tests.support.rgw import rgw  # noqa: F401   (a session fixture)

- `rgw` (session scope): an `Rgw` with `endpoint`, `access_key`, `secret_key`, started once
  per test session on first use and stopped when the process exits. If Ceph's daemons are not
  installed or the cluster does not come up, every test that uses it skips with the reason
  (once tried, the failure is remembered for the session).
- `Rgw.create_bucket()`: a fresh bucket; `Rgw.storage_url(bucket, prefix)`: the `s3://` URL for
  `pyreg serve --storage` / `open_backend`, credentials in its query; `Rgw.options()`: the same
  as backend options.

The cluster: one monitor, no manager, one BlueStore OSD on a sparse file, pools of size 1,
radosgw (beast) on 127.0.0.1, all state in a temporary directory. The settings that matter
(learned from the bring-up in shared/tools/rgw): the monitor's paxos interval (without it
every pool creation waits a second and bring-up takes ~20 s), every address pinned to
127.0.0.1 with msgr v2 only, placement-group limits for one OSD, and a large per-user bucket
limit (tests make a bucket each). Ports stay below the ephemeral range: a block of 40 free
ports is chosen from 20000-32000.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from tests.support.ports import port_block

REGION = "us-east-1"
DAEMONS = ("ceph-mon", "ceph-osd", "radosgw", "radosgw-admin", "ceph", "ceph-authtool")
STARTUP_TIMEOUT = 180.0


class RgwUnavailable(RuntimeError):
    """Ceph RGW cannot run here; the message says why."""


def _config(root: Path, fsid: str, mon_port: int, osd_port: int, rgw_port: int) -> str:
    return f"""[global]
fsid = {fsid}
mon host = v2:127.0.0.1:{mon_port}
public addr = 127.0.0.1
cluster addr = 127.0.0.1
public network = 127.0.0.0/8
cluster network = 127.0.0.0/8
ms bind msgr1 = false
ms bind msgr2 = true
ms bind ipv6 = false
ms bind port min = {osd_port}
ms bind port max = {osd_port + 9}
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
auth allow insecure global id reclaim = false
run dir = {root}/run
admin socket = {root}/run/$cluster-$name.asok
pid file = {root}/run/$cluster-$name.pid
log file = {root}/log/$cluster-$name.log
log to stderr = false
err to stderr = true
crash dir = {root}/crash
exec dir = {root}/run
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon data avail warn = 2
mon data avail crit = 1
mon max pg per osd = 1000
paxos propose interval = 0.05
paxos min wait = 0.01
mgr initial modules =
mon mgr mkfs grace = 31536000

[mon]
mon data = {root}/mon/$cluster-$id

[osd]
osd data = {root}/osd/$cluster-$id
keyring = $osd_data/keyring
osd objectstore = bluestore
osd memory target = 1073741824
bluestore block create = true
bluestore block size = 21474836480
bluestore fsck on mkfs = false
bluestore fsck on mount = false
osd max object size = 134217728

[client]
keyring = {root}/keyring/$name.keyring

[client.rgw.a]
rgw frontends = beast endpoint=127.0.0.1:{rgw_port}
rgw data = {root}/rgw
rgw thread pool size = 64
rgw gc obj min wait = 120
rgw gc processor period = 120
debug rgw = 0/5
"""


@dataclass
class Rgw:
    root: Path
    endpoint: str = ""
    access_key: str = ""
    secret_key: str = ""
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    _client: Any = None

    # -- bring-up ----------------------------------------------------------------------------

    @property
    def _env(self) -> dict[str, str]:
        return {**os.environ, "CEPH_CONF": str(self.root / "ceph.conf")}

    def _run(self, *argv: str, stdin: bytes | None = None, timeout: float = 60) -> str:
        try:
            done = subprocess.run(
                argv, input=stdin, capture_output=True, env=self._env, timeout=timeout
            )
        except subprocess.TimeoutExpired:
            raise RgwUnavailable(f"{argv[0]} {argv[1]} timed out after {timeout:.0f} s") from None
        if done.returncode != 0:
            err = done.stderr.decode(errors="replace").strip().splitlines()[-3:]
            raise RgwUnavailable(f"{' '.join(argv[:3])} failed: {' / '.join(err)}")
        return done.stdout.decode()

    def _daemon(self, name: str, *argv: str) -> None:
        log = (self.root / "log" / f"{name}.out").open("wb")
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=self._env,
            start_new_session=True,
        )  # fmt: skip
        self.processes.append(proc)
        self.names.append(name)

    def _wait(self, what: str, check: Any, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, proc in zip(self.names, self.processes, strict=True):
                if proc.poll() is not None:
                    raise RgwUnavailable(f"{name} exited while waiting for {what}")
            with contextlib.suppress(RgwUnavailable, OSError):
                if check():
                    return
            time.sleep(0.2)
        raise RgwUnavailable(f"timed out after {timeout:.0f} s waiting for {what}")

    def start(self) -> None:
        missing = [d for d in DAEMONS if shutil.which(d) is None]
        if missing:
            raise RgwUnavailable(
                f"Ceph RGW not installed ({', '.join(missing)} missing; apt-get install "
                "ceph-mon ceph-osd radosgw ceph-common)"
            )
        try:
            base = port_block(40)
        except RuntimeError as e:
            raise RgwUnavailable(str(e)) from None
        mon_port, osd_port, rgw_port = base, base + 10, base + 30
        for sub in ("mon", "osd/ceph-0", "run", "log", "keyring", "rgw", "crash"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        fsid = str(uuid.uuid4())
        (self.root / "ceph.conf").write_text(_config(self.root, fsid, mon_port, osd_port, rgw_port))
        keyring = self.root / "keyring"
        self._run("ceph-authtool", "--create-keyring", f"{keyring}/mon.keyring", "--gen-key",
                  "-n", "mon.", "--cap", "mon", "allow *")  # fmt: skip
        self._run("ceph-authtool", "--create-keyring", f"{keyring}/client.admin.keyring",
                  "--gen-key", "-n", "client.admin", "--cap", "mon", "allow *", "--cap", "osd",
                  "allow *", "--cap", "mgr", "allow *")  # fmt: skip
        self._run("ceph-authtool", f"{keyring}/mon.keyring", "--import-keyring",
                  f"{keyring}/client.admin.keyring")  # fmt: skip
        monmap = str(self.root / "monmap")
        self._run("monmaptool", "--create", "--clobber", "--fsid", fsid, "--addv", "a",
                  f"[v2:127.0.0.1:{mon_port}]", monmap)  # fmt: skip
        self._run("ceph-mon", "--mkfs", "-i", "a", "--monmap", monmap, "--keyring",
                  f"{keyring}/mon.keyring")  # fmt: skip
        self._daemon("mon.a", "ceph-mon", "-f", "-i", "a")
        self._wait("the monitor", lambda: self._run("ceph", "--connect-timeout", "5", "mon",
                                                   "stat", timeout=15), 60)  # fmt: skip

        osd_uuid = str(uuid.uuid4())
        osd_key = self._run("ceph-authtool", "--gen-print-key").strip()
        secret = json.dumps({"cephx_secret": osd_key}).encode()
        osd_id = self._run("ceph", "osd", "new", osd_uuid, "-i", "-", stdin=secret).strip()
        if osd_id != "0":
            raise RgwUnavailable(f"unexpected osd id {osd_id!r}")
        self._run("ceph-authtool", "--create-keyring", f"{self.root}/osd/ceph-0/keyring",
                  "--name", "osd.0", "--add-key", osd_key)  # fmt: skip
        self._run("ceph-osd", "-i", "0", "--mkfs", "--osd-uuid", osd_uuid, timeout=120)
        self._daemon("osd.0", "ceph-osd", "-f", "-i", "0")

        def osd_up() -> bool:
            return '"up":1' in self._run("ceph", "osd", "dump", "--format", "json", timeout=15)

        self._wait("osd.0 to be up", osd_up, 90)
        self._run("ceph", "auth", "get-or-create", "client.rgw.a", "mon", "allow rw", "osd",
                  "allow rwx", "-o", f"{keyring}/client.rgw.a.keyring")  # fmt: skip
        self._daemon("rgw.a", "radosgw", "-f", "-n", "client.rgw.a")

        def gateway_up() -> bool:
            with socket.create_connection(("127.0.0.1", rgw_port), timeout=1):
                return True

        self._wait(f"radosgw on 127.0.0.1:{rgw_port}", gateway_up, STARTUP_TIMEOUT)
        self.access_key = secrets.token_hex(10).upper()
        self.secret_key = secrets.token_urlsafe(30)
        self._run("radosgw-admin", "user", "create", "--uid=pyreg", "--display-name=pyreg",
                  "--max-buckets=100000", f"--access-key={self.access_key}",
                  f"--secret-key={self.secret_key}", timeout=60)  # fmt: skip
        self.endpoint = f"http://127.0.0.1:{rgw_port}"
        # The gateway accepts connections before it serves S3: wait for a signed request.
        self._wait("radosgw to serve S3", lambda: self.client().list_buckets() is not None, 60)

    def stop(self) -> None:
        for proc in reversed(self.processes):  # gateway first, monitor last
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        self.processes.clear()
        self.names.clear()
        shutil.rmtree(self.root, ignore_errors=True)

    # -- use ---------------------------------------------------------------------------------

    def client(self) -> Any:
        """A synchronous botocore client (one per cluster: building one takes ~1 s)."""
        import botocore.session
        from botocore.config import Config

        if self._client is None:
            self._client = botocore.session.get_session().create_client(
                "s3",
                endpoint_url=self.endpoint,
                region_name=REGION,
                aws_access_key_id=self.access_key,
                aws_secret_access_key=self.secret_key,
                config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 10}),
            )
        return self._client

    def request_count(self) -> int:
        """S3 requests the gateway has served so far (its `rgw.req` perf counter), to count
        what an operation costs in S3 requests."""
        asok = self.root / "run" / "ceph-client.rgw.a.asok"
        dump = json.loads(self._run("ceph", "--admin-daemon", str(asok), "perf", "dump"))
        count: int = dump["rgw"]["req"]
        return count

    def create_bucket(self, name: str | None = None) -> str:
        bucket = name or f"test-{uuid.uuid4().hex[:20]}"
        self.client().create_bucket(Bucket=bucket)
        return bucket

    def options(self) -> dict[str, str]:
        return {
            "endpoint_url": self.endpoint,
            "region": REGION,
            "access_key": self.access_key,
            "secret_key": self.secret_key,
            "addressing_style": "path",
        }

    def storage_url(self, bucket: str, prefix: str = "", **options: str) -> str:
        query = urlencode({**self.options(), **options})
        return f"s3://{bucket}/{prefix.strip('/')}?{query}"


_lock = threading.Lock()
_cluster: Rgw | None = None
_failure: str | None = None


def start_rgw() -> Rgw:
    """This process's cluster, started on first call; raises `RgwUnavailable` (remembered)."""
    global _cluster, _failure
    with _lock:
        if _cluster is not None:
            return _cluster
        if _failure is not None:
            raise RgwUnavailable(_failure)
        cluster = Rgw(Path(tempfile.mkdtemp(prefix="pyreg-rgw-")))
        try:
            cluster.start()
        except RgwUnavailable as e:
            cluster.stop()
            _failure = str(e)
            raise
        except BaseException:
            cluster.stop()
            raise
        atexit.register(cluster.stop)
        _cluster = cluster
        return cluster


@pytest.fixture(scope="session")
def rgw() -> Rgw:
    try:
        return start_rgw()
    except RgwUnavailable as e:
        pytest.skip(f"Ceph RGW cannot run here: {e}")
