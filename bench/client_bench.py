"""Client-side measurements: push and pull one generated image with each client, against
each running registry, timing the whole command (process start included, as a user sees it).

- pyreg:  `pyreg push` of an image loaded into a fresh store (`pyreg load`, untimed), and
          `pyreg pull` into a fresh `$PYREG_HOME` (download, verify, unpack into the graph).
- skopeo: `skopeo copy oci:LAYOUT docker://...` and `docker://... oci:FRESH_DIR`.
- podman: `podman pull` into a fresh `--root` (overlay storage, vfs if overlay fails).
Every run pushes to a new repository and pulls into new local storage.
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench.data import Image
from bench.report import Measurement, Report
from bench.servers import PeerUnavailable, RunningRegistry

COMMAND_TIMEOUT = 600.0


@dataclass(frozen=True)
class ClientPlan:
    image: Image
    workdir: Path
    repeat: int


Timing = tuple[float, float]  # wall seconds, CPU seconds (user + system) of the command


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run(argv: list[str], env: dict[str, str] | None = None) -> Timing:
    wall, cpu, _ = _run_output(argv, env)
    return wall, cpu


def _run_output(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """Run a command to completion: (wall seconds, CPU seconds, stdout); PeerUnavailable if it
    fails. The CPU time is the command's own (and its waited-for children's): unlike wall time,
    it barely depends on what else the machine is running."""
    cpu_before = _children_cpu()
    start = time.perf_counter()
    result = subprocess.run(
        argv,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        env=env,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )
    elapsed = time.perf_counter() - start
    cpu = _children_cpu() - cpu_before
    if result.returncode != 0:
        raise PeerUnavailable(
            f"`{' '.join(argv)}` failed ({result.returncode}): "
            f"{result.stderr.decode(errors='replace').strip()[-500:]}"
        )
    return elapsed, cpu, result.stdout.decode(errors="replace")


def _fresh(parent: Path, name: str) -> Path:
    path = parent / name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def _blob_info_cache() -> Path:
    if os.geteuid() == 0:
        return Path("/var/lib/containers/cache/blob-info-cache-v1.boltdb")
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local/share")
    return Path(data) / "containers/cache/blob-info-cache-v1.boltdb"


def _forget_blob_locations() -> None:
    """containers/image remembers where it pushed each blob and mounts it from there next
    time: an earlier run's push would turn this one into mounts. Forget, so every push
    uploads. (It is only a cache; skopeo and podman rebuild it.)"""
    _blob_info_cache().unlink(missing_ok=True)


class Skopeo:
    name = "skopeo"

    def __init__(self) -> None:
        binary = shutil.which("skopeo")
        if binary is None:
            raise PeerUnavailable("skopeo not found (Debian: apt-get install skopeo)")
        self.binary = binary

    def push(self, plan: ClientPlan, ref: str) -> Timing:
        _forget_blob_locations()
        return _run(
            [
                self.binary,
                "copy",
                "--quiet",
                "--dest-tls-verify=false",
                f"oci:{plan.image.layout}:{plan.image.tag}",
                f"docker://{ref}",
            ]
        )

    def pull(self, plan: ClientPlan, ref: str) -> Timing:
        target = _fresh(plan.workdir, "skopeo-pull")
        try:
            return _run(
                [
                    self.binary,
                    "copy",
                    "--quiet",
                    "--src-tls-verify=false",
                    f"docker://{ref}",
                    f"oci:{target}:{plan.image.tag}",
                ]
            )
        finally:
            shutil.rmtree(target, ignore_errors=True)


class Podman:
    name = "podman"

    def __init__(self) -> None:
        binary = shutil.which("podman")
        if binary is None:
            raise PeerUnavailable("podman not found (Debian: apt-get install podman)")
        self.binary = binary
        self.driver = "overlay"

    def _argv(self, root: Path, ref: str) -> list[str]:
        return [
            self.binary,
            "--root", str(root / "root"),
            "--runroot", str(root / "run"),
            "--storage-driver", self.driver,
            "--events-backend", "file",
            "pull", "--quiet", "--tls-verify=false", ref,
        ]  # fmt: skip

    def pull(self, plan: ClientPlan, ref: str) -> Timing:
        root = _fresh(plan.workdir, "podman")
        try:
            try:
                return _run(self._argv(root, ref))
            except PeerUnavailable:
                if self.driver != "overlay":
                    raise
                # No overlay mounts in this sandbox: vfs copies each layer, slower but works.
                self.driver = "vfs"
                root = _fresh(plan.workdir, "podman")
                return _run(self._argv(root, ref))
        finally:
            _podman_cleanup(self.binary, root, self.driver)


def _podman_cleanup(binary: str, root: Path, driver: str) -> None:
    # overlay leaves mounts behind; let podman undo them before the directory goes
    subprocess.run(
        [binary, "--root", str(root / "root"), "--runroot", str(root / "run"),
         "--storage-driver", driver, "system", "reset", "--force"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        timeout=120, check=False,
    )  # fmt: skip
    shutil.rmtree(root, ignore_errors=True)


class PyregClient:
    name = "pyreg-client"

    def __init__(self) -> None:
        help_text = subprocess.run(
            [sys.executable, "-m", "pyreg", "--help"],
            capture_output=True, text=True, timeout=60, check=False,
        ).stdout  # fmt: skip
        missing = [c for c in ("pull", "push", "load", "tag") if f"    {c}" not in help_text]
        if missing:
            raise PeerUnavailable(f"pyreg client commands not available yet: {missing}")
        self.argv = [sys.executable, "-m", "pyreg"]
        # An installed pyreg has its bytecode compiled (pip does it); a checkout run with
        # PYTHONDONTWRITEBYTECODE would compile ~50 modules on every command and measure that.
        root = Path(__file__).resolve().parents[1]
        packages = [str(root / p) for p in ("pyreg", "puller", "regclient", "ocispec")]
        subprocess.run(
            [sys.executable, "-m", "compileall", "-q", *packages],
            capture_output=True, timeout=300, check=False,
        )  # fmt: skip

    def _env(self, home: Path) -> dict[str, str]:
        return {**os.environ, "PYREG_HOME": str(home), "DOCKER_CONFIG": str(home / "docker")}

    def push(self, plan: ClientPlan, ref: str) -> Timing:
        home = _fresh(plan.workdir, "pyreg-push-home")
        try:
            env = self._env(home)
            # Untimed: put the image in the local store, as skopeo reads it from its layout.
            _, _, out = _run_output([*self.argv, "load", str(plan.image.layout)], env)
            loaded = re.findall(r"^Loaded image: (\S+)$", out, re.MULTILINE)
            if len(loaded) != 1:
                raise PeerUnavailable(f"`pyreg load` printed no single image name: {out!r}")
            _run([*self.argv, "tag", loaded[0], ref], env)
            return _run([*self.argv, "push", "--quiet", ref], env)
        finally:
            shutil.rmtree(home, ignore_errors=True)

    def pull(self, plan: ClientPlan, ref: str) -> Timing:
        home = _fresh(plan.workdir, "pyreg-pull-home")
        try:
            return _run([*self.argv, "pull", "--quiet", ref], self._env(home))
        finally:
            shutil.rmtree(home, ignore_errors=True)


def seed_image(plan: ClientPlan, registry: RunningRegistry, skopeo: Skopeo | None) -> str:
    """Put the image in `registry` once (untimed) for the pull runs; return its reference."""
    ref = f"{registry.host}/bench/source:{plan.image.tag}"
    if skopeo is None:
        raise PeerUnavailable("seeding the pull source needs skopeo")
    skopeo.push(plan, ref)
    return ref


def run_client_bench(
    registries: list[RunningRegistry], names: list[str], plan: ClientPlan, report: Report
) -> None:
    clients: list[Skopeo | Podman | PyregClient] = []
    for factory in (PyregClient, Skopeo, Podman):
        if factory.name not in names:
            continue
        try:
            clients.append(factory())
        except PeerUnavailable as exc:
            report.skip(f"client {factory.name}: {exc}")
    try:  # seeds the pull source even when skopeo itself is not measured
        skopeo: Skopeo | None = Skopeo()
    except PeerUnavailable:
        skopeo = None
    image = plan.image
    size = image.total_layer_bytes + image.config.size + image.manifest.size
    for registry in registries:
        try:
            source = seed_image(plan, registry, skopeo)
        except PeerUnavailable as exc:
            report.skip(f"client bench on {registry.name}: {exc}")
            continue
        for action in ("push", "pull"):
            able = [c for c in clients if action == "pull" or not isinstance(c, Podman)]
            _interleaved(report, plan, registry, able, action, size, source)


def _interleaved(
    report: Report,
    plan: ClientPlan,
    registry: RunningRegistry,
    clients: list[Skopeo | Podman | PyregClient],
    action: str,
    size: int,
    source: str,
) -> None:
    """`plan.repeat` runs of `action` per client, alternating clients run by run, so that a
    change in the machine's load hits every client alike."""
    image = plan.image
    scenario = f"image {action} {size / 1e6:.0f} MB/{len(image.layers)} layers, on {registry.name}"
    seconds: dict[str, list[float]] = {c.name: [] for c in clients}
    cpu: dict[str, list[float]] = {c.name: [] for c in clients}
    failed: set[str] = set()
    for i in range(plan.repeat):
        for client in clients:
            if client.name in failed:
                continue
            try:
                if isinstance(client, Podman) or action == "pull":
                    wall, used = client.pull(plan, source)
                else:
                    ref = f"{registry.host}/bench/{client.name}-push-{i}:{image.tag}"
                    wall, used = client.push(plan, ref)
                seconds[client.name].append(wall)
                cpu[client.name].append(used)
            except (PeerUnavailable, subprocess.TimeoutExpired) as exc:
                failed.add(client.name)
                report.skip(f"{client.name} {action} on {registry.name}: {exc}")
    for client in clients:
        if client.name in failed:
            continue
        m = Measurement(
            "client", scenario, client.name, seconds[client.name], bytes=size, cpu=cpu[client.name]
        )
        report.add(m)
        print(
            f"  {client.name:<13} {scenario:<48} {m.median:8.3f} s {m.rate()}"
            f"  (client CPU {m.cpu_median:.3f} s)",
            flush=True,
        )
