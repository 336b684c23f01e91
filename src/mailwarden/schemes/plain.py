"""Plaintext schemes: ``{PLAIN}``, ``{CLEAR}``, ``{CLEARTEXT}`` and ``{PLAIN-TRUNC}``.

The stored data is the password itself, optionally hex or base64 encoded with a
``.HEX`` / ``.B64`` suffix (``{PLAIN.B64}c2VjcmV0``). Strength rank 0.

``PLAIN-TRUNC`` stores ``<length>-<password>`` for systems that silently truncated
passwords: if the stored password is exactly ``length`` bytes long and the given
password is at least that long, only the first ``length`` bytes are compared;
otherwise the whole password must match (Dovecot's plain_trunc_verify). Data without
the ``<length>-`` prefix never verifies. ``doveadm pw -s PLAIN-TRUNC`` prints the
password *without* that prefix, a value Dovecot itself then rejects ("missing
length: prefix"); :meth:`PlainTrunc.generate_raw` adds the prefix so what we
generate verifies both here and in Dovecot.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from mailwarden.errors import MalformedHash
from mailwarden.schemes.base import HashPolicy
from mailwarden.schemes.common import BaseScheme


@dataclass(frozen=True, slots=True, kw_only=True)
class Plain(BaseScheme):
    """The password as stored text."""

    def generate_raw(
        self, password: bytes, *, user: str, policy: HashPolicy, rounds: int | None
    ) -> bytes:
        return password

    def verify_raw(self, password: bytes, raw: bytes, *, user: str) -> bool:
        return hmac.compare_digest(password, raw)


@dataclass(frozen=True, slots=True, kw_only=True)
class PlainTrunc(BaseScheme):
    """``<length>-<password>``, matching truncated passwords by prefix."""

    def generate_raw(
        self, password: bytes, *, user: str, policy: HashPolicy, rounds: int | None
    ) -> bytes:
        return b"%d-%s" % (len(password), password)

    def verify_raw(self, password: bytes, raw: bytes, *, user: str) -> bool:
        digits = 0
        while digits < len(raw) and raw[digits : digits + 1].isdigit():
            digits += 1
        if digits == len(raw) or raw[digits : digits + 1] != b"-":
            raise MalformedHash("PLAIN-TRUNC data has no <length>- prefix")
        length = int(raw[:digits] or b"0")
        stored = raw[digits + 1 :]
        if len(stored) == length and len(password) >= length:
            return hmac.compare_digest(password[:length], stored)
        return hmac.compare_digest(password, stored)


PLAIN = Plain(name="PLAIN", family="PLAIN", strength=0)
CLEAR = Plain(name="CLEAR", family="PLAIN", strength=0)
CLEARTEXT = Plain(name="CLEARTEXT", family="PLAIN", strength=0)
# Its own family: a stored PLAIN-TRUNC value may be a truncated password, so it can
# not stand in for the plaintext when a mechanism asks for credentials.
PLAIN_TRUNC = PlainTrunc(name="PLAIN-TRUNC", family="PLAIN-TRUNC", strength=0)
