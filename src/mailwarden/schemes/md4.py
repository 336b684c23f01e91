"""MD4 (RFC 1320) in pure Python, for ``{PLAIN-MD4}`` and OTP's ``md4`` algorithm.

OpenSSL 3 moved MD4 to its legacy provider, so ``hashlib.new("md4")`` fails on
Debian 12 and most current systems. MD4 is only ever applied here to a password or
an 8-byte OTP value, so a few microseconds per block in Python cost nothing.
"""

from __future__ import annotations

import struct

_MASK = 0xFFFFFFFF
_INITIAL = (0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476)

# Message word order and rotation amounts of rounds 2 and 3 (RFC 1320 §3.4).
_ROUND2_ORDER = (0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15)
_ROUND3_ORDER = (0, 8, 4, 12, 2, 10, 6, 14, 1, 9, 5, 13, 3, 11, 7, 15)
_ROUND1_SHIFTS = (3, 7, 11, 19)
_ROUND2_SHIFTS = (3, 5, 9, 13)
_ROUND3_SHIFTS = (3, 9, 11, 15)
_ROUND2_CONSTANT = 0x5A827999
_ROUND3_CONSTANT = 0x6ED9EBA1


def _rotl(x: int, n: int) -> int:
    return ((x << n) | (x >> (32 - n))) & _MASK


def _compress(state: tuple[int, int, int, int], block: bytes) -> tuple[int, int, int, int]:
    x = struct.unpack("<16I", block)
    a, b, c, d = state
    for i in range(16):
        f = (b & c) | (~b & d)
        a, b, c, d = d, _rotl((a + f + x[i]) & _MASK, _ROUND1_SHIFTS[i % 4]), b, c
    for i in range(16):
        g = (b & c) | (b & d) | (c & d)
        k = _ROUND2_ORDER[i]
        a, b, c, d = (
            d,
            _rotl((a + g + x[k] + _ROUND2_CONSTANT) & _MASK, _ROUND2_SHIFTS[i % 4]),
            b,
            c,
        )
    for i in range(16):
        h = b ^ c ^ d
        k = _ROUND3_ORDER[i]
        a, b, c, d = (
            d,
            _rotl((a + h + x[k] + _ROUND3_CONSTANT) & _MASK, _ROUND3_SHIFTS[i % 4]),
            b,
            c,
        )
    return (
        (state[0] + a) & _MASK,
        (state[1] + b) & _MASK,
        (state[2] + c) & _MASK,
        (state[3] + d) & _MASK,
    )


def md4(data: bytes) -> bytes:
    """The 16-byte MD4 digest of ``data``."""
    padded = data + b"\x80" + b"\0" * ((55 - len(data)) % 64) + struct.pack("<Q", len(data) * 8)
    state = _INITIAL
    for offset in range(0, len(padded), 64):
        state = _compress(state, padded[offset : offset + 64])
    return struct.pack("<4I", *state)
