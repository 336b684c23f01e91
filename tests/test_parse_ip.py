"""model.parse_ip: the fast dotted-quad path accepts and refuses exactly what ipaddress does."""

from __future__ import annotations

import ipaddress

from hypothesis import given
from hypothesis import strategies as st

from mailwarden.model import IPAddress, parse_ip


def reference(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def parsed(text: str) -> IPAddress | None:
    try:
        return parse_ip(text)
    except ValueError:
        return None


@given(st.text(alphabet="0123456789.:abcdef%x+-_ \u00b2\u0663", max_size=24))
def test_any_text_parses_as_ipaddress_parses_it(text: str) -> None:
    assert parsed(text) == reference(text)


@given(st.tuples(*[st.integers(0, 300)] * 4), st.booleans())
def test_dotted_quads_with_large_parts_or_leading_zeros(parts: tuple[int, ...], zero: bool) -> None:
    text = ".".join(("0" if zero else "") + str(p) for p in parts)
    assert parsed(text) == reference(text)


def test_the_usual_forms() -> None:
    assert parse_ip("192.0.2.7") == ipaddress.IPv4Address("192.0.2.7")
    assert parse_ip("255.255.255.255") == ipaddress.IPv4Address(2**32 - 1)
    assert parse_ip("2001:db8::1") == ipaddress.IPv6Address("2001:db8::1")
    for bad in ("192.0.2.07", "192.0.2.256", "192.0.2", "1.2.3.4.5", ""):
        assert parsed(bad) is None
