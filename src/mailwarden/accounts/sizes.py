"""Sizes in human units (``2G``, ``500M``, ``1.5G``): the one reading and writing of them.

What belongs here: :func:`parse_size` (what ``mailwarden user set quota_bytes=2G``,
the admin API and the web page accept, through
:func:`mailwarden.accounts.rules.apply_assignments`) and :func:`format_size` (what
the web page shows). Units are binary, as in Dovecot's quota rules: ``1K`` is 1024
bytes, ``1M`` 1024 K, ``1G`` 1024 M, ``1T`` 1024 G; a trailing ``B`` (``2GB``,
``2GiB``) changes nothing, and a number without a unit counts bytes. Pure.

:func:`format_size` writes the shortest form :func:`parse_size` reads back as the
very same number of bytes (``2G``, ``1.5G``, ``1000000``), so a form shown and saved
unchanged never changes a quota.
"""

from __future__ import annotations

import re
from fractions import Fraction

from mailwarden.errors import InvalidAccount

#: Multipliers of the unit letters (lower case), as Dovecot reads them.
UNITS = {"k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
#: Decimals a size may have (``1.125G``; the {1,3} of _SIZE_RE); more would be a
#: byte count in disguise.
MAX_DECIMALS = 3
#: The largest size every directory stores (rules.MAX_INTEGER, a signed 64-bit integer).
LARGEST = 2**63 - 1
# Integers longer than 19 digits are refused before int() sees them.
_SIZE_RE = re.compile(
    r"(?P<whole>[0-9]{1,19})(?:\.(?P<part>[0-9]{1,3}))?\s*(?:(?P<unit>[kmgt])i?)?b?",
    re.IGNORECASE,
)
_LARGEST_FIRST = sorted(UNITS.items(), key=lambda item: -item[1])


def parse_size(text: str, field: str = "size") -> int:
    """Bytes of ``text`` (``2G``, ``500M``, ``1.5G``, ``1048576``); InvalidAccount
    naming ``field`` when it is not a size or not a whole number of bytes."""
    found = _SIZE_RE.fullmatch(text.strip())
    if found is None:
        raise InvalidAccount(
            f"{field}: expected a size such as 2G, 500M, 1.5G or a number of bytes, got {text!r}"
        )
    unit = found["unit"]
    number = Fraction(int(found["whole"])) + (
        Fraction(int(found["part"]), 10 ** len(found["part"])) if found["part"] else 0
    )
    if found["part"] and unit is None:
        raise InvalidAccount(f"{field}: a number of bytes has no decimals, got {text!r}")
    size = number * (UNITS[unit.lower()] if unit else 1)
    if size.denominator != 1:
        raise InvalidAccount(f"{field}: {text!r} is not a whole number of bytes")
    if size > LARGEST:
        raise InvalidAccount(f"{field}: {text!r} is more than the largest size (2**63-1 bytes)")
    return int(size)


def format_size(size: int) -> str:
    """``size`` bytes in the largest unit that writes it exactly with at most
    :data:`MAX_DECIMALS` decimals (``2G``, ``1.5G``, ``500M``), else in bytes."""
    if size <= 0:
        return str(size)
    for letter, multiplier in _LARGEST_FIRST:
        if size < multiplier:
            continue
        value = Fraction(size, multiplier)
        if (value * 10**MAX_DECIMALS).denominator != 1:
            continue
        whole, rest = divmod(value, 1)
        if rest == 0:
            return f"{whole}{letter.upper()}"
        digits = str(int(rest * 10**MAX_DECIMALS)).rjust(MAX_DECIMALS, "0").rstrip("0")
        return f"{whole}.{digits}{letter.upper()}"
    return str(size)
