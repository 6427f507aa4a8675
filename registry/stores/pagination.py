"""`n`/`last` pagination shared by tag listing and the catalog."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Page:
    items: list[str]
    #: the `last` value of the next page, or None when this page is the end
    next_last: str | None


def paginate(names: Sequence[str], n: int | None, last: str | None) -> Page:
    """`names` sorted; entries strictly after `last`, at most `n` of them (None: all)."""
    rest = [x for x in names if last is None or x > last]
    if n is None or n >= len(rest):
        return Page(rest, None)
    page = rest[:n]
    # n == 0 must return an empty list and no Link (spec, "Listing Tags").
    return Page(page, page[-1] if page else None)
