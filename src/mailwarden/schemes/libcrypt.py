"""A ctypes binding to libxcrypt's reentrant ``crypt_rn`` and ``crypt_gensalt_rn``.

Belongs here: the foreign-function boundary and nothing else — loading
``libcrypt.so.1`` (Debian's libcrypt1, always installed), declaring the two
signatures, and turning failures into exceptions. Which scheme uses which prefix is
``cryptfamily``'s business.

Why ctypes, and why these two functions:

* The stdlib ``crypt`` module is gone in Python 3.13, and while it lived it called
  the non-reentrant ``crypt()`` with the GIL held, so hashing never ran on two cores.
  A function called through a ``ctypes.CDLL`` runs with the GIL *released*, so
  SHA512-CRYPT verifications on a thread pool scale with the cores
  (``bench/hashing.py`` measures it).
* Released GIL means real concurrency, so the call must be reentrant: ``crypt()``
  and ``crypt_gensalt()`` write to static buffers. ``crypt_rn`` works in a caller
  supplied ``struct crypt_data`` and ``crypt_gensalt_rn`` in a caller supplied output
  buffer; each call here allocates its own, so no state is shared between threads.
  The ~32 KiB allocation costs microseconds against a millisecond hash.
* ``crypt_rn`` reports failure as NULL rather than the ``*0``/``*1`` failure tokens
  of ``crypt``/``crypt_r``, so a failure can never be mistaken for (or compared
  against) a stored value. Both are still checked, for libraries built differently.

The library is loaded on first use, so importing mailwarden works on a system
without libxcrypt; only crypt-family hashing then fails (with OSError).
"""

from __future__ import annotations

import ctypes
import functools

from mailwarden.errors import MalformedHash

LIBRARY = "libcrypt.so.1"

# sizeof(struct crypt_data) from <crypt.h>: output[384] + setting[384] + input[512]
# + reserved[767] + initialized[1] + internal[30720]. The header says it is "exactly
# 32768 bytes", and crypt_rn requires at least that much.
CRYPT_DATA_SIZE = 384 + 384 + 512 + 767 + 1 + 30720
#: CRYPT_MAX_PASSPHRASE_SIZE, counting the terminating NUL.
MAX_PASSPHRASE_SIZE = 512
#: CRYPT_GENSALT_OUTPUT_SIZE.
GENSALT_OUTPUT_SIZE = 192


class _Library:
    """The two declared functions of one loaded libcrypt."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self.crypt_rn = lib.crypt_rn
        self.crypt_rn.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_int]
        self.crypt_rn.restype = ctypes.c_void_p
        self.crypt_gensalt_rn = lib.crypt_gensalt_rn
        self.crypt_gensalt_rn.argtypes = [
            ctypes.c_char_p,
            ctypes.c_ulong,
            ctypes.c_char_p,
            ctypes.c_int,
            ctypes.c_void_p,
            ctypes.c_int,
        ]
        self.crypt_gensalt_rn.restype = ctypes.c_void_p


@functools.cache
def _library() -> _Library:
    # Under a race two threads may each load it; each then declares the functions
    # of its own CDLL object, and the cache keeps one. dlopen() is reference counted.
    return _Library(ctypes.CDLL(LIBRARY))


def crypt(phrase: bytes, setting: bytes) -> bytes:
    """``crypt_rn(phrase, setting)``: the hash of ``phrase`` under ``setting``.

    ``setting`` is a stored hash or a :func:`gensalt` result. Raises
    :class:`MalformedHash` when libxcrypt rejects the setting (unknown prefix, bad
    parameters), ValueError for a phrase that contains NUL or exceeds the library's
    limit (the caller decides what that means), OSError if libxcrypt is missing.
    """
    if b"\0" in phrase:
        raise ValueError("a crypt(3) passphrase cannot contain NUL")
    if len(phrase) >= MAX_PASSPHRASE_SIZE:
        raise ValueError(f"a crypt(3) passphrase is limited to {MAX_PASSPHRASE_SIZE - 1} bytes")
    if b"\0" in setting:
        raise MalformedHash("a crypt(3) setting cannot contain NUL")
    lib = _library()
    data = ctypes.create_string_buffer(CRYPT_DATA_SIZE)
    result = lib.crypt_rn(phrase, setting, data, CRYPT_DATA_SIZE)
    if not result:
        raise MalformedHash("libxcrypt cannot use this setting")
    hashed = ctypes.string_at(result)
    if hashed.startswith(b"*"):
        raise MalformedHash("libxcrypt cannot use this setting")
    return hashed


def gensalt(prefix: bytes, count: int, random: bytes) -> bytes:
    """``crypt_gensalt_rn(prefix, count, random)``: a new setting for :func:`crypt`.

    ``count`` is the cost (0 for the method's default); libxcrypt clamps it to the
    method's range and leaves it out when it is the default (``$6$`` with 5000).
    ``random`` is the salt entropy, at least 16 bytes suits every method. An empty
    ``prefix`` selects traditional DES. ValueError when libxcrypt refuses.
    """
    lib = _library()
    output = ctypes.create_string_buffer(GENSALT_OUTPUT_SIZE)
    result = lib.crypt_gensalt_rn(prefix, count, random, len(random), output, GENSALT_OUTPUT_SIZE)
    if not result:
        raise ValueError(f"libxcrypt cannot make a {prefix!r} setting with count {count}")
    return ctypes.string_at(result)
