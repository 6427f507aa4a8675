from __future__ import annotations

from registry.stores.pagination import paginate

NAMES = ["a", "b", "c", "d"]


def test_everything_without_n() -> None:
    assert paginate(NAMES, None, None).items == NAMES
    assert paginate(NAMES, None, None).next_last is None


def test_page_and_next() -> None:
    page = paginate(NAMES, 2, None)
    assert page.items == ["a", "b"] and page.next_last == "b"
    page = paginate(NAMES, 2, "b")
    assert page.items == ["c", "d"] and page.next_last is None


def test_last_not_in_list_and_zero() -> None:
    assert paginate(NAMES, None, "bb").items == ["c", "d"]
    zero = paginate(NAMES, 0, None)
    assert zero.items == [] and zero.next_last is None
