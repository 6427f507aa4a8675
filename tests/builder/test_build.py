"""`pyreg build` end to end on runc: every instruction, multi-stage, cache, refusals."""

from __future__ import annotations

import io
import json
import os
import stat
import tarfile
from pathlib import Path
from typing import Any

import pytest

from tests.runtime.conftest import BASE, Pyreg

EVERYTHING = """\
# every instruction once (or more)
ARG BASE_IMAGE=localhost/base:v1
FROM ${BASE_IMAGE} AS base
MAINTAINER Jane Doe <jane@example.com>
ARG VERSION=0.1
ARG FLAVOUR
ENV APP_HOME=/srv/app \\
    VERSION=${VERSION}
ENV LEGACY form with spaces
LABEL org.opencontainers.image.title="demo app" flavour=${FLAVOUR:-plain}
WORKDIR $APP_HOME
WORKDIR data
COPY *.txt ./
COPY --chown=app:app --chmod=640 conf/ /etc/demo/
ADD archive.tar.gz bzip.tar.bz2 xz.tar.xz /opt/
ADD plain.bin /opt/plain.bin
RUN ["/bin/sh", "-c", "echo exec-form > /exec.txt"]
RUN echo "$VERSION $FLAVOUR $(pwd)" > /run.txt && rm /etc/group && ls /sys/class/net > /net.txt
SHELL ["/bin/sh", "-e", "-c"]
RUN echo shell-changed > /shell.txt
EXPOSE 8080 53/udp
VOLUME ["/var/lib/demo"]
USER app
STOPSIGNAL SIGINT
HEALTHCHECK --interval=30s --retries=3 CMD ["cat", "/run.txt"]
ONBUILD RUN echo triggered
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["cat /run.txt"]
"""


def _tar(path: Path, compression: str, files: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:" + compression) as tf:  # type: ignore[call-overload]
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tf.addfile(info, io.BytesIO(data))


def _context(root: Path, dockerfile: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "Dockerfile").write_text(dockerfile)
    (root / "one.txt").write_text("one\n")
    (root / "two.txt").write_text("two\n")
    (root / "ignored.txt").write_text("must not be copied\n")
    (root / ".dockerignore").write_text("ignored.txt\n")
    (root / "conf").mkdir(exist_ok=True)
    (root / "conf" / "demo.conf").write_text("setting=1\n")
    _tar(root / "archive.tar.gz", "gz", {"from-gz/a": b"gz"})
    _tar(root / "bzip.tar.bz2", "bz2", {"from-bz2": b"bz2"})
    _tar(root / "xz.tar.xz", "xz", {"from-xz": b"xz"})
    (root / "plain.bin").write_bytes(b"\x00binary")
    return root


def _inspect(pyreg: Pyreg, name: str) -> dict[str, Any]:
    info: dict[str, Any] = json.loads(pyreg("inspect", name, check=True).stdout)
    return info


def test_every_instruction(pyreg: Pyreg, tmp_path: Path) -> None:
    ctx = _context(tmp_path / "ctx", EVERYTHING)
    done = pyreg("build", "-t", "localhost/demo:v1", "--build-arg", "FLAVOUR=spicy", str(ctx))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Tagged localhost/demo:v1" in done.stdout
    info = _inspect(pyreg, "localhost/demo:v1")
    config = info["config"]
    c = config["config"]
    assert config["author"] == "Jane Doe <jane@example.com>"
    assert "APP_HOME=/srv/app" in c["Env"] and "VERSION=0.1" in c["Env"]
    assert "LEGACY=form with spaces" in c["Env"]
    assert c["Labels"] == {"org.opencontainers.image.title": "demo app", "flavour": "spicy"}
    assert c["WorkingDir"] == "/srv/app/data"
    assert c["ExposedPorts"] == {"8080/tcp": {}, "53/udp": {}}
    assert c["Volumes"] == {"/var/lib/demo": {}}
    assert c["User"] == "app" and c["StopSignal"] == "SIGINT"
    assert c["Healthcheck"] == {
        "Test": ["CMD", "cat", "/run.txt"],
        "Interval": 30_000_000_000,
        "Retries": 3,
    }
    assert c["OnBuild"] == ["RUN echo triggered"]
    assert c["Shell"] == ["/bin/sh", "-e", "-c"]
    assert c["Entrypoint"] == ["/bin/sh", "-c"] and c["Cmd"] == ["cat /run.txt"]
    # base layer + WORKDIR x2 + COPY x2 + ADD x2 + RUN x3
    assert len(info["manifest"]["layers"]) == 1 + 2 + 2 + 2 + 3
    assert len(config["rootfs"]["diff_ids"]) == len(info["manifest"]["layers"])
    assert sum(not h.get("empty_layer") for h in config["history"]) == len(
        info["manifest"]["layers"]
    )

    out = tmp_path / "rootfs"
    pyreg("unpack", "localhost/demo:v1", str(out), check=True)
    data = out / "srv" / "app" / "data"
    assert sorted(os.listdir(data)) == ["one.txt", "two.txt"]  # .dockerignore honoured
    conf = out / "etc" / "demo" / "demo.conf"
    st = conf.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1000, 1000, 0o640)
    assert (out / "opt" / "from-gz" / "a").read_bytes() == b"gz"
    assert (out / "opt" / "from-bz2").read_bytes() == b"bz2"
    assert (out / "opt" / "from-xz").read_bytes() == b"xz"
    assert (out / "opt" / "plain.bin").read_bytes() == b"\x00binary"
    assert (out / "exec.txt").read_text() == "exec-form\n"
    assert (out / "run.txt").read_text() == "0.1 spicy /srv/app/data\n"
    assert not (out / "etc" / "group").exists()  # deleted by RUN: a whiteout
    assert (out / "net.txt").read_text().split() == ["lo"]  # RUN has no network by default
    assert (out / "shell.txt").read_text() == "shell-changed\n"

    run = pyreg("run", "--rm", "localhost/demo:v1")
    assert run.stdout == "0.1 spicy /srv/app/data\n"


