"""Metrics listener addresses."""

from __future__ import annotations

import pytest

from registry.observe.listener import AddressError, parse_addr


def test_addresses() -> None:
    assert parse_addr("127.0.0.1:9100") == ("127.0.0.1", 9100)
    assert parse_addr(":9100") == ("0.0.0.0", 9100)
    assert parse_addr("[::1]:9100") == ("::1", 9100)
    assert parse_addr("localhost:1") == ("localhost", 1)


@pytest.mark.parametrize("addr", ["9100", "host:", "host:port", "h:70000", "[zz::1]:9", "::1:9"])
def test_bad_addresses(addr: str) -> None:
    with pytest.raises(AddressError):
        parse_addr(addr)
