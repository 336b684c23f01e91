"""The crypt(3) family: ``CRYPT``, ``DES-CRYPT``, ``MD5-CRYPT``, ``MD5``,
``SHA256-CRYPT``, ``SHA512-CRYPT`` and ``BLF-CRYPT``.

Verification follows Dovecot (password-scheme.c, password-scheme-crypt.c):

* ``CRYPT``, ``DES-CRYPT``, ``SHA256-CRYPT`` and ``SHA512-CRYPT`` accept *any*
  crypt(3) string whatever their name says (``{SHA512-CRYPT}$1$…`` verifies as
  MD5-crypt, ``{CRYPT}$y$…`` as yescrypt): a value of the form ``$2?$…`` goes to the
  bcrypt check below, everything else to libxcrypt's ``crypt_rn`` (see ``libcrypt``).
* ``BLF-CRYPT`` accepts only ``$2?$`` values. ``$2b$`` and ``$2y$`` (the same
  algorithm) are checked by the ``bcrypt`` package; ``$2a$`` and ``$2x$`` by
  libxcrypt, because their meaning is Openwall crypt_blowfish's, which Dovecot
  uses and libxcrypt contains: ``$2x$`` reproduces the old sign-extension bug for
  8-bit passwords and ``$2a$`` carries its countermeasure. Both libraries release
  the GIL. bcrypt reads at most 72 bytes of password; longer ones are cut there,
  as crypt_blowfish does.
* ``MD5-CRYPT`` accepts only ``$1$`` values; ``MD5`` accepts ``$1$`` values or, else,
  a PLAIN-MD5 digest (hex or base64: OpenLDAP's ``{MD5}`` is base64).

Generation follows ``doveadm pw``: ``CRYPT`` and ``BLF-CRYPT`` make ``$2y$`` bcrypt
(cost from ``-r``, clamped to 4–31, default 5); ``SHA*-CRYPT`` make a 16-character
salt with ``rounds=N$`` only when N is not 5000 (clamped to 1000–999999999);
``DES-CRYPT`` a 2-character salt; ``MD5``/``MD5-CRYPT`` an 8-character salt. Salts
come from libxcrypt's ``crypt_gensalt_rn`` fed with ``secrets`` randomness.

Strength ranks: DES-CRYPT, MD5-CRYPT, MD5 2; SHA256/512-CRYPT 3; BLF-CRYPT and
CRYPT (which generates bcrypt) 4. The rank of a stored value comes from its data:
``{CRYPT}`` holding DES is 2, holding ``$6$`` is 3. All are heavy except ``MD5``
holding a plain digest.
"""

from __future__ import annotations

import hmac
import re
import secrets
from dataclasses import dataclass

import bcrypt

from mailwarden.errors import MalformedHash
from mailwarden.schemes import libcrypt
from mailwarden.schemes.base import HashPolicy, StoredHash
from mailwarden.schemes.common import BaseScheme, Profile, chosen, to_text
from mailwarden.schemes.digests import PLAIN_MD5

BCRYPT_COST_MIN = 4
BCRYPT_COST_MAX = 31
#: bcrypt uses at most this many bytes of the password.
BCRYPT_MAX_PASSWORD = 72
#: ``$2?$NN$`` + 22 salt characters + at least one hash character (CRYPT_BLF_PREFIX_LEN).
BCRYPT_MIN_LENGTH = 30
SHA_CRYPT_ROUNDS_DEFAULT = 5000
SHA_CRYPT_ROUNDS_MIN = 1000
SHA_CRYPT_ROUNDS_MAX = 999_999_999

_SALT_ENTROPY = 16
_SHA_ROUNDS = re.compile(rb"\$[56]\$rounds=([0-9]{1,10})\$")
_BCRYPT_COST = re.compile(rb"\$2[a-z]\$([0-9]{2})\$")


def _is_bcrypt(raw: bytes) -> bool:
    return len(raw) > 4 and raw[:2] == b"$2" and raw[3:4] == b"$"


# ---------------------------------------------------------------------- verification


