"""X-Forwarded-For/-Proto: believed only from configured proxies, read from the right."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailwarden.protocols.forwarded import MAX_HOPS, Origin, networks, origin

PROXY = networks(("127.0.0.1/32", "10.0.0.0/8"))


def test_with_no_trusted_proxy_the_headers_are_ignored() -> None:
    headers = {"x-forwarded-for": "192.0.2.9", "x-forwarded-proto": "https"}
    assert origin("127.0.0.1", "http", headers, ()) == Origin(client_ip="127.0.0.1", scheme="http")


def test_from_a_peer_that_is_no_proxy_the_headers_are_ignored() -> None:
    headers = {"x-forwarded-for": "127.0.0.1", "x-forwarded-proto": "https"}
    got = origin("198.51.100.4", "http", headers, PROXY)
    assert got == Origin(client_ip="198.51.100.4", scheme="http")


def test_a_trusted_proxy_names_the_client_and_the_scheme() -> None:
    headers = {"x-forwarded-for": "192.0.2.9", "x-forwarded-proto": "https"}
    assert origin("127.0.0.1", "http", headers, PROXY) == Origin(
        client_ip="192.0.2.9", scheme="https"
    )


@pytest.mark.parametrize(
    ("chain", "client"),
    [
        # The client wrote the left part; the proxy appended the real peer.
        ("127.0.0.1, 192.0.2.9", "192.0.2.9"),
        ("203.0.113.1, 192.0.2.9, 10.1.2.3", "192.0.2.9"),  # two proxies
        ("10.1.2.3, 10.9.9.9", "10.1.2.3"),  # only proxies: the farthest
        ("garbage, 192.0.2.9", "192.0.2.9"),
        ("192.0.2.9, garbage", "127.0.0.1"),  # unreadable hop: the last known proxy
        ("[2001:db8::7]:443", "2001:db8::7"),
        ("::ffff:192.0.2.9", "192.0.2.9"),
        ("", "127.0.0.1"),
    ],
)
def test_the_chain_is_read_from_the_right_up_to_the_first_untrusted_hop(
    chain: str, client: str
) -> None:
    assert origin("127.0.0.1", "http", {"x-forwarded-for": chain}, PROXY).client_ip == client


def test_an_unknown_scheme_is_ignored_and_the_last_proto_counts() -> None:
    assert origin("127.0.0.1", "http", {"x-forwarded-proto": "gopher"}, PROXY).scheme == "http"
    assert origin("127.0.0.1", "http", {"x-forwarded-proto": "http, https"}, PROXY).scheme == (
        "https"
    )


@given(st.lists(st.text(max_size=40), max_size=MAX_HOPS * 2), st.text(max_size=20))
def test_any_header_gives_an_ip_address_or_the_peer(hops: list[str], proto: str) -> None:
    headers = {"x-forwarded-for": ",".join(hops), "x-forwarded-proto": proto}
    got = origin("127.0.0.1", "http", headers, PROXY)
    assert got.scheme in ("http", "https")
    assert got.client_ip is not None
    networks((got.client_ip,))  # an address, never free text
