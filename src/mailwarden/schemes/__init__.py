"""Password schemes: the registry and the functions the engine calls.

Belongs here: the one literal registry :data:`SCHEMES` and the package-level
operations over it — :func:`parse` (stored text to :class:`StoredHash`),
:func:`verify`, :func:`generate`, :func:`is_heavy`, :func:`needs_rehash`,
:func:`credentials` and :func:`dummy_hash`. Each scheme lives in its own module
(plain, digests, cram, cryptfamily, argon2, pbkdf2, scram, otp); a new scheme is one
new module and one new line below. Everything here is pure: no I/O, no asyncio.
docs/schemes.md lists every scheme with its format, aliases and strength rank.

Strength ranks (``Scheme.strength``, used by :func:`needs_rehash`):

====  ==========================================================================
rank  schemes
====  ==========================================================================
0     PLAIN, CLEAR, CLEARTEXT, PLAIN-TRUNC
1     SHA, SHA1, SHA256, SHA512, PLAIN-MD4, PLAIN-MD5, LDAP-MD5, CRAM-MD5,
      HMAC-MD5, DIGEST-MD5 (and ``{MD5}`` holding a plain digest)
2     SSHA, SSHA256, SSHA512, SMD5, DES-CRYPT, MD5-CRYPT, MD5, OTP
3     SHA256-CRYPT, SHA512-CRYPT, PBKDF2, SCRAM-SHA-1, SCRAM-SHA-256
4     BLF-CRYPT, CRYPT (generates bcrypt; yescrypt also ranks 4)
5     ARGON2I, ARGON2ID
====  ==========================================================================

For the crypt family the rank of a stored value comes from its data, not its label:
``{CRYPT}`` holding DES ranks 2, holding ``$6$`` ranks 3.
"""

from __future__ import annotations

import functools
import hmac
import secrets

from mailwarden.errors import MalformedHash, UnknownScheme
from mailwarden.schemes import argon2, cram, cryptfamily, digests, otp, pbkdf2, plain, scram
from mailwarden.schemes.base import HashPolicy, Scheme, StoredHash
from mailwarden.schemes.common import (
    DEFAULT_POLICY,
    ENCODINGS,
    BaseScheme,
    Profile,
    check_password,
    encode,
)

__all__ = [
    "CREDENTIAL_SCHEMES",
    "MAX_STORED_LENGTH",
    "SCHEMES",
    "HashPolicy",
    "Scheme",
    "StoredHash",
    "cost_profile",
    "credentials",
    "dummy_hash",
    "generate",
    "is_heavy",
    "needs_rehash",
    "parse",
    "verify",
]

#: Canonical upper-case name (aliases included) -> scheme. Dovecot 2.3's full set.
SCHEMES: dict[str, Scheme] = {
    "PLAIN": plain.PLAIN,
    "CLEAR": plain.CLEAR,
    "CLEARTEXT": plain.CLEARTEXT,
    "PLAIN-TRUNC": plain.PLAIN_TRUNC,
    "SHA": digests.SHA,
    "SHA1": digests.SHA1,
    "SHA256": digests.SHA256,
    "SHA512": digests.SHA512,
    "SSHA": digests.SSHA,
    "SSHA256": digests.SSHA256,
    "SSHA512": digests.SSHA512,
    "SMD5": digests.SMD5,
    "PLAIN-MD4": digests.PLAIN_MD4,
    "PLAIN-MD5": digests.PLAIN_MD5,
    "LDAP-MD5": digests.LDAP_MD5,
    "DIGEST-MD5": digests.DIGEST_MD5,
    "CRAM-MD5": cram.CRAM_MD5,
    "HMAC-MD5": cram.HMAC_MD5,
    "CRYPT": cryptfamily.CRYPT,
    "DES-CRYPT": cryptfamily.DES_CRYPT,
    "MD5": cryptfamily.MD5,
    "MD5-CRYPT": cryptfamily.MD5_CRYPT,
    "SHA256-CRYPT": cryptfamily.SHA256_CRYPT,
    "SHA512-CRYPT": cryptfamily.SHA512_CRYPT,
    "BLF-CRYPT": cryptfamily.BLF_CRYPT,
    "ARGON2I": argon2.ARGON2I,
    "ARGON2ID": argon2.ARGON2ID,
    "PBKDF2": pbkdf2.PBKDF2,
    "SCRAM-SHA-1": scram.SCRAM_SHA_1,
    "SCRAM-SHA-256": scram.SCRAM_SHA_256,
    "OTP": otp.OTP,
}

#: A stored value longer than this is refused as malformed (a security limit: every
#: reader takes a maximum size). The longest real hashes are ~150 characters.
MAX_STORED_LENGTH = 8192

