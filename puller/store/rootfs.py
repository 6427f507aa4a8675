"""Assemble a root filesystem from registered layers, in order, honouring whiteouts."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ocispec.digest import Digest

if TYPE_CHECKING:
    from puller.store import GraphStore


def assemble_rootfs(store: GraphStore, chain_ids: list[Digest], target: Path) -> None:
    raise NotImplementedError
