"""``{CRAM-MD5}`` / ``{HMAC-MD5}``: HMAC-MD5 keys stored as MD5 chaining states.

Belongs here: the MD5 compression function that ``hashlib`` does not expose, and
everything built on it — the 32-byte state Dovecot stores, and finishing an HMAC-MD5
from such a state (what the CRAM-MD5 mechanism needs when only the state is known).

The state (reference §4): the key is the password, or MD5(password) if it is longer
than 64 bytes, zero-padded to 64. Compressing ``key ⊕ opad`` from MD5's initial
values gives the outer state, ``key ⊕ ipad`` the inner one; each is stored as A, B,
C, D little-endian u32, outer first. With those two states the HMAC of any message
is two MD5 finalisations whose first 64 bytes are already absorbed, so the password
itself is never needed: that is the point of the scheme (and also why the state is
as good as the password to an attacker).
"""

from __future__ import annotations

import hashlib
import math
import struct
from dataclasses import dataclass

from mailwarden.schemes.base import HashPolicy
from mailwarden.schemes.common import BaseScheme

STATE_SIZE = 32
BLOCK_SIZE = 64

State = tuple[int, int, int, int]

INITIAL_STATE: State = (0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476)

_MASK = 0xFFFFFFFF
# Per-step rotation amounts and the sine-derived constants of RFC 1321 §3.4.
_SHIFTS = (7, 12, 17, 22) * 4 + (5, 9, 14, 20) * 4 + (4, 11, 16, 23) * 4 + (6, 10, 15, 21) * 4
_CONSTANTS = tuple(int(abs(math.sin(step + 1)) * 2**32) & _MASK for step in range(64))
# Which message word each step reads: one index formula per round.
_WORD = (
    tuple(range(16))
    + tuple((5 * step + 1) % 16 for step in range(16, 32))
    + tuple((3 * step + 5) % 16 for step in range(32, 48))
    + tuple((7 * step) % 16 for step in range(48, 64))
)


def md5_compress(state: State, block: bytes) -> State:
    """One MD5 compression of the 64-byte ``block`` starting from ``state``."""
    if len(block) != BLOCK_SIZE:
        raise ValueError(f"an MD5 block is {BLOCK_SIZE} bytes, not {len(block)}")
    words = struct.unpack("<16I", block)
    a, b, c, d = state
    for step in range(64):
        if step < 16:
            mixed = (b & c) | (~b & d)
        elif step < 32:
            mixed = (d & b) | (~d & c)
        elif step < 48:
            mixed = b ^ c ^ d
        else:
            mixed = c ^ (b | (~d & _MASK))
        total = (a + mixed + _CONSTANTS[step] + words[_WORD[step]]) & _MASK
        rotated = ((total << _SHIFTS[step]) | (total >> (32 - _SHIFTS[step]))) & _MASK
        a, b, c, d = d, (b + rotated) & _MASK, b, c
    return (
        (state[0] + a) & _MASK,
        (state[1] + b) & _MASK,
        (state[2] + c) & _MASK,
        (state[3] + d) & _MASK,
    )


def md5_finish(state: State, data: bytes, *, absorbed: int) -> bytes:
    """The MD5 digest of a message whose first ``absorbed`` bytes produced ``state``.

    ``absorbed`` is a multiple of 64; ``data`` is the rest of the message.
    """
    if absorbed % BLOCK_SIZE:
        raise ValueError("absorbed must be a whole number of 64-byte blocks")
    length = absorbed + len(data)
    padded = data + b"\x80" + b"\0" * ((55 - len(data)) % 64) + struct.pack("<Q", length * 8)
    for offset in range(0, len(padded), BLOCK_SIZE):
        state = md5_compress(state, padded[offset : offset + BLOCK_SIZE])
    return struct.pack("<4I", *state)


def cram_state(password: bytes) -> bytes:
    """The 32-byte ``{CRAM-MD5}`` state of ``password`` (outer state, then inner)."""
    key = password
    if len(key) > BLOCK_SIZE:
        key = hashlib.md5(key, usedforsecurity=False).digest()
    key = key.ljust(BLOCK_SIZE, b"\0")
    outer = md5_compress(INITIAL_STATE, bytes(byte ^ 0x5C for byte in key))
    inner = md5_compress(INITIAL_STATE, bytes(byte ^ 0x36 for byte in key))
    return struct.pack("<8I", *outer, *inner)


def hmac_md5_from_state(state: bytes, message: bytes) -> bytes:
    """HMAC-MD5 of ``message`` under the key whose :func:`cram_state` is ``state``."""
    if len(state) != STATE_SIZE:
        raise ValueError(f"a CRAM-MD5 state is {STATE_SIZE} bytes, not {len(state)}")
    values = struct.unpack("<8I", state)
    outer: State = (values[0], values[1], values[2], values[3])
    inner: State = (values[4], values[5], values[6], values[7])
    return md5_finish(outer, md5_finish(inner, message, absorbed=BLOCK_SIZE), absorbed=BLOCK_SIZE)


@dataclass(frozen=True, slots=True, kw_only=True)
class CramMd5(BaseScheme):
    """The stored state; verification regenerates it (two compressions, not heavy)."""

    def generate_raw(
        self, password: bytes, *, user: str, policy: HashPolicy, rounds: int | None
    ) -> bytes:
        return cram_state(password)


CRAM_MD5 = CramMd5(
    name="CRAM-MD5", family="CRAM-MD5", strength=1, default_encoding="hex", raw_len=STATE_SIZE
)
HMAC_MD5 = CramMd5(
    name="HMAC-MD5", family="CRAM-MD5", strength=1, default_encoding="hex", raw_len=STATE_SIZE
)
