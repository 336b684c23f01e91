"""``{OTP}``: an RFC 2289 one-time-password state, ``<algo> <seq> <seed> <hex key>``.

``algo`` is ``md4``, ``md5`` or ``sha1``; the key is the 64-bit RFC 2289 value of
the password after ``seq`` iterations: fold(H(seed ‖ password)), then ``seq`` times
fold(H(previous)). The fold XORs the digest down to 8 bytes; for SHA-1 each 32-bit
half is also byte-reversed (RFC 2289 appendix A). The seed is case-insensitive and
hashed in lower case.

As a *password* scheme (what Dovecot's ``otp_verify`` does) a password verifies when
recomputing the state from it with the same algorithm, sequence and seed prints the
stored state again (compared case-insensitively). Anything Dovecot would not print
back — leading zeros, extra spaces — therefore never verifies. doveadm generates
``sha1 1024 <16 hex seed> <key>`` and ignores ``-r``; so do we.

Every iteration is a Python-level call (MD4 is pure Python: see ``md4``), so the
sequence number is capped at :data:`MAX_SEQUENCE` to bound the work one stored value
can cause. Strength rank 2 (salted, iterated, but a fast hash); heavy.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from mailwarden.errors import MalformedHash
from mailwarden.schemes.base import HashPolicy
from mailwarden.schemes.common import BaseScheme, to_text
from mailwarden.schemes.md4 import md4

DEFAULT_ALGORITHM = "sha1"
DEFAULT_SEQUENCE = 1024
SEED_BYTES = 8  # 16 hex characters, Dovecot's OTP_MAX_SEED_LEN
MAX_SEED_LENGTH = 16
#: The largest sequence number we recompute (RFC 2289 generators start well below).
MAX_SEQUENCE = 9999

_STATE = re.compile(r"(md4|md5|sha1)[ \t](-?[0-9]{1,10})[ \t]([A-Za-z0-9]{0,16}) ([0-9A-Fa-f]{16})")


def _xor(*parts: bytes) -> bytes:
    out = bytearray(len(parts[0]))
    for part in parts:
        for i, byte in enumerate(part):
            out[i] ^= byte
    return bytes(out)


def _fold_md4(data: bytes) -> bytes:
    digest = md4(data)
    return _xor(digest[:8], digest[8:])


def _fold_md5(data: bytes) -> bytes:
    digest = hashlib.md5(data, usedforsecurity=False).digest()
    return _xor(digest[:8], digest[8:])


def _fold_sha1(data: bytes) -> bytes:
    d = hashlib.sha1(data, usedforsecurity=False).digest()
    high = _xor(d[0:4], d[8:12], d[16:20])
    low = _xor(d[4:8], d[12:16])
    return high[::-1] + low[::-1]


FOLDS: dict[str, Callable[[bytes], bytes]] = {
    "md4": _fold_md4,
    "md5": _fold_md5,
    "sha1": _fold_sha1,
}


def otp_key(algorithm: str, seed: str, password: bytes, sequence: int) -> bytes:
    """The 8-byte RFC 2289 value after ``sequence`` iterations (``seed`` lower-cased)."""
    fold = FOLDS[algorithm]
    value = fold(seed.lower().encode("ascii") + password)
    for _ in range(sequence):
        value = fold(value)
    return value


def state_text(algorithm: str, sequence: int, seed: str, key: bytes) -> str:
    """The state as Dovecot prints it: ``algo seq seed hexkey``, lower case."""
    return f"{algorithm} {sequence} {seed.lower()} {key.hex()}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Otp(BaseScheme):
    """An OTP state regenerated from the password on every verification."""

    def generate_raw(
        self, password: bytes, *, user: str, policy: HashPolicy, rounds: int | None
    ) -> bytes:
        seed = secrets.token_bytes(SEED_BYTES).hex()
        key = otp_key(DEFAULT_ALGORITHM, seed, password, DEFAULT_SEQUENCE)
        return state_text(DEFAULT_ALGORITHM, DEFAULT_SEQUENCE, seed, key).encode("ascii")

    def verify_raw(self, password: bytes, raw: bytes, *, user: str) -> bool:
        text = to_text(raw)
        match = _STATE.match(text)
        if match is None:
            raise MalformedHash("OTP data is not '<algo> <seq> <seed> <hex key>'")
        algorithm, sequence, seed = match[1], int(match[2]), match[3]
        if not 0 <= sequence <= MAX_SEQUENCE:
            raise MalformedHash(f"OTP sequence outside 0..{MAX_SEQUENCE}")
        expected = state_text(
            algorithm, sequence, seed, otp_key(algorithm, seed, password, sequence)
        )
        # Dovecot compares with strcasecmp: ASCII case only, which bytes.lower() is.
        return hmac.compare_digest(expected.encode("ascii"), raw.lower())


OTP = Otp(name="OTP", family="OTP", strength=2, heavy=True)
