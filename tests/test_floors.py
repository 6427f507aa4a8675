"""The package floors (the developers' brief: nothing imports upward, no cycles), checked on
the sources: each package may import only the packages below it, and no package reaches into
another's private modules (`x._y`): what other packages use is public."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# package -> the packages it may import. pyreg/ (the composition root joining the commands)
# and bench/ (a development tool) sit on top and may import any of them.
BELOW: dict[str, frozenset[str]] = {
    "ocispec": frozenset(),
    "storage_backends": frozenset(),
    "regclient": frozenset({"ocispec"}),
    "registry": frozenset({"ocispec", "storage_backends", "regclient"}),
    "puller": frozenset({"ocispec", "regclient"}),
    "runtime": frozenset({"ocispec", "regclient", "puller"}),
    "builder": frozenset({"ocispec", "regclient", "puller", "runtime"}),
}
PACKAGES = frozenset(BELOW) | {"pyreg", "bench"}
# The one upward name: the server's build-info metric reports the version constant that
# pyreg/__init__.py holds (a module without imports, so no cycle can come of it).
ALLOWED_UP = frozenset({("registry", "pyreg.__version__")})


def _imported(package: str) -> set[str]:
    """Every absolute module (and `module.name`) the package's sources import."""
    found: set[str] = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _foreign(package: str) -> set[str]:
    return {name for name in _imported(package) if name.split(".")[0] in PACKAGES - {package}}


@pytest.mark.parametrize("package", sorted(BELOW))
def test_a_package_imports_only_the_floors_below_it(package: str) -> None:
    upward = {
        name
        for name in _foreign(package)
        if name.split(".")[0] not in BELOW[package] and (package, name) not in ALLOWED_UP
    }
    assert not upward


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_no_package_imports_another_packages_private_modules(package: str) -> None:
    private = {
        name
        for name in _foreign(package)
        if any(part.startswith("_") and not part.startswith("__") for part in name.split(".")[1:])
    }
    assert not private


def test_the_floors_have_no_cycle() -> None:
    # the table itself: every package strictly below those that may import it
    seen: set[str] = set()
    for package in sorted(BELOW, key=lambda p: len(BELOW[p])):
        assert BELOW[package] <= seen, package
        seen.add(package)
