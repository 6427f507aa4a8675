"""The default seccomp filter, as Docker and podman apply it, in OCI runtime spec form.

The profile is the one podman ships (containers-common's `/usr/share/containers/seccomp.json`,
Docker's default profile in the same format), read rather than copied into pyreg. That format
has per-architecture and per-capability conditions (`includes`/`excludes`), which are
resolved here for this host and the container's capabilities, as podman and Docker do when
they generate a spec. Without a profile on the host the container runs without a filter,
which is said once.
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

PROFILE_PATHS = (
    "/usr/share/containers/seccomp.json",
    "/etc/containers/seccomp.json",
)

# Go's GOARCH (the profile's `arches`) and libseccomp's native arch, per machine
_ARCHES = {
    "x86_64": ("amd64", "SCMP_ARCH_X86_64"),
    "aarch64": ("arm64", "SCMP_ARCH_AARCH64"),
    "armv7l": ("arm", "SCMP_ARCH_ARM"),
    "ppc64le": ("ppc64le", "SCMP_ARCH_PPC64LE"),
    "s390x": ("s390x", "SCMP_ARCH_S390X"),
    "riscv64": ("riscv64", "SCMP_ARCH_RISCV64"),
}


def profile_path() -> Path | None:
    configured = os.environ.get("PYREG_SECCOMP_PROFILE")
    for candidate in ([configured] if configured else []) + list(PROFILE_PATHS):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def _kernel() -> tuple[int, int]:
    parts = platform.release().split(".")
    try:
        return int(parts[0]), int("".join(c for c in parts[1] if c.isdigit()) or 0)
    except (IndexError, ValueError):
        return (0, 0)


def _min_kernel_ok(value: str | None) -> bool:
    if not value:
        return True
    major, _, minor = value.partition(".")
    try:
        return _kernel() >= (int(major), int(minor or 0))
    except ValueError:
        return True


def to_oci(profile: dict[str, Any], caps: list[str], machine: str | None = None) -> dict[str, Any]:
    """The spec's `linux.seccomp` for this architecture and these capabilities."""
    goarch, native = _ARCHES.get(machine or platform.machine(), ("", ""))
    architectures: list[str] = []
    for entry in profile.get("archMap") or []:
        if entry.get("architecture") == native:
            architectures = [native, *entry.get("subArchitectures", [])]
    syscalls: list[dict[str, Any]] = []
    held = set(caps)
    for rule in profile.get("syscalls") or []:
        includes = rule.get("includes") or {}
        excludes = rule.get("excludes") or {}
        if includes.get("arches") and goarch not in includes["arches"]:
            continue
        if excludes.get("arches") and goarch in excludes["arches"]:
            continue
        if includes.get("caps") and not set(includes["caps"]) <= held:
            continue
        if excludes.get("caps") and set(excludes["caps"]) & held:
            continue
        if not _min_kernel_ok(includes.get("minKernel")):
            continue
        out: dict[str, Any] = {"names": rule.get("names") or [], "action": rule["action"]}
        if rule.get("args"):
            out["args"] = rule["args"]
        if rule.get("errnoRet") is not None:
            out["errnoRet"] = rule["errnoRet"]
        syscalls.append(out)
    seccomp: dict[str, Any] = {
        "defaultAction": profile.get("defaultAction", "SCMP_ACT_ERRNO"),
        "architectures": architectures,
        "syscalls": syscalls,
    }
    if profile.get("defaultErrnoRet") is not None:
        seccomp["defaultErrnoRet"] = profile["defaultErrnoRet"]
    return seccomp


def default_seccomp(caps: list[str]) -> dict[str, Any] | None:
    path = profile_path()
    if path is None:
        return None
    try:
        profile = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return to_oci(profile, caps) if isinstance(profile, dict) else None