def test_unchanged_rebuild_hits_the_cache_and_no_cache_rebuilds(
    pyreg: Pyreg, tmp_path: Path
) -> None:
    dockerfile = f"FROM {BASE}\nCOPY one.txt /\nRUN head -c 16 /dev/urandom > /random\n"
    ctx = _context(tmp_path / "ctx", dockerfile)
    first = pyreg("build", "-q", "-t", "localhost/c:v1", str(ctx), check=True).stdout.strip()
    again = pyreg("build", "-t", "localhost/c:v1", str(ctx), check=True)
    assert again.stdout.count("--> Using cache") == 2
    assert f"Built {first} " in again.stdout  # the very same image: no step ran
    (ctx / "one.txt").write_text("changed\n")
    changed = pyreg("build", "-t", "localhost/c:v2", str(ctx), check=True)
    assert changed.stdout.count("--> Using cache") == 0  # COPY changed, so RUN below it too
    fresh = pyreg("build", "--no-cache", "-q", "-t", "localhost/c:v3", str(ctx), check=True)
    assert "Using cache" not in fresh.stderr
    layers = [_inspect(pyreg, f"localhost/c:{t}")["manifest"]["layers"] for t in ("v2", "v3")]
    assert layers[0][1] == layers[1][1]  # COPY of the same file: the same layer
    assert layers[0][2] != layers[1][2]  # RUN ran again: new random bytes


def test_multi_stage_target_and_copy_from(pyreg: Pyreg, tmp_path: Path) -> None:
    dockerfile = f"""\
FROM {BASE} AS builder
RUN mkdir /out && echo built > /out/artifact
FROM scratch AS final
COPY --from=builder /out/artifact /artifact
COPY --from={BASE} /bin/busybox /bin/busybox
FROM final AS extra
COPY one.txt /
"""
    ctx = _context(tmp_path / "ctx", dockerfile)
    pyreg("build", "--target", "final", "-t", "localhost/ms:final", str(ctx), check=True)
    out = tmp_path / "final"
    pyreg("unpack", "localhost/ms:final", str(out), check=True)
    assert sorted(os.listdir(out)) == ["artifact", "bin"]
    assert (out / "artifact").read_text() == "built\n"
    info = _inspect(pyreg, "localhost/ms:final")
    assert len(info["manifest"]["layers"]) == 2
    pyreg("build", "-t", "localhost/ms:extra", str(ctx), check=True)
    assert len(_inspect(pyreg, "localhost/ms:extra")["manifest"]["layers"]) == 3
    missing = pyreg("build", "--target", "nope", str(ctx))
    assert missing.returncode == 1 and "target stage 'nope'" in missing.stderr