# Values without a {SCHEME} prefix whose own prefix says what they are. Dovecot
# itself only recognises $1$; the others are unambiguous and save administrators
# from a wrong default_scheme. Order matters only where prefixes could overlap.
_BARE_PREFIXES = (
    ("$argon2id$", "ARGON2ID"),
    ("$argon2i$", "ARGON2I"),
    ("$2a$", "BLF-CRYPT"),
    ("$2b$", "BLF-CRYPT"),
    ("$2x$", "BLF-CRYPT"),
    ("$2y$", "BLF-CRYPT"),
    ("$5$", "SHA256-CRYPT"),
    ("$6$", "SHA512-CRYPT"),
    ("$y$", "CRYPT"),
)

# Keys the salts of SCRAM credentials derived from a plaintext (see credentials()).
_SCRAM_SALT_KEY = secrets.token_bytes(32)

# Schemes whose credentials a challenge-response mechanism can use and that can be
# derived from a stored plaintext (Dovecot can derive any; the others are useless
# to a mechanism and some are expensive).
CREDENTIAL_SCHEMES = frozenset(
    {
        "PLAIN",
        "CLEAR",
        "CLEARTEXT",
        "CRAM-MD5",
        "HMAC-MD5",
        "DIGEST-MD5",
        "SCRAM-SHA-1",
        "SCRAM-SHA-256",
    }
)


def _split_name(name: str) -> tuple[str, str | None]:
    """``SHA256.HEX`` -> ``("SHA256", "hex")``; UnknownScheme for unknown either part."""
    scheme, dot, suffix = name.partition(".")
    scheme = scheme.upper()
    # ASCII only, as Dovecot's strcasecmp: str.upper() would turn "ſha" into "SHA".
    if not name.isascii() or scheme not in SCHEMES:
        raise UnknownScheme(f"unknown password scheme {name[:40]!r}")
    if not dot:
        return scheme, None
    encoding = ENCODINGS.get(suffix.lower())
    if encoding is None:
        raise UnknownScheme(f"unknown encoding {suffix[:20]!r} in password scheme {name[:40]!r}")
    return scheme, encoding


def _scheme(name: str) -> Scheme:
    try:
        return SCHEMES[name]
    except KeyError:
        raise UnknownScheme(f"unknown password scheme {name[:40]!r}") from None


def _base(name: str) -> BaseScheme:
    scheme = _scheme(name)
    if not isinstance(scheme, BaseScheme):  # pragma: no cover - every registered one is
        raise UnknownScheme(f"password scheme {name!r} has no encoding support")
    return scheme


def parse(stored: str, *, default_scheme: str = "CRYPT") -> StoredHash:
    """Split a stored password into scheme, encoding and data.

    ``{SCHEME}data`` and ``{SCHEME.HEX}`` / ``.B64`` / ``.BASE64`` with any case;
    OpenLDAP's and qmail-ldap's ``{crypt}``, ``{MD5}``, ``{SHA}``, ``{SSHA}``,
    ``{SMD5}`` are the same names. Without a prefix: ``$1$salt$hash[$ignored]`` is
    MD5-CRYPT with anything after the hash dropped (Dovecot's rule), ``$5$``/``$6$``
    SHA256/512-CRYPT, ``$2?$`` BLF-CRYPT, ``$argon2i(d)$`` ARGON2I(D), ``$y$``
    CRYPT (yescrypt), anything else ``default_scheme``. UnknownScheme for an unknown
    name, MalformedHash for a value over :data:`MAX_STORED_LENGTH` or with NUL.
    """
    if len(stored) > MAX_STORED_LENGTH:
        raise MalformedHash(f"stored password longer than {MAX_STORED_LENGTH} characters")
    if "\0" in stored:
        raise MalformedHash("stored password contains a NUL character")
    if stored.startswith("$1$"):
        salt_end = stored.find("$", 3)
        if salt_end >= 0:
            hash_end = stored.find("$", salt_end + 1)
            data = stored if hash_end < 0 else stored[:hash_end]
            return StoredHash("MD5-CRYPT", None, data)
    if stored.startswith("{"):
        close = stored.find("}")
        if close >= 0:
            scheme, encoding = _split_name(stored[1:close])
            return StoredHash(scheme, encoding, stored[close + 1 :])
    for prefix, scheme in _BARE_PREFIXES:
        if stored.startswith(prefix):
            return StoredHash(scheme, None, stored)
    scheme, encoding = _split_name(default_scheme)
    return StoredHash(scheme, encoding, stored)


def verify(password: bytes, stored: StoredHash, *, user: str = "") -> bool:
    """True when ``password`` matches ``stored``.

    Pure, possibly slow (see :func:`is_heavy`). ``user`` is needed by DIGEST-MD5.
    Raises UnknownScheme or MalformedHash when ``stored`` can never verify anything.
    """
    return _scheme(stored.scheme).verify(password, stored, user=user)


def is_heavy(stored: StoredHash) -> bool:
    """Whether verifying ``stored`` costs enough CPU to leave the event loop."""
    scheme = _scheme(stored.scheme)
    if isinstance(scheme, BaseScheme):
        return scheme.is_heavy(stored)
    return scheme.heavy  # pragma: no cover - every registered scheme is a BaseScheme


