"""The same Dockerfile built by `pyreg build` and by the Docker engine (`docker build` on a
dockerd this test starts under a temporary root) gives the same rootfs tree and config."""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.runtime.conftest import BASE, Pyreg
from tests.support.busybox import busybox_image
from tests.support.dockerd import Dockerd
from tests.support.dockerd import dockerd as start_dockerd
from tests.support.images import write_docker_archive

pytestmark = pytest.mark.slow

DOCKERFILE = f"""\
# the legacy builder of docker 20.10 has no --chmod and no RUN --network: not used here
FROM {BASE}
MAINTAINER Jane Doe
ARG VERSION=1.0 PRICE="cost \\$VERSION"
ENV APP=/srv/app MODE="two words" QUOTED="back\\slash \\"q\\" \\$APP"
LABEL org.example.version=$VERSION other="x y" price=$PRICE
WORKDIR $APP
COPY files/ ./
COPY --chown=app:app owned.txt /home/app/
ADD bundle.tar.gz /opt/
RUN mkdir -p /var/lib/demo/sub && ln -s /srv/app/a.txt /link \\
    && echo "$VERSION $MODE" > ran.txt && rm /etc/group && chmod 700 /var/lib/demo
RUN rm -r /opt/pkg/remove-me
EXPOSE 8080 53/udp
VOLUME /data
USER app
STOPSIGNAL SIGINT
HEALTHCHECK --interval=30s --retries=2 CMD cat ran.txt
ONBUILD RUN echo later
SHELL ["/bin/sh", "-e", "-c"]
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["cat ran.txt"]
"""

CONFIG_FIELDS = (
    "Env",
    "Cmd",
    "Entrypoint",
    "WorkingDir",
    "User",
    "Labels",
    "ExposedPorts",
    "Volumes",
    "StopSignal",
    "Healthcheck",
    "OnBuild",
    "Shell",
)


def _context(root: Path) -> Path:
    (root / "files" / "sub").mkdir(parents=True)
    (root / "Dockerfile").write_text(DOCKERFILE)
    (root / "files" / "a.txt").write_text("a\n")
    (root / "files" / "sub" / "b.sh").write_text("#!/bin/sh\n")
    os.chmod(root / "files" / "sub" / "b.sh", 0o755)
    os.chmod(root / "files" / "a.txt", 0o600)
    (root / "owned.txt").write_text("mine\n")
    with tarfile.open(root / "bundle.tar.gz", "w:gz") as tf:
        for name, data in (("pkg/bin/tool", b"tool"), ("pkg/remove-me/x", b"x")):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755
            tf.addfile(info, io.BytesIO(data))
    return root


def _tree(root: Path) -> dict[str, tuple[Any, ...]]:
    out: dict[str, tuple[Any, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            digest = None
            if stat.S_ISREG(st.st_mode):
                digest = hashlib.sha256(Path(p).read_bytes()).hexdigest()
            link = os.readlink(p) if stat.S_ISLNK(st.st_mode) else None
            out[os.path.relpath(p, root)] = (
                stat.filemode(st.st_mode),
                st.st_uid,
                st.st_gid,
                digest,
                link,
            )
    return out


@pytest.fixture
def dockerd() -> Iterator[Dockerd]:
    with start_dockerd() as engine:
        yield engine


def test_same_rootfs_and_config_as_docker_build(
    pyreg: Pyreg, tmp_path: Path, dockerd: Dockerd
) -> None:
    ctx = _context(tmp_path / "ctx")
    pyreg("build", "-t", "localhost/cmp:pyreg", str(ctx), check=True)

    archive = tmp_path / "base.tar"
    write_docker_archive(archive, {BASE: busybox_image()})
    dockerd.docker("load", "-i", str(archive))
    dockerd.docker("build", "--network", "none", "-t", "localhost/cmp:docker", str(ctx))
    dockerd.docker("save", "-o", str(tmp_path / "docker.tar"), "localhost/cmp:docker")
    pyreg("load", str(tmp_path / "docker.tar"), check=True)

    trees = {}
    for tag in ("pyreg", "docker"):
        out = tmp_path / f"rootfs-{tag}"
        pyreg("unpack", f"localhost/cmp:{tag}", str(out), check=True)
        trees[tag] = _tree(out)
    tree = trees["docker"]
    assert tree["link"][4] == "/srv/app/a.txt"
    assert tree["srv/app/a.txt"][0] == "-rw-------"
    assert tree["home/app/owned.txt"][1:3] == (1000, 1000)
    assert tree["var/lib/demo"][0] == "drwx------"
    assert "opt/pkg/bin/tool" in tree and "srv/app/ran.txt" in tree
    assert "etc/group" not in tree and "opt/pkg/remove-me" not in tree
    # names, modes, owners, contents, symlinks
    assert trees["pyreg"] == trees["docker"]

    configs = {}
    for tag in ("pyreg", "docker"):
        info = json.loads(pyreg("inspect", f"localhost/cmp:{tag}", check=True).stdout)
        configs[tag] = info["config"]
    for key in CONFIG_FIELDS:
        assert configs["pyreg"]["config"].get(key) == configs["docker"]["config"].get(key), key
    assert configs["pyreg"].get("author") == configs["docker"].get("author")
    assert configs["pyreg"]["os"] == configs["docker"]["os"]
    assert configs["pyreg"]["architecture"] == configs["docker"]["architecture"]
    assert configs["docker"]["config"]["Healthcheck"]["Retries"] == 2
