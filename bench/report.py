"""Results: medians, the side-by-side table, and the JSON file."""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

MB = 1_000_000  # throughput in decimal MB/s, as network tools report it


@dataclass
class Measurement:
    group: str  # "server" (registries under one client) or "client" (clients, one registry)
    scenario: str
    peer: str  # "pyreg", "reference", "pyreg-client", "skopeo", "podman"
    seconds: list[float]
    bytes: int = 0  # per run, for MB/s
    ops: int = 0  # per run, for ops/s
    # CPU seconds per run: the server's process tree (group "server") or the client command
    # (group "client")
    cpu: list[float] = field(default_factory=list)
    # storage requests per operation (S3 requests counted at the gateway), when measured
    storage_requests: float | None = None
    # CPU seconds per run of the load generator (group "server"): its worker process, or the
    # bench process itself for the in-process httpx client
    client_cpu: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpu) if self.cpu else 0.0

    @property
    def client_cpu_median(self) -> float:
        return statistics.median(self.client_cpu) if self.client_cpu else 0.0

    def rate(self) -> str:
        if self.bytes:
            return f"{self.bytes / MB / self.median:8.1f} MB/s"
        if self.ops:
            return f"{self.ops / self.median:8.1f} op/s"
        return ""


_VERSION_COMMANDS = {
    "pyreg_commit": ["git", "-C", str(Path(__file__).resolve().parent), "rev-parse", "HEAD"],
    "docker-registry": ["docker-registry", "--version"],
    "skopeo": ["skopeo", "--version"],
    "podman": ["podman", "--version"],
}


def _versions() -> dict[str, str]:
    """What was measured: the commit and each peer's version, or why it is unknown."""
    found: dict[str, str] = {}
    for name, argv in _VERSION_COMMANDS.items():
        if shutil.which(argv[0]) is None:
            found[name] = "not installed"
            continue
        result = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
        found[name] = (result.stdout.strip() or result.stderr.strip()).splitlines()[0][:200]
    return found


@dataclass
class MemoryReading:
    peer: str
    idle_mib: float
    peak_mib: float
    during: str


@dataclass
class Report:
    options: dict[str, object]
    measurements: list[Measurement] = field(default_factory=list)
    memory: list[MemoryReading] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.time)
    #: the machine's 1/5/15-minute load averages when the run started (it is shared)
    load_average: tuple[float, ...] = field(default_factory=os.getloadavg)

    def add(self, measurement: Measurement) -> None:
        self.measurements.append(measurement)

    def skip(self, message: str) -> None:
        print(f"SKIP: {message}", flush=True)
        self.skipped.append(message)

    def find(self, group: str, scenario: str, peer: str) -> Measurement | None:
        for m in self.measurements:
            if (m.group, m.scenario, m.peer) == (group, scenario, peer):
                return m
        return None

    def to_json(self) -> dict[str, object]:
        return {
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started)),
            "machine": {
                "cpus": psutil.cpu_count(),
                "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
                "platform": platform.platform(),
                "python": platform.python_version(),
            },
            "versions": _versions(),
            "options": self.options,
            "load_average": {"start": self.load_average, "end": os.getloadavg()},
            "measurements": [{**asdict(m), "median": m.median} for m in self.measurements],
            "memory": [asdict(r) for r in self.memory],
            "skipped": self.skipped,
        }

    def write_json(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(self.started))
        path = directory / f"bench-{stamp}.json"
        path.write_text(json.dumps(self.to_json(), indent=2))
        return path

    def table(self) -> str:
        """One line per (scenario, peer): median seconds, rate, and the ratio of pyreg's
        time to each other peer's (below 1: pyreg is faster)."""
        lines = []
        subject = {"server": "pyreg", "client": "pyreg-client", "proxy": "through-cache"}
        groups = [("server", "Server side"), ("client", "Client side")]
        groups.append(("proxy", "Pull-through cache, `pyreg pull`"))
        for group, title in groups:
            rows = [m for m in self.measurements if m.group == group]
            if not rows:
                continue
            whose = "server's" if group == "server" else "client command's"
            if group == "server":
                whose += "; load gen CPU s = the load generator's"
            lines.append(
                f"\n{title} (median of runs; ratio = {subject[group]} / peer; CPU s = the {whose}"
                " user+system CPU time)"
            )
            cpu_head = f" {'CPU s':>9} {'ratio':>7}"
            if group == "server":
                cpu_head += f" {'load gen CPU s':>14}"
            lines.append(
                f"{'scenario':<38} {'peer':<22} {'seconds':>9} {'rate':>14} {'ratio':>7}{cpu_head}"
            )
            scenarios = list(dict.fromkeys(m.scenario for m in rows))
            for scenario in scenarios:
                ours = self.find(group, scenario, subject[group])
                for m in (r for r in rows if r.scenario == scenario):
                    ratio = cpu_ratio = ""
                    if ours is not None and m is not ours and m.median > 0:
                        ratio = f"{ours.median / m.median:7.2f}"
                    if ours is not None and m is not ours and m.cpu_median > 0:
                        cpu_ratio = f"{ours.cpu_median / m.cpu_median:7.2f}"
                    cpu = f" {m.cpu_median:9.3f} {cpu_ratio:>7}"
                    if group == "server":
                        cpu += f" {m.client_cpu_median:14.3f}" if m.client_cpu else " " * 15
                    per_op = ""
                    if m.storage_requests is not None:
                        per_op = f"  S3 req/op {m.storage_requests:.1f}"
                    lines.append(
                        f"{scenario:<38} {m.peer:<22} {m.median:9.3f} {m.rate():>14} {ratio:>7}"
                        f"{cpu}{per_op}"
                    )
        if self.memory:
            lines.append("\nServer memory (RSS of the registry's process tree)")
            lines.append(f"{'peer':<22} {'idle MiB':>9} {'peak MiB':>9}  during")
            for r in self.memory:
                lines.append(f"{r.peer:<22} {r.idle_mib:9.1f} {r.peak_mib:9.1f}  {r.during}")
        if self.skipped:
            lines.append("\nSkipped:")
            lines.extend(f"  - {s}" for s in self.skipped)
        return "\n".join(lines)
