"""A tiny base image made from the host's static busybox (Debian busybox-static), no internet.

image = busybox_image()                  # one gzip layer: /bin/busybox + applet symlinks
register_image(store, image, "localhost/base:v1")
"""

from __future__ import annotations

import platform
import shutil
from pathlib import Path
from typing import Any

from tests.support.images import Image, TarEntry, build_image, dir_, file, symlink

APPLETS = (
    "sh", "echo", "cat", "ls", "ps", "sleep", "true", "false", "env", "id", "mkdir", "rm",
    "touch", "head", "dd", "yes", "wc", "hostname", "pwd", "chmod", "chown", "ln", "stat",
    "find", "sort", "grep", "test", "printf", "seq", "cp", "mv", "tar", "whoami", "unshare",
)  # fmt: skip

PASSWD = (
    b"root:x:0:0:root:/root:/bin/sh\n"
    b"nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
    b"app:x:1000:1000:app:/home/app:/bin/sh\n"
)
GROUP = b"root:x:0:\nnogroup:x:65534:\napp:x:1000:\nstaff:x:50:app\n"


def busybox_path() -> Path | None:
    for candidate in ("/bin/busybox", "/usr/bin/busybox"):
        if Path(candidate).is_file():
            return Path(candidate)
    found = shutil.which("busybox")
    return Path(found) if found else None


def host_arch() -> str:
    machine = platform.machine().lower()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def busybox_entries() -> list[TarEntry]:
    path = busybox_path()
    if path is None:
        raise FileNotFoundError("busybox is not installed (Debian: busybox-static)")
    entries = [
        dir_("bin"),
        file("bin/busybox", path.read_bytes(), mode=0o755),
        *(symlink(f"bin/{name}", "busybox") for name in APPLETS),
        dir_("etc"),
        file("etc/passwd", PASSWD),
        file("etc/group", GROUP),
        dir_("root", mode=0o700),
        dir_("home"),
        dir_("home/app", uid=1000, gid=1000),
        dir_("tmp", mode=0o1777),
        dir_("proc"),
        dir_("sys"),
        dir_("dev"),
    ]
    return entries


def busybox_image(config: dict[str, Any] | None = None) -> Image:
    cfg = {
        "Cmd": ["/bin/sh"],
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
    }
    cfg.update(config or {})
    return build_image([busybox_entries()], architecture=host_arch(), config_extra={"config": cfg})
