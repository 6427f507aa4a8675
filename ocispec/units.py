"""Sizes for people: binary units, one format for the client's bars, lines and summaries and
for the web UI's tables alike."""

from __future__ import annotations


def human_size(n: int) -> str:
    """`512 B`, `1.5 KiB`, `12.3 MiB`, `2.0 GiB` (GiB is the largest unit)."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{n} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"
