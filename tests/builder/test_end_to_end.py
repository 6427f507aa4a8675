"""The issue's everyday sequence against a real `pyreg serve`: pull, images, run, ps -a,
build, push; then the pushed image is pulled into a fresh store (and read by skopeo) and run."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from puller.store import GraphStore
from tests.runtime.conftest import Pyreg
from tests.support.busybox import busybox_image
from tests.support.images import register_image
from tests.support.server import RegistryServer

pytestmark = pytest.mark.slow

APP_DOCKERFILE = """\
FROM {base}
LABEL team=app
WORKDIR /srv
COPY greeting.txt .
RUN echo "built on $(cat greeting.txt)" > /srv/built.txt
CMD ["cat", "/srv/built.txt"]
"""


def test_pull_images_run_ps_build_push(home: Path, tmp_path: Path) -> None:
    with RegistryServer(f"file://{tmp_path / 'storage'}") as server:
        host = server.url.removeprefix("http://")
        base = f"{host}/library/base:v1"
        seed = Pyreg(tmp_path / "seed")
        register_image(GraphStore(seed.home), busybox_image(), base)
        seed("push", base, check=True)

        pyreg = Pyreg(home)
        pyreg("pull", base, check=True)
        assert f"{host}/library/base" in pyreg("images", check=True).stdout
        hello = pyreg("run", base, "echo", "hello word", check=True)
        assert hello.stdout == "hello word\n"
        ps = pyreg("ps", "-a", check=True).stdout
        assert base in ps and '"echo hello word"' in ps and "Exited (0)" in ps

        app = tmp_path / "app"
        app.mkdir()
        (app / "Dockerfile").write_text(APP_DOCKERFILE.format(base=base))
        (app / "greeting.txt").write_text("pyreg")
        pyreg("build", "-t", f"{host}/team/app:v1", str(app), check=True)
        pushed = pyreg("push", f"{host}/team/app:v1", check=True)
        assert "digest: sha256:" in pushed.stdout

        fresh = Pyreg(tmp_path / "fresh")
        fresh("pull", f"{host}/team/app:v1", check=True)
        assert fresh("run", "--rm", f"{host}/team/app:v1").stdout == "built on pyreg\n"
        # FROM an image the store does not have yet: pulled, as docker build does
        other = Pyreg(tmp_path / "other")
        other("build", "-t", "localhost/again:v1", str(app), check=True)
        assert f"{host}/library/base  v1" in other("images").stdout

        if shutil.which("skopeo"):
            done = subprocess.run(
                ["skopeo", "inspect", "--tls-verify=false", f"docker://{host}/team/app:v1"],
                capture_output=True,
                text=True,
                timeout=120,
                check=True,
            )
            info = json.loads(done.stdout)
            assert info["Labels"] == {"team": "app"} and len(info["Layers"]) == 4
            layout = tmp_path / "layout"
            pyreg("save", "-o", str(layout), f"{host}/team/app:v1", check=True)
            saved = subprocess.run(
                ["skopeo", "inspect", f"oci:{layout}:v1"],
                capture_output=True,
                text=True,
                timeout=120,
                check=True,
            )
            assert json.loads(saved.stdout)["Layers"] == info["Layers"]