def blowfish_verify(password: bytes, raw: bytes) -> bool:
    """Dovecot's crypt_verify_blowfish: ``$2?$`` values only."""
    if len(raw) < BCRYPT_MIN_LENGTH or raw[:2] != b"$2" or raw[3:4] != b"$":
        raise MalformedHash("not a bcrypt ($2?$) value")
    variant = raw[2:3]
    password = password[:BCRYPT_MAX_PASSWORD]
    if variant in (b"b", b"y"):
        try:
            computed = bcrypt.hashpw(password, raw)
        except ValueError as exc:
            raise MalformedHash("invalid bcrypt setting") from exc
    elif variant in (b"a", b"x"):
        computed = libcrypt.crypt(password, raw)
    else:
        raise MalformedHash(f"unsupported bcrypt variant $2{to_text(variant)}$")
    return hmac.compare_digest(computed, raw)


def crypt_verify(password: bytes, raw: bytes) -> bool:
    """Dovecot's crypt_verify: bcrypt for ``$2?$``, libxcrypt for everything else."""
    if _is_bcrypt(raw):
        return blowfish_verify(password, raw)
    if not raw:
        # libc crypt() of an empty setting "matches" an empty hash; Dovecot guards
        # against that, and an empty value can never verify anything.
        raise MalformedHash("empty crypt value")
    try:
        computed = libcrypt.crypt(password, raw)
    except ValueError:
        # Longer than libxcrypt accepts: Dovecot's crypt() then returns a failure
        # token that never equals a stored value.
        return False
    return hmac.compare_digest(computed, raw)


def md5_crypt_verify(password: bytes, raw: bytes) -> bool:
    """MD5-crypt only: Dovecot's own md5crypt never matches a value without ``$1$``."""
    if not raw.startswith(b"$1$"):
        raise MalformedHash("not an MD5-crypt ($1$) value")
    return crypt_verify(password, raw)


# ---------------------------------------------------------------------- generation


def bcrypt_generate(password: bytes, cost: int) -> bytes:
    """``$2y$NN$…`` as doveadm makes it (``$2y$`` is ``$2b$`` under another name)."""
    cost = min(max(cost, BCRYPT_COST_MIN), BCRYPT_COST_MAX)
    setting = b"$2y$" + bcrypt.gensalt(cost)[4:]
    return bcrypt.hashpw(password[:BCRYPT_MAX_PASSWORD], setting)


def libcrypt_generate(password: bytes, prefix: bytes, count: int = 0) -> bytes:
    """A fresh ``prefix`` setting from libxcrypt, then the hash of ``password``."""
    setting = libcrypt.gensalt(prefix, count, secrets.token_bytes(_SALT_ENTROPY))
    return libcrypt.crypt(password, setting)


def sha_crypt_rounds(rounds: int | None, policy: HashPolicy) -> int:
    """doveadm's clamp: 1000 ≤ rounds ≤ 999999999, default from the policy (5000)."""
    wanted = chosen(rounds, policy.sha_crypt_rounds)
    return min(max(wanted, SHA_CRYPT_ROUNDS_MIN), SHA_CRYPT_ROUNDS_MAX)


def bcrypt_cost(rounds: int | None, policy: HashPolicy) -> int:
    return min(max(chosen(rounds, policy.bcrypt_cost), BCRYPT_COST_MIN), BCRYPT_COST_MAX)


# ---------------------------------------------------------------------- profiles


def crypt_profile(raw: bytes) -> Profile:
    """What a crypt(3) string really is, from its prefix."""
    if _is_bcrypt(raw):
        match = _BCRYPT_COST.match(raw)
        if match is None:
            raise MalformedHash("bcrypt value without a cost")
        return Profile("BLF-CRYPT", 4, (int(match[1]),))
    if raw.startswith((b"$5$", b"$6$")):
        kind = "SHA256-CRYPT" if raw.startswith(b"$5$") else "SHA512-CRYPT"
        match = _SHA_ROUNDS.match(raw)
        return Profile(kind, 3, (int(match[1]) if match else SHA_CRYPT_ROUNDS_DEFAULT,))
    if raw.startswith(b"$1$"):
        return Profile("MD5-CRYPT", 2)
    if raw.startswith((b"$y$", b"$gy$", b"$7$")):
        # yescrypt / scrypt: memory-hard, ranked with bcrypt.
        return Profile("YESCRYPT", 4)
    if len(raw) == 13:
        return Profile("DES-CRYPT", 2)
    return Profile("CRYPT", 2)


# ---------------------------------------------------------------------- schemes


