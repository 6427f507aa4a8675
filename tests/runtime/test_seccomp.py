"""runtime.seccomp: Docker's profile format resolved into the runtime spec's filter."""

from __future__ import annotations

from typing import Any

import pytest

from runtime.seccomp import default_seccomp, profile_path, to_oci
from runtime.spec import DEFAULT_CAPS

PROFILE: dict[str, Any] = {
    "defaultAction": "SCMP_ACT_ERRNO",
    "defaultErrnoRet": 38,
    "archMap": [
        {"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]},
        {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]},
    ],
    "syscalls": [
        {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW", "args": []},
        {"names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["amd64"]}},
        {"names": ["bpf"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
        {
            "names": ["bpf"],
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": 1,
            "excludes": {"caps": ["CAP_SYS_ADMIN"]},
        },
        {"names": ["future"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "99.0"}},
        {
            "names": ["personality"],
            "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": 8, "valueTwo": 0, "op": "SCMP_CMP_EQ"}],
        },
    ],
}


def _names(seccomp: dict[str, Any]) -> list[tuple[str, str]]:
    return [(n, r["action"]) for r in seccomp["syscalls"] for n in r["names"]]


def test_conditions_resolve_for_the_arch_and_capabilities() -> None:
    amd64 = to_oci(PROFILE, ["CAP_CHOWN"], machine="x86_64")
    assert amd64["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"]
    assert amd64["defaultAction"] == "SCMP_ACT_ERRNO" and amd64["defaultErrnoRet"] == 38
    assert _names(amd64) == [
        ("read", "SCMP_ACT_ALLOW"),
        ("write", "SCMP_ACT_ALLOW"),
        ("arch_prctl", "SCMP_ACT_ALLOW"),
        ("bpf", "SCMP_ACT_ERRNO"),
        ("personality", "SCMP_ACT_ALLOW"),
    ]
    bpf = next(r for r in amd64["syscalls"] if r["names"] == ["bpf"])
    assert bpf["errnoRet"] == 1
    assert amd64["syscalls"][-1]["args"][0]["value"] == 8
    arm = to_oci(PROFILE, ["CAP_SYS_ADMIN"], machine="aarch64")
    assert arm["architectures"] == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    assert ("arch_prctl", "SCMP_ACT_ALLOW") not in _names(arm)
    assert ("bpf", "SCMP_ACT_ALLOW") in _names(arm) and ("bpf", "SCMP_ACT_ERRNO") not in _names(arm)


def test_the_hosts_profile_gives_dockers_default_filter() -> None:
    if profile_path() is None:
        pytest.skip("no seccomp profile on this host (containers-common, installed with podman)")
    seccomp = default_seccomp(list(DEFAULT_CAPS))
    assert seccomp is not None and seccomp["defaultAction"] == "SCMP_ACT_ERRNO"
    allowed = {n for n, action in _names(seccomp) if action == "SCMP_ACT_ALLOW"}
    assert {"read", "write", "execve", "clone"} <= allowed
    assert "kexec_load" not in allowed and "bpf" not in allowed  # no CAP_SYS_ADMIN here
