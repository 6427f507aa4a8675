"""One size format for the client's output and the web UI: binary units, GiB the largest."""

from __future__ import annotations

import pytest

from ocispec.units import human_size


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (1536, "1.5 KiB"),
        (158 * 1024 * 1024, "158.0 MiB"),
        (3 << 30, "3.0 GiB"),
        (5 << 40, "5120.0 GiB"),
    ],
)
def test_human_size(n: int, text: str) -> None:
    assert human_size(n) == text
