"""Size caps: parsing, the environment, one budget shared by a pull's layers."""

from __future__ import annotations

import pytest

from puller.store.limits import (
    DEFAULT_MAX_LAYER_SIZE,
    DEFAULT_MAX_PULL_SIZE,
    SizeCapExceeded,
    SizeCaps,
    UnpackBudget,
    human,
    parse_size,
)


def test_parse_size() -> None:
    assert parse_size("123") == 123
    assert parse_size("16G") == 16 * 1024**3
    assert parse_size("512m") == 512 * 1024**2
    assert parse_size("1TiB") == 1024**4
    assert parse_size(" 10 KB ") == 10 * 1024
    for bad in ("", "0", "-1", "1.5G", "12X", "G"):
        with pytest.raises(ValueError):
            parse_size(bad)


def test_human() -> None:
    assert human(16 * 1024**3) == "16 GiB"
    assert human(1536) == "1536 bytes"


def test_caps_from_flags_then_env_then_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYREG_MAX_LAYER_SIZE", raising=False)
    monkeypatch.delenv("PYREG_MAX_PULL_SIZE", raising=False)
    assert SizeCaps.from_env() == SizeCaps(DEFAULT_MAX_LAYER_SIZE, DEFAULT_MAX_PULL_SIZE)
    assert (DEFAULT_MAX_LAYER_SIZE, DEFAULT_MAX_PULL_SIZE) == (16 * 1024**3, 64 * 1024**3)
    monkeypatch.setenv("PYREG_MAX_LAYER_SIZE", "2G")
    monkeypatch.setenv("PYREG_MAX_PULL_SIZE", "3G")
    assert SizeCaps.from_env() == SizeCaps(2 * 1024**3, 3 * 1024**3)
    assert SizeCaps.from_env(layer=5).layer == 5
    monkeypatch.setenv("PYREG_MAX_PULL_SIZE", "lots")
    with pytest.raises(ValueError, match="PYREG_MAX_PULL_SIZE"):
        SizeCaps.from_env()


def test_one_budget_counts_all_its_layers() -> None:
    budget = UnpackBudget(SizeCaps(layer=100, pull=150))
    a, b = budget.meter("sha256:a"), budget.meter("sha256:b")
    a(100)
    with pytest.raises(SizeCapExceeded, match="layer sha256:a is larger than 100 bytes"):
        a(1)
    b(49)
    with pytest.raises(SizeCapExceeded, match="layer sha256:b: the image's layers pass 150"):
        b(2)
