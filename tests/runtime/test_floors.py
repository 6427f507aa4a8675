"""The build-and-run floors: builder/ may use runtime/, runtime/ never builder/, and nothing
below (puller/, registry/, ocispec/, storage_backends/) imports either."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _imports(package: str) -> set[str]:
    found: set[str] = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("runtime", {"builder", "registry"}),
        ("puller", {"builder", "runtime"}),
        ("registry", {"builder", "runtime"}),
        ("ocispec", {"builder", "runtime"}),
        ("storage_backends", {"builder", "runtime"}),
    ],
)
def test_floors(package: str, forbidden: set[str]) -> None:
    assert not _imports(package) & forbidden
