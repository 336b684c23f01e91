"""``{PBKDF2}``: Dovecot's PBKDF2-HMAC-SHA1 format, ``$1$<salt>$<rounds>$<hex key>``.

The key is 20 bytes (40 hex digits) of PBKDF2-HMAC-SHA1. The salt is used as its
ASCII *text* — it is not decoded — and doveadm makes 16 characters of
``./0-9A-Za-z``. Rounds default to 5000; doveadm takes any ``-r`` of 1 or more.
hashlib's PBKDF2 releases the GIL. Strength rank 3; heavy.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass

from mailwarden.errors import MalformedHash
from mailwarden.schemes.base import HashPolicy, StoredHash
from mailwarden.schemes.common import BaseScheme, Profile, chosen, salt_text, to_bytes, to_text

KEY_SIZE = 20
SALT_LENGTH = 16

# str_to_uint: decimal digits only, within an unsigned int.
_ROUNDS = re.compile(r"[0-9]{1,10}")
_UINT_MAX = 2**32 - 1


def _derive(password: bytes, salt: bytes, rounds: int) -> bytes:
    return hashlib.pbkdf2_hmac("sha1", password, salt, rounds, KEY_SIZE)


def parse(raw: bytes) -> tuple[bytes, int, bytes]:
    """``(salt, rounds, key)`` of a PBKDF2 value; MalformedHash if it is not one."""
    if not raw.startswith(b"$1$"):
        raise MalformedHash("PBKDF2 data does not start with $1$")
    fields = to_text(raw[3:]).split("$")
    if len(fields) != 3 or _ROUNDS.fullmatch(fields[1]) is None:
        raise MalformedHash("PBKDF2 data is not $1$<salt>$<rounds>$<key>")
    rounds = int(fields[1])
    if not 1 <= rounds <= _UINT_MAX:
        raise MalformedHash("PBKDF2 rounds out of range")
    key = fields[2]
    if len(key) != 2 * KEY_SIZE or re.fullmatch(r"[0-9A-Fa-f]+", key) is None:
        raise MalformedHash("PBKDF2 key is not 160 bits of hex")
    return to_bytes(fields[0]), rounds, bytes.fromhex(key)


@dataclass(frozen=True, slots=True, kw_only=True)
class Pbkdf2(BaseScheme):
    """PBKDF2-HMAC-SHA1 with a text salt."""

    def generate_raw(
        self, password: bytes, *, user: str, policy: HashPolicy, rounds: int | None
    ) -> bytes:
        count = chosen(rounds, policy.pbkdf2_rounds)
        salt = salt_text(SALT_LENGTH)
        key = _derive(password, salt.encode("ascii"), count)
        return f"$1${salt}${count}${key.hex()}".encode("ascii")

    def verify_raw(self, password: bytes, raw: bytes, *, user: str) -> bool:
        salt, rounds, key = parse(raw)
        return hmac.compare_digest(_derive(password, salt, rounds), key)

    def profile(self, stored: StoredHash) -> Profile:
        _, rounds, _ = parse(self.decode(stored))
        return Profile("PBKDF2", self.strength, (rounds,))

    def target(self, policy: HashPolicy) -> Profile:
        return Profile("PBKDF2", self.strength, (chosen(None, policy.pbkdf2_rounds),))


PBKDF2 = Pbkdf2(name="PBKDF2", family="PBKDF2", strength=3, heavy=True)
