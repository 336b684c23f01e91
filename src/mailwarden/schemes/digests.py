"""Single-pass digests: unsalted (``SHA*``, ``PLAIN-MD4/MD5``, ``LDAP-MD5``,
``DIGEST-MD5``) and salted (``SSHA*``, ``SMD5``).

Unsalted digests store ``H(password)``: base64 by default for ``SHA``, ``SHA1``,
``SHA256``, ``SHA512`` and ``LDAP-MD5``, hex for ``PLAIN-MD4``, ``PLAIN-MD5`` and
``DIGEST-MD5``; Dovecot guesses between the two by length (see
:meth:`~mailwarden.schemes.common.BaseScheme.decode`). ``DIGEST-MD5`` stores
``MD5(user:realm:password)`` with the username split at its *last* ``@`` (no ``@``:
empty realm), so it needs the username. Strength rank 1.

Salted digests store base64 of ``H(password ‖ salt) ‖ salt``; the salt may have
any length above 0 (doveadm and we use 4 random bytes). Strength rank 2.

All of them are cheap: verification runs inline, never on the worker pool. MD5 and
SHA-1 are requested with ``usedforsecurity=False`` so FIPS-mode builds still allow
these compatibility checks; the schemes are what they are.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from mailwarden.errors import MalformedHash
from mailwarden.schemes.base import HashPolicy
from mailwarden.schemes.common import BaseScheme
from mailwarden.schemes.md4 import md4

SALT_SIZE = 4

Digest = Callable[[bytes], bytes]


def _md5(data: bytes) -> bytes:
    return hashlib.md5(data, usedforsecurity=False).digest()


def _sha1(data: bytes) -> bytes:
    return hashlib.sha1(data, usedforsecurity=False).digest()


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _sha512(data: bytes) -> bytes:
    return hashlib.sha512(data).digest()


@dataclass(frozen=True, slots=True, kw_only=True)
class Unsalted(BaseScheme):
    """``H(password)``."""

    digest: Digest

    def generate_raw(
        self, password: bytes, *, user: str, policy: HashPolicy, rounds: int | None
    ) -> bytes:
        return self.digest(password)


@dataclass(frozen=True, slots=True, kw_only=True)
class Salted(BaseScheme):
    """``H(password ‖ salt) ‖ salt``, ``digest_size`` bytes of digest first."""

    digest: Digest
    digest_size: int

    def generate_raw(
        self, password: bytes, *, user: str, policy: HashPolicy, rounds: int | None
    ) -> bytes:
        salt = secrets.token_bytes(SALT_SIZE)
        return self.digest(password + salt) + salt

    def verify_raw(self, password: bytes, raw: bytes, *, user: str) -> bool:
        if len(raw) <= self.digest_size:
            raise MalformedHash(f"{self.name} data is too short to hold a salt")
        expected, salt = raw[: self.digest_size], raw[self.digest_size :]
        return hmac.compare_digest(self.digest(password + salt), expected)


def digest_md5_credentials(password: bytes, user: str) -> bytes:
    """``MD5(user:realm:password)``, the user split at the last ``@`` (Dovecot's rule)."""
    name, at, realm = user.rpartition("@")
    if not at:
        name, realm = user, ""
    return _md5(f"{name}:{realm}:".encode() + password)


@dataclass(frozen=True, slots=True, kw_only=True)
class DigestMd5(BaseScheme):
    """The DIGEST-MD5 mechanism's H(A1) base, bound to one username and realm."""

    def generate_raw(
        self, password: bytes, *, user: str, policy: HashPolicy, rounds: int | None
    ) -> bytes:
        return digest_md5_credentials(password, user)


SHA = Unsalted(
    name="SHA", family="SHA1", strength=1, default_encoding="b64", raw_len=20, digest=_sha1
)
SHA1 = Unsalted(
    name="SHA1", family="SHA1", strength=1, default_encoding="b64", raw_len=20, digest=_sha1
)
SHA256 = Unsalted(
    name="SHA256", family="SHA256", strength=1, default_encoding="b64", raw_len=32, digest=_sha256
)
SHA512 = Unsalted(
    name="SHA512", family="SHA512", strength=1, default_encoding="b64", raw_len=64, digest=_sha512
)
PLAIN_MD4 = Unsalted(
    name="PLAIN-MD4", family="PLAIN-MD4", strength=1, default_encoding="hex", raw_len=16, digest=md4
)
PLAIN_MD5 = Unsalted(
    name="PLAIN-MD5",
    family="PLAIN-MD5",
    strength=1,
    default_encoding="hex",
    raw_len=16,
    digest=_md5,
)
LDAP_MD5 = Unsalted(
    name="LDAP-MD5", family="PLAIN-MD5", strength=1, default_encoding="b64", raw_len=16, digest=_md5
)
DIGEST_MD5 = DigestMd5(
    name="DIGEST-MD5",
    family="DIGEST-MD5",
    strength=1,
    default_encoding="hex",
    raw_len=16,
    needs_user=True,
)

SSHA = Salted(
    name="SSHA", family="SSHA", strength=2, default_encoding="b64", digest=_sha1, digest_size=20
)
SSHA256 = Salted(
    name="SSHA256",
    family="SSHA256",
    strength=2,
    default_encoding="b64",
    digest=_sha256,
    digest_size=32,
)
SSHA512 = Salted(
    name="SSHA512",
    family="SSHA512",
    strength=2,
    default_encoding="b64",
    digest=_sha512,
    digest_size=64,
)
SMD5 = Salted(
    name="SMD5", family="SMD5", strength=2, default_encoding="b64", digest=_md5, digest_size=16
)
