"""runtime.cgroups: the OOM verdict read from cgroup v1 and v2 files (trees laid out here as
the kernel lays them out; the real v1/v2 hierarchy is exercised by test_run's OOM test)."""

from __future__ import annotations

from pathlib import Path

from runtime import cgroups


def _own(controller: str | None) -> str:
    return cgroups._own_path(controller).lstrip("/")


def test_v2_reads_memory_events(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("cpu memory pids\n")
    d = tmp_path / _own(None) / "c1"
    d.mkdir(parents=True)
    (d / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    assert cgroups.version(tmp_path) == 2
    assert cgroups.container_dir("c1", tmp_path) == d
    assert cgroups.oom_killed("c1", tmp_path)
    (d / "memory.events").write_text("low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n")
    assert not cgroups.oom_killed("c1", tmp_path)


def test_v1_reads_oom_control(tmp_path: Path) -> None:
    d = tmp_path / "memory" / _own("memory") / "c1"
    d.mkdir(parents=True)
    (d / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
    assert cgroups.version(tmp_path) == 1
    assert cgroups.oom_killed("c1", tmp_path)
    assert not cgroups.oom_killed("gone", tmp_path)  # no cgroup: no verdict