def generate(
    password: bytes,
    scheme: str,
    *,
    user: str = "",
    rounds: int | None = None,
    policy: HashPolicy | None = None,
) -> str:
    """``{SCHEME}data`` for ``password``, as ``doveadm pw -s SCHEME [-r ROUNDS] -u USER``.

    ``scheme`` may carry an encoding suffix (``SHA256.HEX``). ``rounds`` (``-r``) wins
    over the policy's cost for that scheme; ``policy`` defaults to ``HashPolicy()``.
    ValueError for a password with a NUL byte.
    """
    name, encoding = _split_name(scheme)
    impl = _scheme(name)
    policy = policy or DEFAULT_POLICY
    if encoding is None:
        data = impl.generate(password, user=user, policy=policy, rounds=rounds)
    else:
        check_password(password)
        raw = _base(name).generate_raw(password, user=user, policy=policy, rounds=rounds)
        data = encode(raw, encoding)
    return StoredHash(name, encoding, data).encoded()


def needs_user(scheme: str) -> bool:
    """Whether ``scheme`` (``NAME[.ENCODING]``) needs the username, as DIGEST-MD5 does.
    UnknownScheme if it names no scheme."""
    return _base(_split_name(scheme)[0]).needs_user


def needs_rehash(stored: StoredHash, policy: HashPolicy) -> bool:
    """True when ``stored`` is weaker than what ``policy`` would generate now.

    Weaker means a lower strength rank, or the same algorithm with a lower cost
    (argon2 memory or time, bcrypt cost, SHA-crypt / PBKDF2 rounds, SCRAM iterations).
    A stronger value is never downgraded. A value whose parameters cannot be read
    needs replacing, so it answers True.
    """
    try:
        have = _base(stored.scheme).profile(stored)
    except MalformedHash:
        return True
    want = _base(_split_name(policy.scheme)[0]).target(policy)
    if have.strength != want.strength:
        return have.strength < want.strength
    if have.kind != want.kind:
        return False
    return any(h < w for h, w in zip(have.costs, want.costs, strict=True))


def credentials(stored: StoredHash, wanted: str, *, user: str = "") -> bytes | None:
    """Raw credentials of scheme ``wanted`` for a challenge-response mechanism, or None.

    From a stored value of the same scheme (or an alias: CRAM-MD5 = HMAC-MD5, …) its
    decoded credentials: the 32-byte CRAM-MD5 state, the 16-byte DIGEST-MD5 hash,
    the SCRAM ``iter,salt,storedkey,serverkey`` text, the plaintext. From a plaintext
    (PLAIN, CLEAR, CLEARTEXT) also the credentials of CRAM-MD5, DIGEST-MD5 (of
    ``user``) and SCRAM-SHA-1/256 (4096 iterations, a salt that is stable for the
    process's lifetime and unpredictable from outside). Otherwise None, and
    None too for data that cannot be decoded: verification reports that as
    MalformedHash; a credentials lookup simply has nothing to offer.
    """
    name = wanted.partition(".")[0].upper()
    target = SCHEMES.get(name)
    source = SCHEMES.get(stored.scheme)
    if not isinstance(target, BaseScheme) or not isinstance(source, BaseScheme):
        return None
    try:
        raw = source.decode(stored)
    except MalformedHash:
        return None
    if source.family == target.family:
        return raw
    if source.family != "PLAIN" or name not in CREDENTIAL_SCHEMES or b"\0" in raw:
        return None
    if isinstance(target, scram.Scram):
        # A SASL exchange may ask twice (once for the salt it sends, once to check
        # the proof), so the salt must not change between calls. It is keyed with a
        # per-process secret: derived from the user alone, anyone could compute it
        # and tell plaintext accounts from unknown users (whose fake salts are keyed
        # by the engine); with the password in the key it changes when that does.
        salt = hmac.digest(_SCRAM_SALT_KEY, f"{name}\0{user}\0".encode() + raw, "sha256")
        return target.stored_text(raw, salt[: scram.SALT_SIZE], scram.MIN_ITERATIONS)
    return target.generate_raw(raw, user=user, policy=DEFAULT_POLICY, rounds=None)


@functools.lru_cache(maxsize=8)
def dummy_hash(policy: HashPolicy) -> StoredHash:
    """A hash of a random password in the policy's scheme, made once per policy.

    Verifying an unknown user's password against it costs what a real verification
    costs, so response times do not reveal which usernames exist.
    """
    password = secrets.token_urlsafe(24).encode("ascii")
    return parse(generate(password, policy.scheme, policy=policy))


def cost_profile(stored: StoredHash) -> Profile | None:
    """What verifying ``stored`` costs: its algorithm and work factors (argon2 memory
    and time, bcrypt cost, rounds...), or None for a value that cannot be read.
    Two values with the same profile take the same time to verify."""
    try:
        return _base(stored.scheme).profile(stored)
    except (MalformedHash, UnknownScheme):
        return None
