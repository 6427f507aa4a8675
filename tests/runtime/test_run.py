"""`pyreg run` and friends on a real runc, with a busybox image made by the test."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from ocispec.models import chain_ids
from puller.store import GraphStore, prune
from runtime.errors import NotPermitted
from runtime.runc import check_privileges
from runtime.seccomp import profile_path
from tests.runtime.conftest import BASE, Pyreg
from tests.support.busybox import busybox_entries, host_arch
from tests.support.images import (
    build_image,
    dir_,
    file,
    hardlink,
    opaque,
    register_image,
    whiteout,
)


def _containers(home: Path) -> list[Path]:
    root = home / "containers"
    return sorted(p for p in root.iterdir()) if root.is_dir() else []


def test_echo_and_exit_codes(pyreg: Pyreg) -> None:
    done = pyreg("run", BASE, "echo", "hello word")
    assert (done.returncode, done.stdout) == (0, "hello word\n")
    assert pyreg("run", BASE, "sh", "-c", "exit 7").returncode == 7
    status = pyreg("run", BASE, "grep", "^Seccomp:", "/proc/self/status", check=True)
    if profile_path() is not None:
        assert status.stdout.split() == ["Seccomp:", "2"]  # a filter is on
    missing = pyreg("run", BASE, "no-such-command")
    assert missing.returncode == 127
    assert "executable file not found" in missing.stderr
    ps = pyreg("ps", "-a", check=True).stdout.splitlines()
    assert ps[0].split()[:2] == ["CONTAINER", "ID"]
    assert any('"echo hello word"' in line and "Exited (0)" in line for line in ps)
    assert any("Exited (7)" in line for line in ps)


def test_image_config_and_flags_reach_the_process(pyreg: Pyreg, home: Path) -> None:
    image = build_image(
        [busybox_entries()],
        architecture=host_arch(),
        config_extra={
            "config": {
                "Entrypoint": ["/bin/sh", "-c"],
                "Cmd": ["echo default"],
                "Env": ["PATH=/bin", "GREETING=hi"],
                "WorkingDir": "/srv/app",
                "User": "app",
            }
        },
    )
    register_image(GraphStore(home), image, "localhost/configured:v1")
    done = pyreg("run", "localhost/configured:v1", check=True)
    assert done.stdout == "default\n"
    script = 'echo "$GREETING $EXTRA $(pwd) $(id -u):$(id -g) $(hostname)"'
    done = pyreg(
        "run", "-e", "EXTRA=x", "--hostname", "box", "localhost/configured:v1", script, check=True
    )
    assert done.stdout == "hi x /srv/app 1000:1000 box\n"
    done = pyreg("run", "-u", "0", "-w", "/tmp", "localhost/configured:v1", script, check=True)
    assert done.stdout == "hi  /tmp 0:0 " + done.stdout.split()[-1] + "\n"
    done = pyreg("run", "--entrypoint", "/bin/echo", "localhost/configured:v1", "direct")
    assert done.stdout == "direct\n"


def test_memory_limit_kills_with_137_reported_as_out_of_memory(pyreg: Pyreg) -> None:
    hog = 'x=0123456789abcdef; while true; do x="$x$x"; done'
    done = pyreg("run", "--name", "hog", "--memory", "32m", BASE, "sh", "-c", hog, timeout=300)
    assert done.returncode == 137
    assert "out of memory" in done.stderr
    line = next(x for x in pyreg("ps", "-a").stdout.splitlines() if x.endswith("hog"))
    assert "Exited (137) (out of memory)" in line
    removed = pyreg("run", "--rm", "--memory", "32m", BASE, "sh", "-c", hog, timeout=300)
    assert removed.returncode == 137 and "out of memory" in removed.stderr


def test_pids_limit_stops_a_fork_bomb(pyreg: Pyreg) -> None:
    # a bounded bomb: 60 background sleepers; the limit lets only a few of them exist
    bomb = "for i in $(seq 1 60); do sleep 30 & done; ps | wc -l"
    limited = pyreg("run", "--pids-limit", "16", BASE, "sh", "-c", bomb, timeout=300)
    assert limited.returncode != 0 and "can't fork" in limited.stderr
    free = pyreg("run", BASE, "sh", "-c", bomb, timeout=300)
    assert free.returncode == 0 and int(free.stdout.split()[-1]) > 60


def test_cpu_quota_lands_in_the_cgroup(pyreg: Pyreg) -> None:
    read = "cat /sys/fs/cgroup/cpu.max 2>/dev/null || cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us"
    done = pyreg("run", "--cpus", "0.5", BASE, "sh", "-c", read, check=True)
    assert done.stdout.split()[0] == "50000"


def test_two_containers_share_lower_layers_but_not_writes_or_processes(
    pyreg: Pyreg, home: Path
) -> None:
    a = pyreg("run", "-d", "--name", "a", BASE, "sh", "-c", "echo A > /mark; sleep 61", check=True)
    b = pyreg("run", "-d", "--name", "b", BASE, "sh", "-c", "echo B > /mark; sleep 62", check=True)
    try:
        time.sleep(0.5)
        for name, mine, theirs in (("a", "A", "B"), ("b", "B", "A")):
            deadline = time.monotonic() + 30
            while pyreg("exec", name, "cat", "/mark").stdout.strip() != mine:
                assert time.monotonic() < deadline
                time.sleep(0.2)
            procs = pyreg("exec", name, "ps", "-o", "args", check=True).stdout
            sleeps = {"A": "sleep 61", "B": "sleep 62"}
            assert sleeps[mine] in procs and sleeps[theirs] not in procs
        mounts = Path("/proc/self/mountinfo").read_text()
        lowers = []
        for cid in (a.stdout.strip(), b.stdout.strip()):
            line = next(x for x in mounts.splitlines() if f"containers/{cid}/rootfs" in x)
            lowers.append(line.split("lowerdir=")[1].split(",")[0])
        assert lowers[0] == lowers[1] and str(home / "layers") in lowers[0]
        # the shared lower layer itself never saw either write
        assert not (Path(lowers[0]) / "mark").exists()
    finally:
        pyreg("rm", "-f", "a", "b")
    assert _containers(home) == []


def test_detached_logs_stop_kill_rm(pyreg: Pyreg, home: Path) -> None:
    script = 'echo started; trap "echo bye; exit 3" TERM; while true; do sleep 0.1; done'
    cid = pyreg("run", "-d", "--name", "svc", BASE, "sh", "-c", script, check=True).stdout.strip()
    assert len(cid) == 64
    assert "svc" in pyreg("ps").stdout
    assert pyreg("rm", "svc").returncode == 1  # running: refused without -f
    assert pyreg("exec", "svc", "sh", "-c", "exit 5").returncode == 5
    pyreg("stop", "svc", check=True)
    assert "started\nbye\n" in pyreg("logs", "svc", check=True).stdout
    assert "svc" not in pyreg("ps").stdout
    assert "Exited (3)" in pyreg("ps", "-a").stdout
    assert pyreg("exec", "svc", "true").returncode == 1  # not running
    pyreg("run", "-d", "--name", "k", BASE, "sleep", "60", check=True)
    pyreg("kill", "k", check=True)
    deadline = time.monotonic() + 30
    while "Exited (137)" not in pyreg("ps", "-a").stdout:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    pyreg("rm", cid[:8], "k", check=True)
    assert _containers(home) == []
    assert not any(str(home) in line for line in Path("/proc/self/mounts").read_text().splitlines())


def test_rm_flag_removes_the_container_and_its_mount(pyreg: Pyreg, home: Path) -> None:
    assert pyreg("run", "--rm", BASE, "true").returncode == 0
    assert _containers(home) == []
    assert str(home) not in Path("/proc/self/mounts").read_text()


def test_rmi_refuses_and_prune_keeps_an_image_a_container_uses(pyreg: Pyreg, home: Path) -> None:
    pyreg("run", "--name", "user", BASE, "true", check=True)
    refused = pyreg("rmi", BASE)
    assert refused.returncode == 1 and "in use by container" in refused.stderr
    store = GraphStore(home)
    store.images.set("localhost/other:v1", store.images.list()[BASE])
    assert pyreg("rmi", "localhost/other:v1").returncode == 0  # not its last name
    store.images.remove(BASE)  # even without any name, the container keeps its content
    report = prune(store)
    assert report.blobs == [] and report.layers == []
    pyreg("rm", "user", check=True)
    assert len(prune(store).layers) == 1  # released with the container


def test_volumes_read_only_and_network_none(pyreg: Pyreg, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "in").write_text("from host")
    done = pyreg(
        "run", "-v", f"{shared}:/data", BASE, "sh", "-c", "cat /data/in; echo out > /data/out"
    )
    assert done.stdout == "from host"
    assert (shared / "out").read_text() == "out\n"
    ro = pyreg("run", "-v", f"{shared}:/data:ro", BASE, "sh", "-c", "echo x > /data/new")
    assert ro.returncode != 0 and not (shared / "new").exists()
    assert pyreg("run", "--read-only", BASE, "touch", "/file").returncode != 0
    assert pyreg("run", BASE, "touch", "/file").returncode == 0
    links = pyreg("run", BASE, "ls", "/sys/class/net", check=True).stdout.split()
    assert links == ["lo"]
    host = pyreg("run", "--network", "host", BASE, "ls", "/sys/class/net", check=True)
    assert sorted(host.stdout.split()) == sorted(os.listdir("/sys/class/net"))


def test_layers_that_delete_files_get_an_overlay_form(pyreg: Pyreg, home: Path) -> None:
    image = build_image(
        [
            [*busybox_entries(), file("etc/gone", b"x"), dir_("opq"), file("opq/old", b"o")],
            [whiteout("etc/gone"), opaque("opq"), file("opq/new", b"n"), file("tmp/t", b"t")],
        ],
        architecture=host_arch(),
    )
    register_image(GraphStore(home), image, "localhost/deleted:v1")
    script = "ls -a /etc /opq; stat -c %a /tmp"
    done = pyreg("run", "localhost/deleted:v1", "sh", "-c", script, check=True)
    listed = done.stdout.split()
    assert "gone" not in listed and not any(".wh." in x for x in listed)
    assert "new" in listed and "old" not in listed
    # /tmp is only a parent in the second layer: it keeps the 1777 of the layer below
    assert listed[-1] == "1777"
    assert "overlay not used" not in done.stderr
    cid = _containers(home)[0]
    assert json.loads((cid / "container.json").read_text())["rootfs_mode"] == "overlay"
    # the store's own layer trees are untouched
    chains = chain_ids(image.diff_ids)
    top = GraphStore(home).layers.get(chains[1])
    assert top is not None and (top.unpacked_dir / "etc" / ".wh.gone").is_file()


def test_hardlinks_into_lower_layers_fall_back_to_a_copy_said_once(
    pyreg: Pyreg, home: Path
) -> None:
    image = build_image(
        [busybox_entries(), [hardlink("etc/passwd-link", "etc/passwd")]],
        architecture=host_arch(),
    )
    register_image(GraphStore(home), image, "localhost/linked:v1")
    done = pyreg("run", "localhost/linked:v1", "cat", "/etc/passwd-link", check=True)
    assert done.stdout.startswith("root:x:0:0")
    assert done.stderr.count("overlay not used") == 1
    cid = _containers(home)[0]
    assert json.loads((cid / "container.json").read_text())["rootfs_mode"] == "copy"


def test_clear_errors(pyreg: Pyreg, home: Path) -> None:
    missing = pyreg("run", "localhost/none:v1", "true")
    assert missing.returncode == 1 and "pyreg: error:" in missing.stderr
    other = build_image([busybox_entries()], architecture="s390x")
    register_image(GraphStore(home), other, "localhost/foreign:v1")
    foreign = pyreg("run", "localhost/foreign:v1", "true")
    assert foreign.returncode == 1 and "is for linux/s390x" in foreign.stderr
    pyreg("run", "--name", "dup", BASE, "true", check=True)
    assert "already in use" in pyreg("run", "--name", "dup", BASE, "true").stderr
    env_runc = {"PYREG_RUNC": str(home / "no-runc-here")}
    no_runc = pyreg("run", BASE, "true", env=env_runc)
    assert no_runc.returncode == 1 and "runc is not installed" in no_runc.stderr


def test_build_as_non_root_is_refused_with_an_alternative(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(NotPermitted, match=r"build needs root.*podman build"):
        check_privileges()
