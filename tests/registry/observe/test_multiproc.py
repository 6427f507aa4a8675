"""The metrics directory: made and removed by `metrics_directory`, an operator's own kept; a
stopping worker's live gauges leave the merged view (`mark_dead`). Run in a fresh interpreter,
since prometheus_client picks multiprocess mode when it is first imported."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.support.server import REPO_ROOT

SCRIPT = textwrap.dedent(
    """
    import os, sys
    from registry.observe.multiproc import MULTIPROC_ENV, mark_dead, metrics_directory

    with metrics_directory() as path:
        print("DIR", path, os.path.isdir(path), os.environ[MULTIPROC_ENV] == path)
        from registry.observe import metrics

        metrics.UPLOADS_IN_PROGRESS.inc()
        metrics.BLOBS_PUSHED.inc()
        def value(name):
            registry = metrics.scrape_registry()
            return registry.get_sample_value(name) or 0.0
        print("LIVE", value("pyreg_uploads_in_progress"), value("pyreg_blobs_pushed_total"))
        mark_dead()
        print("DEAD", value("pyreg_uploads_in_progress"), value("pyreg_blobs_pushed_total"))
        print("BUILD", metrics.scrape_registry().get_sample_value(
            "pyreg_build_info", {"version": metrics.__version__,
                                 "python": metrics.platform.python_version()}))
    print("GONE", os.path.exists(path), MULTIPROC_ENV in os.environ)
    """
)


def _run(env_dir: str | None) -> dict[str, list[str]]:
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    if env_dir is not None:
        env["PROMETHEUS_MULTIPROC_DIR"] = env_dir
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=REPO_ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return {line.split()[0]: line.split()[1:] for line in done.stdout.splitlines()}


def test_directory_is_made_shared_and_removed() -> None:
    out = _run(None)
    assert out["DIR"][1:] == ["True", "True"]
    assert out["LIVE"] == ["1.0", "1.0"]
    assert out["DEAD"] == ["0.0", "1.0"]  # the live gauge leaves, the counter stays
    assert out["BUILD"] == ["1"]
    assert out["GONE"] == ["False", "False"]


def test_an_operators_directory_is_kept(tmp_path: Path) -> None:
    given = tmp_path / "prom"
    out = _run(str(given))
    assert out["DIR"] == [str(given), "True", "True"]
    assert out["GONE"][0] == "True" and given.is_dir()


FORK_SCRIPT = textwrap.dedent(
    """
    import os
    from registry.observe import metrics

    metrics.BLOBS_PUSHED.inc()
    child = os.fork()
    if child == 0:
        metrics.BLOBS_PUSHED.inc()
        os._exit(0)
    os.waitpid(child, 0)
    metrics.BLOBS_PUSHED.inc()
    total = metrics.scrape_registry().get_sample_value("pyreg_blobs_pushed_total")
    print("PIDS", os.getpid(), child)
    print("TOTAL", total)
    """
)


def test_a_forked_child_writes_its_own_files(tmp_path: Path) -> None:
    # the pid is cached (no getpid per update), so the fork must still be noticed: a child
    # writing into its parent's file would lose counts
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", FORK_SCRIPT], cwd=REPO_ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    out = {line.split()[0]: line.split()[1:] for line in done.stdout.splitlines()}
    parent, child = out["PIDS"]
    assert (tmp_path / f"counter_{parent}.db").is_file()
    assert (tmp_path / f"counter_{child}.db").is_file()
    assert out["TOTAL"] == ["3.0"]
