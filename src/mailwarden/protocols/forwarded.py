"""Who the HTTP client is: the TCP peer, or what a trusted proxy says it forwarded.

What belongs here: reading ``X-Forwarded-For`` and ``X-Forwarded-Proto`` into an
:class:`Origin`, believing them only from the proxies listed in
``http.trusted_proxies``. No server, no asyncio: frontends/http.py applies the
result to every request before any route sees it.

**Why nobody is trusted by default.** These headers are plain text any client can
send. The address decides what the guard counts and bans (docs/guard.md), and
``guard.allow_networks`` exempts loopback, so a client whose word is taken could
name ``127.0.0.1`` and never be counted (uvicorn's own default trusts whatever
reaches it from 127.0.0.1, which is every client of a local proxy that passes the
header on unchanged). Only a site that puts its own proxy in front lists it, and
then only the proxy's word is taken: the chain is read from the right, each hop
a trusted proxy appended, and the first address that is not a trusted proxy is
the client. Addresses further left were written by that client and are ignored.
A hop that is not an IP address ends the walk at the last proxy that is known.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: At most this many hops of a chain are read (a header is not a work queue).
MAX_HOPS = 20


@dataclass(frozen=True, slots=True, kw_only=True)
class Origin:
    """The client's address (None when unknown) and the scheme it used."""

    client_ip: str | None
    scheme: str


@functools.lru_cache(maxsize=8)
def networks(specs: tuple[str, ...]) -> tuple[Network, ...]:
    """``http.trusted_proxies`` as networks (config/ has already checked each)."""
    return tuple(ipaddress.ip_network(spec, strict=False) for spec in specs)


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # "[2001:db8::1]:443" (RFC 7239 style)
        text = text[1 : text.index("]")]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(text: str, trusted: tuple[Network, ...]) -> bool:
    address = _address(text)
    return address is not None and any(address in net for net in trusted)


def origin(
    peer: str | None,
    scheme: str,
    headers: Mapping[str, str],
    trusted: tuple[Network, ...],
) -> Origin:
    """Where a request came from. ``headers`` have lower-case names."""
    if peer is None or not trusted or not _trusted(peer, trusted):
        return Origin(client_ip=peer, scheme=scheme)
    client = peer
    chain = headers.get("x-forwarded-for", "")
    hops = [hop for hop in chain.split(",") if hop.strip()][-MAX_HOPS:]
    for hop in reversed(hops):
        address = _address(hop)
        if address is None:
            break
        client = str(address)
        if not any(address in net for net in trusted):
            break
    proto = headers.get("x-forwarded-proto", "").rpartition(",")[2].strip().lower()
    return Origin(client_ip=client, scheme=proto if proto in ("http", "https") else scheme)
