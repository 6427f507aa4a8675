"""The image's storage root is owner-only: it holds private content and, without `auth.key`,
the token signing key (a 0755 root let any local user read what the files' modes allowed)."""

from __future__ import annotations

import re
from pathlib import Path

DOCKERFILE = Path(__file__).resolve().parents[2] / "deploy" / "Dockerfile"


def test_the_image_creates_its_storage_root_0700() -> None:
    text = DOCKERFILE.read_text()
    volume = re.search(r"^VOLUME\s+(\S+)", text, re.M)
    assert volume is not None
    root = re.escape(volume.group(1))
    made_0700 = re.search(rf"chmod\s+0?700\s+{root}\b", text) or re.search(
        rf"install\s+-d\s+-m\s+0?700\b[^\n]*\s{root}\b", text
    )
    assert made_0700, f"{volume.group(1)} is not made 0700"