@pytest.mark.parametrize(
    ("line", "setup"),
    [("COPY ../outside /x", None), ("COPY escape /x", "symlink"), ("ADD ../outside /x", None)],
)
def test_copy_that_leaves_the_context_is_refused(
    pyreg: Pyreg, tmp_path: Path, line: str, setup: str | None
) -> None:
    ctx = _context(tmp_path / "ctx", f"FROM {BASE}\n{line}\n")
    (tmp_path / "outside").write_text("host secret")
    if setup == "symlink":
        os.symlink(str(tmp_path / "outside"), ctx / "escape")
    done = pyreg("build", "-t", "localhost/leak:v1", str(ctx))
    assert done.returncode == 1
    assert "Dockerfile:2:" in done.stderr and "outside the build context" in done.stderr
    assert "localhost/leak:v1" not in pyreg("images").stdout


def _escaping_tar(path: Path, outside: Path, escape: str) -> None:
    """A way out of the image: a symlink to `outside` and a member below it, or a member whose
    name climbs out with `..`."""
    name = "../" * 40 + str(outside).lstrip("/") + "/pwned"
    with tarfile.open(path, "w") as tf:
        if escape == "symlink":
            link = tarfile.TarInfo("out")
            link.type, link.linkname = tarfile.SYMTYPE, str(outside)
            tf.addfile(link)
            name = "out/pwned"
        info = tarfile.TarInfo(name)
        info.size = 5
        tf.addfile(info, io.BytesIO(b"pwned"))


def test_add_of_an_archive_never_writes_outside_the_image(pyreg: Pyreg, tmp_path: Path) -> None:
    # ADD extracts with the layer unpacker's rules (puller.store.unpack.apply_tar_member)
    outside = tmp_path / "outside"
    outside.mkdir()
    for escape, refusal in [("symlink", "is an absolute symlink"), ("dotdot", "'..' in path")]:
        ctx = _context(tmp_path / escape, f"FROM {BASE}\nADD evil.tar /x/\n")
        _escaping_tar(ctx / "evil.tar", outside, escape)
        done = pyreg("build", "-t", "localhost/evil:v1", str(ctx))
        assert done.returncode == 1 and refusal in done.stderr
        assert "Traceback" not in done.stderr
    assert list(outside.iterdir()) == []
    assert "localhost/evil:v1" not in pyreg("images").stdout


def test_malformed_dockerfile_and_failing_run(pyreg: Pyreg, tmp_path: Path) -> None:
    ctx = _context(tmp_path / "ctx", f"FROM {BASE}\n\nFROB it\n")
    bad = pyreg("build", str(ctx))
    assert bad.returncode == 1
    assert "pyreg: error: Dockerfile:3: FROB: unknown instruction" in bad.stderr
    (ctx / "Dockerfile").write_text(f"FROM {BASE}\nRUN echo about to fail; exit 3\n")
    failed = pyreg("build", str(ctx))
    assert failed.returncode == 1 and "about to fail" in failed.stdout
    assert "Dockerfile:2: RUN:" in failed.stderr and "non-zero code: 3" in failed.stderr
    (ctx / "Dockerfile").write_text(f"FROM {BASE}\nCOPY nothing-here /\n")
    assert "no source files" in pyreg("build", str(ctx)).stderr


def test_run_network_host_is_opt_in(pyreg: Pyreg, tmp_path: Path) -> None:
    dockerfile = f"FROM {BASE}\nRUN --network=host ls /sys/class/net > /net.txt\n"
    ctx = _context(tmp_path / "ctx", dockerfile)
    pyreg("build", "-t", "localhost/net:v1", str(ctx), check=True)
    out = tmp_path / "out"
    pyreg("unpack", "localhost/net:v1", str(out), check=True)
    assert sorted((out / "net.txt").read_text().split()) == sorted(os.listdir("/sys/class/net"))
