"""runtime.spec: the OCI runtime spec built from an image config and the run flags."""

from __future__ import annotations

import pytest

from runtime.spec import (
    DEFAULT_CAPS,
    DEFAULT_PATH,
    Limits,
    Mount,
    ProcessSpec,
    command_of,
    merge_env,
    parse_size,
    runtime_spec,
)


def test_command_follows_dockers_entrypoint_and_cmd_rules() -> None:
    cfg = {"Entrypoint": ["/ep"], "Cmd": ["a", "b"]}
    assert command_of(cfg, None, []) == ["/ep", "a", "b"]
    assert command_of(cfg, None, ["x"]) == ["/ep", "x"]
    # --entrypoint drops the image's CMD
    assert command_of(cfg, ["/other"], []) == ["/other"]
    assert command_of({"Cmd": ["sh"]}, None, ["echo", "hi"]) == ["echo", "hi"]
    assert command_of({}, None, []) == []


def test_env_merges_later_wins_and_defaults_path() -> None:
    env = merge_env(["A=1", "B=2"], ["B=3", "C=4"])
    assert env == ["A=1", "B=3", "C=4", f"PATH={DEFAULT_PATH}"]
    assert merge_env(["PATH=/x"], []) == ["PATH=/x"]


@pytest.mark.parametrize(
    ("text", "value"),
    [("256m", 256 << 20), ("1g", 1 << 30), ("512k", 512 << 10), ("1000", 1000), ("64mb", 64 << 20)],
)
def test_parse_size(text: str, value: int) -> None:
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["", "abc", "-1m", "0"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_size(text)


def test_default_spec_isolates_and_limits() -> None:
    spec = runtime_spec(
        ProcessSpec(["sh"], ["PATH=/bin"], "/w", 1000, 1000, [50]),
        hostname="h",
        limits=Limits(memory=64 << 20, cpus=0.5, pids=10),
    )
    linux = spec["linux"]
    assert {n["type"] for n in linux["namespaces"]} == {"pid", "ipc", "uts", "mount", "network"}
    assert linux["resources"]["memory"] == {"limit": 64 << 20}
    assert linux["resources"]["pids"] == {"limit": 10}
    assert linux["resources"]["cpu"] == {"quota": 50_000, "period": 100_000}
    assert "/proc/kcore" in linux["maskedPaths"] and "/proc/sys" in linux["readonlyPaths"]
    process = spec["process"]
    assert process["user"] == {"uid": 1000, "gid": 1000, "additionalGids": [50]}
    assert process["cwd"] == "/w" and process["args"] == ["sh"]
    assert process["capabilities"]["bounding"] == list(DEFAULT_CAPS)
    assert "CAP_SYS_ADMIN" not in process["capabilities"]["effective"]
    assert spec["root"] == {"path": "rootfs", "readonly": False}
    assert spec["hostname"] == "h"


def test_host_network_shares_the_network_namespace() -> None:
    spec = runtime_spec(ProcessSpec(["sh"], []), hostname="h", network="host")
    assert "network" not in {n["type"] for n in spec["linux"]["namespaces"]}
    assert "/etc/resolv.conf" in [m["destination"] for m in spec["mounts"]]


def test_volumes_and_read_only_root() -> None:
    spec = runtime_spec(
        ProcessSpec(["sh"], []),
        hostname="h",
        readonly=True,
        mounts=[Mount("/src", "/data", readonly=True), Mount("/rw", "/rw")],
    )
    binds = {m["destination"]: m for m in spec["mounts"] if m["type"] == "bind"}
    assert "ro" in binds["/data"]["options"] and binds["/data"]["source"] == "/src"
    assert "ro" not in binds["/rw"]["options"]
    assert spec["root"]["readonly"] is True
    assert "memory" not in spec["linux"]["resources"]


def test_rootless_maps_the_user_and_drops_what_needs_root() -> None:
    spec = runtime_spec(
        ProcessSpec(["sh"], []), hostname="h", limits=Limits(memory=1 << 20), rootless=(1000, 100)
    )
    linux = spec["linux"]
    assert "user" in {n["type"] for n in linux["namespaces"]}
    assert linux["uidMappings"] == [{"containerID": 0, "hostID": 1000, "size": 1}]
    assert linux["gidMappings"] == [{"containerID": 0, "hostID": 100, "size": 1}]
    assert "resources" not in linux
    mounts = {m["destination"]: m for m in spec["mounts"]}
    assert "/sys/fs/cgroup" not in mounts
    assert mounts["/sys"]["type"] == "none" and "rbind" in mounts["/sys"]["options"]
    assert "gid=5" not in mounts["/dev/pts"]["options"]