@dataclass(frozen=True, slots=True, kw_only=True)
class Crypt(BaseScheme):
    """Verifies any crypt(3) string; generates with ``method``."""

    method: str  # "bcrypt", "des", "sha256" or "sha512"

    def generate_raw(
        self, password: bytes, *, user: str, policy: HashPolicy, rounds: int | None
    ) -> bytes:
        if self.method == "bcrypt":
            return bcrypt_generate(password, bcrypt_cost(rounds, policy))
        if self.method == "des":
            return libcrypt_generate(password, b"")
        prefix = b"$5$" if self.method == "sha256" else b"$6$"
        return libcrypt_generate(password, prefix, sha_crypt_rounds(rounds, policy))

    def verify_raw(self, password: bytes, raw: bytes, *, user: str) -> bool:
        return crypt_verify(password, raw)

    def profile(self, stored: StoredHash) -> Profile:
        return crypt_profile(self.decode(stored))

    def target(self, policy: HashPolicy) -> Profile:
        if self.method == "bcrypt":
            return Profile("BLF-CRYPT", 4, (bcrypt_cost(None, policy),))
        if self.method == "des":
            return Profile("DES-CRYPT", 2)
        kind = "SHA256-CRYPT" if self.method == "sha256" else "SHA512-CRYPT"
        return Profile(kind, 3, (sha_crypt_rounds(None, policy),))


@dataclass(frozen=True, slots=True, kw_only=True)
class BlfCrypt(BaseScheme):
    """bcrypt only."""

    def generate_raw(
        self, password: bytes, *, user: str, policy: HashPolicy, rounds: int | None
    ) -> bytes:
        return bcrypt_generate(password, bcrypt_cost(rounds, policy))

    def verify_raw(self, password: bytes, raw: bytes, *, user: str) -> bool:
        return blowfish_verify(password, raw)

    def profile(self, stored: StoredHash) -> Profile:
        raw = self.decode(stored)
        if not _is_bcrypt(raw):
            raise MalformedHash("not a bcrypt ($2?$) value")
        return crypt_profile(raw)

    def target(self, policy: HashPolicy) -> Profile:
        return Profile("BLF-CRYPT", 4, (bcrypt_cost(None, policy),))


@dataclass(frozen=True, slots=True, kw_only=True)
class Md5Crypt(BaseScheme):
    """``$1$`` only (MD5-CRYPT), or ``$1$`` and else PLAIN-MD5 (``plain_md5_fallback``)."""

    plain_md5_fallback: bool = False

    def generate_raw(
        self, password: bytes, *, user: str, policy: HashPolicy, rounds: int | None
    ) -> bytes:
        return libcrypt_generate(password, b"$1$")

    def verify_raw(self, password: bytes, raw: bytes, *, user: str) -> bool:
        if self.plain_md5_fallback and not raw.startswith(b"$1$"):
            try:
                digest = PLAIN_MD5.decode(StoredHash("PLAIN-MD5", None, to_text(raw)))
            except MalformedHash as exc:
                raise MalformedHash("not a valid MD5-CRYPT or PLAIN-MD5 value") from exc
            return PLAIN_MD5.verify_raw(password, digest, user=user)
        return md5_crypt_verify(password, raw)

    def is_heavy(self, stored: StoredHash) -> bool:
        return not self.plain_md5_fallback or stored.data.startswith("$1$")

    def profile(self, stored: StoredHash) -> Profile:
        raw = self.decode(stored)
        if raw.startswith(b"$1$"):
            return Profile("MD5-CRYPT", 2)
        if self.plain_md5_fallback:
            return Profile("PLAIN-MD5", 1)
        raise MalformedHash("not an MD5-crypt ($1$) value")

    def target(self, policy: HashPolicy) -> Profile:
        return Profile("MD5-CRYPT", 2)


CRYPT = Crypt(name="CRYPT", family="BLF-CRYPT", strength=4, heavy=True, method="bcrypt")
DES_CRYPT = Crypt(name="DES-CRYPT", family="DES-CRYPT", strength=2, heavy=True, method="des")
SHA256_CRYPT = Crypt(
    name="SHA256-CRYPT", family="SHA256-CRYPT", strength=3, heavy=True, method="sha256"
)
SHA512_CRYPT = Crypt(
    name="SHA512-CRYPT", family="SHA512-CRYPT", strength=3, heavy=True, method="sha512"
)
BLF_CRYPT = BlfCrypt(name="BLF-CRYPT", family="BLF-CRYPT", strength=4, heavy=True)
MD5_CRYPT = Md5Crypt(name="MD5-CRYPT", family="MD5-CRYPT", strength=2, heavy=True)
MD5 = Md5Crypt(name="MD5", family="MD5-CRYPT", strength=2, heavy=True, plain_md5_fallback=True)
