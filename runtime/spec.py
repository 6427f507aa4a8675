"""An OCI runtime spec (`config.json`) from an image config and the `pyreg run` flags.

Pure: no I/O. The defaults are those of `runc spec` and of podman/Docker: PID, mount, IPC, UTS
and network namespaces (no network namespace with `--network host`), Docker's default
capability set, the masked and read-only /proc and /sys paths, and cgroup limits for memory,
pids and CPU quota. runc itself adds the default device allow-list.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Docker's (moby oci/caps/defaults.go) and podman's default capabilities.
DEFAULT_CAPS = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
)

MASKED_PATHS = (
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
)

READONLY_PATHS = (
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
)

CPU_PERIOD = 100_000


@dataclass(frozen=True)
class Mount:
    source: str
    destination: str
    readonly: bool = False


@dataclass
class ProcessSpec:
    """What runs: resolved by the caller from the image config, the flags and the rootfs."""

    args: list[str]
    env: list[str]
    cwd: str = "/"
    uid: int = 0
    gid: int = 0
    additional_gids: list[int] = field(default_factory=list)
    terminal: bool = False


@dataclass
class Limits:
    memory: int | None = None  # bytes
    cpus: float | None = None
    pids: int | None = None


def merge_env(image_env: list[str], extra: list[str]) -> list[str]:
    """Image env, then `-e` values (later wins), PATH defaulted as Docker does."""
    out: dict[str, str] = {}
    for item in [*image_env, *extra]:
        key, sep, value = item.partition("=")
        if key:
            out[key] = value if sep else out.get(key, "")
    out.setdefault("PATH", DEFAULT_PATH)
    return [f"{k}={v}" for k, v in out.items()]


def command_of(config: dict[str, Any], entrypoint: list[str] | None, cmd: list[str]) -> list[str]:
    """Docker's rule: ENTRYPOINT + CMD; a given CMD replaces the image's; `--entrypoint`
    replaces the image's entrypoint and drops its CMD."""
    image_ep = list(config.get("Entrypoint") or [])
    image_cmd = list(config.get("Cmd") or [])
    if entrypoint is not None:
        return [*entrypoint, *cmd]
    return [*image_ep, *(cmd or image_cmd)]


def parse_size(value: str) -> int:
    """`256m`, `1g`, `512k`, `1048576` (Docker's units, powers of 1024)."""
    units = {"b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    text = value.strip().lower()
    if text.endswith("b") and len(text) > 1 and text[-2] in units:
        text = text[:-1]
    factor = 1
    if text and text[-1] in units:
        factor = units[text[-1]]
        text = text[:-1]
    try:
        number = float(text)
    except ValueError:
        raise ValueError(f"invalid size {value!r} (e.g. 256m, 1g)") from None
    if number <= 0:
        raise ValueError(f"invalid size {value!r}: must be positive")
    return int(number * factor)


def runtime_spec(
    process: ProcessSpec,
    *,
    hostname: str,
    network: str = "none",
    readonly: bool = False,
    mounts: list[Mount] | None = None,
    limits: Limits | None = None,
    seccomp: dict[str, Any] | None = None,
    rootless: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """The spec; `seccomp` is the `linux.seccomp` filter (runtime.seccomp), None for none.

    `rootless` (the caller's uid, gid): a user namespace mapping that one user to root, as
    `runc spec --rootless` does: no cgroup limits (not delegated), /sys bound from the host
    (sysfs cannot be mounted there), no cgroup mount, devpts without gid=5.
    """
    limits = limits or Limits()
    namespaces = [{"type": t} for t in ("pid", "ipc", "uts", "mount")]
    if network != "host":
        namespaces.append({"type": "network"})
    caps = list(DEFAULT_CAPS)
    user: dict[str, Any] = {"uid": process.uid, "gid": process.gid}
    if process.additional_gids:
        user["additionalGids"] = process.additional_gids
    resources: dict[str, Any] = {"devices": [{"allow": False, "access": "rwm"}]}
    if limits.memory is not None:
        resources["memory"] = {"limit": limits.memory}
    if limits.pids is not None:
        resources["pids"] = {"limit": limits.pids}
    if limits.cpus is not None:
        resources["cpu"] = {"quota": int(limits.cpus * CPU_PERIOD), "period": CPU_PERIOD}
    spec_mounts: list[dict[str, Any]] = [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {
            "destination": "/dev",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
        },
        {
            "destination": "/dev/pts",
            "type": "devpts",
            "source": "devpts",
            "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
        },
        {
            "destination": "/dev/shm",
            "type": "tmpfs",
            "source": "shm",
            "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        },
        {
            "destination": "/dev/mqueue",
            "type": "mqueue",
            "source": "mqueue",
            "options": ["nosuid", "noexec", "nodev"],
        },
        {
            "destination": "/sys",
            "type": "sysfs",
            "source": "sysfs",
            "options": ["nosuid", "noexec", "nodev", "ro"],
        },
        {
            "destination": "/sys/fs/cgroup",
            "type": "cgroup",
            "source": "cgroup",
            "options": ["nosuid", "noexec", "nodev", "relatime", "ro"],
        },
    ]
    if network == "host":
        for name in ("/etc/resolv.conf", "/etc/hosts"):
            spec_mounts.append(
                {
                    "destination": name,
                    "type": "bind",
                    "source": name,
                    "options": ["rbind", "ro", "rprivate"],
                }
            )
    for m in mounts or []:
        options = ["rbind", "rprivate"] + (["ro"] if m.readonly else [])
        spec_mounts.append(
            {"destination": m.destination, "type": "bind", "source": m.source, "options": options}
        )
    linux: dict[str, Any] = {
        "resources": resources,
        "namespaces": namespaces,
        "maskedPaths": list(MASKED_PATHS),
        "readonlyPaths": list(READONLY_PATHS),
    }
    if seccomp is not None:
        linux["seccomp"] = seccomp
    if rootless is not None:
        namespaces.append({"type": "user"})
        linux["uidMappings"] = [{"containerID": 0, "hostID": rootless[0], "size": 1}]
        linux["gidMappings"] = [{"containerID": 0, "hostID": rootless[1], "size": 1}]
        linux.pop("resources")
        spec_mounts = [_rootless_mount(m) for m in spec_mounts if m["type"] != "cgroup"]
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": process.terminal,
            "user": user,
            "args": process.args,
            "env": process.env,
            "cwd": process.cwd,
            "capabilities": {k: caps for k in ("bounding", "effective", "permitted")},
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": readonly},
        "hostname": hostname,
        "mounts": spec_mounts,
        "linux": linux,
    }


def _rootless_mount(mount: dict[str, Any]) -> dict[str, Any]:
    if mount["destination"] == "/sys":
        return {
            "destination": "/sys",
            "type": "none",
            "source": "/sys",
            "options": ["rbind", "nosuid", "noexec", "nodev", "ro"],
        }
    if mount["type"] == "devpts":
        return {**mount, "options": [o for o in mount["options"] if o != "gid=5"]}
    return mount
