"""The pull-through cache: `pyreg pull` of one image, timed as a user sees it (whole command).

- first pull through the cache vs a direct pull from the upstream (the reference registry):
  the cache streams each blob to the client while it stores and verifies it, so the target is
  a ratio close to 1 (the issue asks for at most 1.2);
- a cached pull vs a pull of the same image pushed to an ordinary repository of the same
  `pyreg serve`: what the cache adds on a hit (a freshness record, a link check), target ~1.

Each run gets a fresh mirror storage, so every "first pull" is a real miss. Runs alternate
between the compared pulls, so load changes on the machine hit both alike.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from bench.client_bench import ClientPlan, PyregClient, Skopeo, seed_image
from bench.report import Measurement, Report
from bench.servers import PeerUnavailable, RunningRegistry, _spawn, _wait_ready, free_port

SUBJECT = "through-cache"  # the peer the table's ratios are computed for (bench/report.py)


def start_mirror(
    workdir: Path, upstream: RunningRegistry, extra_args: list[str], timeout: float = 30.0
) -> RunningRegistry:
    """`pyreg serve` mirroring `upstream` under the local namespace `up/`, fresh storage."""
    storage = workdir / "mirror-storage"
    shutil.rmtree(storage, ignore_errors=True)
    storage.mkdir(parents=True)
    config = workdir / "mirror-config.yaml"
    upstreams = [{"name": "up", "url": f"http://{upstream.host}", "namespace": "up"}]
    config.write_text(yaml.safe_dump({"proxy": {"upstreams": upstreams}}))
    port = free_port()
    argv = [
        sys.executable, "-m", "pyreg", "serve", "--host", "127.0.0.1", "--port", str(port),
        "--storage", f"file://{storage}", "--config", str(config), *extra_args,
    ]  # fmt: skip
    mirror = _spawn("pyreg-mirror", argv, workdir, f"127.0.0.1:{port}")
    _wait_ready(mirror, timeout)
    return mirror


def run_proxy_bench(
    upstream: RunningRegistry, plan: ClientPlan, pyreg_args: list[str], report: Report
) -> None:
    try:
        client, skopeo = PyregClient(), Skopeo()
        source = seed_image(plan, upstream, skopeo)  # upstream/bench/source:TAG
    except PeerUnavailable as exc:
        report.skip(f"proxy bench: {exc}")
        return
    image = plan.image
    size = image.total_layer_bytes + image.config.size + image.manifest.size
    first = f"first pull {size / 1e6:.0f} MB, cache vs direct"
    cached = f"cached pull {size / 1e6:.0f} MB, cache vs local"
    times: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for _ in range(plan.repeat):
        mirror = start_mirror(plan.workdir, upstream, pyreg_args)
        try:
            through = f"{mirror.host}/up/{source.split('/', 1)[1]}"
            local = f"{mirror.host}/bench/local:{image.tag}"
            # untimed: the same image as an ordinary repository of the mirror
            subprocess.run(
                [skopeo.binary, "copy", "--src-tls-verify=false", "--dest-tls-verify=false",
                 f"docker://{source}", f"docker://{local}"],
                check=True, capture_output=True, timeout=600,
            )  # fmt: skip
            times.setdefault((first, "upstream-direct"), []).append(client.pull(plan, source))
            times.setdefault((first, SUBJECT), []).append(client.pull(plan, through))
            times.setdefault((cached, SUBJECT), []).append(client.pull(plan, through))
            times.setdefault((cached, "local-repo"), []).append(client.pull(plan, local))
        except (PeerUnavailable, subprocess.SubprocessError) as exc:
            report.skip(f"proxy bench: {exc}")
            return
        finally:
            mirror.stop()
    for (scenario, peer), runs in times.items():
        m = Measurement(
            "proxy", scenario, peer, [w for w, _ in runs], bytes=size, cpu=[c for _, c in runs]
        )
        report.add(m)
    for scenario, other in ((first, "upstream-direct"), (cached, "local-repo")):
        ours, theirs = (
            report.find("proxy", scenario, SUBJECT),
            report.find("proxy", scenario, other),
        )
        if ours is not None and theirs is not None and theirs.median > 0:
            print(f"  {scenario}: ratio {ours.median / theirs.median:.2f}", flush=True)
