"""DNS entries sent to the mail gateway (``name in a 1.2.3.4``): parse and validate. Pure.

Interface (used by ``mailgate.changes`` and the ``dns-zone`` export)::

    looks_like_dns_line(line) -> bool       # "<name> in <type> ..." shape
    parse_dns_line(line) -> DnsRecord       # raises FieldError
    DnsRecord.zone_line() -> str            # "name IN TYPE value", what Account.dns_records holds

Accepted, case-insensitive in the keywords (stored upper-case; the name is
stored lower-case, DNS names being case-insensitive, so ownership checks compare
like with like):

* ``name in a 192.0.2.1`` -- a valid IPv4 address (``ipaddress``; leading zeros
  and out-of-range octets refused);
* ``name in aaaa 2001:db8::1`` -- a valid IPv6 address, stored compressed (the
  original accepted ``1:2:3``);
* ``name in cname host.example.`` -- an absolute host name, trailing dot required;
* ``name in mx 10 mail.example.`` -- preference 0-65535 and an absolute host name;
* ``name in txt "text" ["more"]`` -- one or more double-quoted strings of
  printable ASCII (``\\"`` and ``\\\\`` escapes), each at most 255 bytes as
  DNS allows; anything else is refused, never truncated.

``name`` is a single label under the gateway's configured zone (letters,
digits, ``-`` and ``_``, at most 63, not starting or ending with ``-``); the
zone itself is the gateway's business, not this parser's.

Names starting with ``_`` are *zone-wide* (:func:`is_zone_wide`): by DNS
convention they are not hosts but records that speak for the whole zone —
``_acme-challenge`` (an ACME TXT record gets certificates issued for the zone's
names), ``_dmarc`` (the zone's mail policy), ``_domainkey`` and service labels.
The parser accepts them; ``mailgate.changes`` refuses them unless the site
lists them in ``[mailgate] dns_underscore_names``.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from mailwarden.errors import FieldError

__all__ = [
    "MAX_DNS_LINE_LENGTH",
    "RECORD_TYPES",
    "DnsRecord",
    "is_zone_wide",
    "looks_like_dns_line",
    "parse_dns_line",
]

MAX_DNS_LINE_LENGTH = 1024
RECORD_TYPES = ("A", "AAAA", "CNAME", "MX", "TXT")

_SHAPE = re.compile(r"^(\S+)\s+in\s+([A-Za-z]+)(?:\s+(.*))?$", re.IGNORECASE)
_LABEL = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)$")
_TXT_STRING = re.compile(r'"((?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\["\\])*)"')


@dataclass(frozen=True, slots=True, kw_only=True)
class DnsRecord:
    """One record: ``name`` a single lower-case label, ``type`` one of RECORD_TYPES,
    ``value`` the RDATA in zone-file syntax (``10 mail.example.`` for MX)."""

    name: str
    type: str
    value: str

    def zone_line(self) -> str:
        """``name IN TYPE value``: the stored form and a valid zone-file line."""
        return f"{self.name} IN {self.type} {self.value}"


def is_zone_wide(name: str) -> bool:
    """Whether the label ``name`` speaks for the whole zone (it starts with ``_``)."""
    return name.startswith("_")


def looks_like_dns_line(line: str) -> bool:
    """Whether the line has the ``<name> in <type> ...`` shape of a DNS entry."""
    return _SHAPE.match(line.strip()) is not None


def _host(value: str, what: str) -> str:
    if not value.endswith(".") or value == ".":
        raise FieldError(f"{what} {value!r} must be an absolute name ending in '.'")
    labels = value[:-1].split(".")
    if len(value) > 254 or not all(_LABEL.match(label) for label in labels):
        raise FieldError(f"{what} {value!r} is not a valid host name")
    return value.lower()


def _txt(value: str) -> str:
    pos = 0
    strings: list[str] = []
    while pos < len(value):
        m = _TXT_STRING.match(value, pos)
        if m is None:
            raise FieldError(
                'TXT data must be one or more double-quoted strings of printable ASCII ("...")'
            )
        content = m.group(1)
        if len(re.sub(r"\\(.)", r"\1", content)) > 255:
            raise FieldError("a TXT string is at most 255 characters; split it into several")
        strings.append(m.group(0))
        pos = m.end()
        while pos < len(value) and value[pos] in " \t":
            pos += 1
    if not strings:
        raise FieldError('TXT data is missing ("...")')
    return " ".join(strings)


def parse_dns_line(line: str) -> DnsRecord:
    """Parse ``name in TYPE data``; raises FieldError saying what is wrong."""
    text = line.strip()
    if len(text) > MAX_DNS_LINE_LENGTH:
        raise FieldError(f"DNS entry longer than {MAX_DNS_LINE_LENGTH} characters")
    m = _SHAPE.match(text)
    if m is None:
        raise FieldError("a DNS entry is '<name> in <type> <data>'")
    name, rtype, data = m.group(1), m.group(2).upper(), (m.group(3) or "").strip()
    if not _LABEL.match(name):
        raise FieldError(
            f"DNS name {name!r} must be a single label (letters, digits, - and _; no dots)"
        )
    if rtype not in RECORD_TYPES:
        raise FieldError(f"DNS type {rtype} is not accepted ({', '.join(RECORD_TYPES)})")
    if not data:
        raise FieldError(f"DNS {rtype} entry without data")
    if rtype == "A":
        try:
            value = str(ipaddress.IPv4Address(data))
        except ValueError:
            raise FieldError(f"{data!r} is not an IPv4 address") from None
    elif rtype == "AAAA":
        if "%" in data:  # a scope id means nothing outside one host
            raise FieldError(f"{data!r} is not a global IPv6 address")
        try:
            value = ipaddress.IPv6Address(data).compressed
        except ValueError:
            raise FieldError(f"{data!r} is not an IPv6 address") from None
    elif rtype == "CNAME":
        value = _host(data, "CNAME target")
    elif rtype == "MX":
        parts = data.split()
        if len(parts) != 2 or not parts[0].isascii() or not parts[0].isdigit():
            raise FieldError("an MX entry is '<name> in mx <preference> <host>.'")
        pref = int(parts[0])
        if pref > 65535:
            raise FieldError("MX preference must be 0-65535")
        value = f"{pref} {_host(parts[1], 'MX host')}"
    else:
        value = _txt(data)
    return DnsRecord(name=name.lower(), type=rtype, value=value)
