"""What every scheme module shares: the base class, Dovecot's encodings, salts, profiles.

Belongs here: behaviour that is the same for all schemes and defined by Dovecot's
password-scheme.c rather than by one algorithm — decoding ``{SCHEME}`` data as hex or
base64 (with its length-based guess), the salt alphabet, the NUL-byte rule, and the
:class:`Profile` the rehash policy compares. Nothing algorithm-specific lives here.

Every concrete scheme derives from :class:`BaseScheme`, which satisfies the
:class:`~mailwarden.schemes.base.Scheme` protocol and adds what the package functions
need: the raw (undecoded) generate and verify steps, Dovecot's default encoding and
raw length, the alias ``family`` and the cost profile.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
import secrets
import string
from abc import ABC, abstractmethod
from dataclasses import dataclass

from mailwarden.errors import MalformedHash
from mailwarden.schemes.base import HashPolicy, StoredHash

DEFAULT_POLICY = HashPolicy()

#: Encoding suffixes of ``{SCHEME.SUFFIX}`` (case-insensitive) and what they mean.
ENCODINGS = {"b64": "b64", "base64": "b64", "hex": "hex"}

#: Dovecot's salt alphabet (password-scheme.c ``salt_chars``), also crypt(3)'s.
SALT_CHARS = "./" + string.digits + string.ascii_uppercase + string.ascii_lowercase

_HEX = re.compile(r"(?:[0-9A-Fa-f]{2})*")
_B64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_WHITESPACE = str.maketrans("", "", " \t\r\n")


def salt_text(length: int) -> str:
    """``length`` random characters from :data:`SALT_CHARS` (Dovecot's text salts)."""
    return "".join(secrets.choice(SALT_CHARS) for _ in range(length))


def to_bytes(text: str) -> bytes:
    """Stored text as the bytes Dovecot would see (UTF-8; escaped bytes kept)."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError as exc:
        raise MalformedHash("the stored value is not encodable text") from exc


def to_text(raw: bytes) -> str:
    """The inverse of :func:`to_bytes`: never fails, round-trips every byte."""
    return raw.decode("utf-8", "surrogateescape")


def decode_hex(text: str) -> bytes:
    """Strict hex (either case, even length, nothing else), as Dovecot's hex_to_binary."""
    if _HEX.fullmatch(text) is None:
        raise MalformedHash("input isn't valid hex encoded data")
    return bytes.fromhex(text)


def decode_b64(text: str) -> bytes:
    """Standard base64. Like Dovecot's decoder, whitespace is skipped and padding required."""
    compact = text.translate(_WHITESPACE)
    if _B64.fullmatch(compact) is None or len(compact) % 4 != 0:
        raise MalformedHash("input isn't valid base64 encoded data")
    try:
        return base64.b64decode(compact, validate=True)
    except binascii.Error as exc:
        raise MalformedHash("input isn't valid base64 encoded data") from exc


def encode(raw: bytes, encoding: str | None) -> str:
    """Raw scheme output as stored text: as is, hex (lower case) or padded base64."""
    if encoding == "hex":
        return raw.hex()
    if encoding == "b64":
        return base64.b64encode(raw).decode("ascii")
    return to_text(raw)


def chosen(rounds: int | None, default: int) -> int:
    """``rounds`` if given, else ``default``: ``doveadm pw -r 0`` also means the default."""
    if rounds is None or rounds == 0:
        return default
    if rounds < 0:
        raise ValueError(f"rounds must be a positive integer, not {rounds}")
    return rounds


def check_password(password: bytes) -> None:
    """Refuse to hash a password that Dovecot could never receive (see BaseScheme)."""
    if b"\0" in password:
        raise ValueError("a password cannot contain a NUL byte")


@dataclass(frozen=True, slots=True)
class Profile:
    """What a stored value really is, for the rehash policy.

    ``kind`` names the algorithm actually used (``{CRYPT}$6$…`` is ``SHA512-CRYPT``);
    ``strength`` is its rank (docs/schemes.md); ``costs`` are its work factors in a
    fixed order per kind (argon2: memory KiB, time; bcrypt: cost; SHA-crypt, PBKDF2,
    SCRAM: rounds), compared element by element against the policy's.
    """

    kind: str
    strength: int
    costs: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class BaseScheme(ABC):
    """A scheme as Dovecot defines it: raw generate/verify plus an encoding.

    ``family`` groups names Dovecot treats as aliases because they share one
    generator (``SHA``/``SHA1``, ``CRAM-MD5``/``HMAC-MD5``, ``CRYPT``/``BLF-CRYPT``…).
    ``default_encoding`` is how raw output is stored without a suffix; ``raw_len``,
    when not 0, is the fixed decoded length that enables Dovecot's hex/base64 guess.

    **Passwords with a NUL byte never verify.** Dovecot handles passwords as C
    strings: every scheme it implements stops at the first NUL, so ``abc\\0xyz``
    would verify as ``abc``. No Dovecot client can send such a password anyway (the
    auth protocol and SASL PLAIN use NUL and TAB as separators), so refusing them is
    both compatible and removes a truncation trap.
    """

    name: str
    strength: int
    family: str
    heavy: bool = False
    default_encoding: str | None = None
    raw_len: int = 0
    #: The value depends on the username (DIGEST-MD5): generating or verifying it
    #: without one gives a value for the empty name (doveadm pw refuses; so do we).
    needs_user: bool = False

    # ------------------------------------------------------------------ protocol

    def generate(
        self, password: bytes, *, user: str, policy: HashPolicy, rounds: int | None
    ) -> str:
        """The data to store after ``{NAME}``, in this scheme's default encoding."""
        check_password(password)
        raw = self.generate_raw(password, user=user, policy=policy, rounds=rounds)
        return encode(raw, self.default_encoding)

    def verify(self, password: bytes, stored: StoredHash, *, user: str) -> bool:
        """True when ``password`` matches; MalformedHash when ``stored`` never can."""
        raw = self.decode(stored)
        if b"\0" in password:
            return False
        return self.verify_raw(password, raw, user=user)

    # ------------------------------------------------------------------ raw steps

    @abstractmethod
    def generate_raw(
        self, password: bytes, *, user: str, policy: HashPolicy, rounds: int | None
    ) -> bytes:
        """The raw credentials of ``password`` (before hex/base64 encoding)."""

    def verify_raw(self, password: bytes, raw: bytes, *, user: str) -> bool:
        """Deterministic schemes: regenerate and compare in constant time."""
        expected = self.generate_raw(password, user=user, policy=DEFAULT_POLICY, rounds=None)
        return hmac.compare_digest(expected, raw)

    def decode(self, stored: StoredHash) -> bytes:
        """``stored.data`` decoded as Dovecot's password_decode() does.

        Without a suffix, a fixed-length scheme guesses: data twice the raw length is
        hex (base64 if the hex is invalid), anything else base64. The decoded length
        must then equal ``raw_len``.
        """
        text = stored.data
        if "\0" in text:
            raise MalformedHash(f"{self.name} data contains a NUL byte")
        encoding = stored.encoding or self.default_encoding
        if encoding is None:
            return to_bytes(text)
        if stored.encoding is None and self.raw_len:
            if len(text) == 2 * self.raw_len:
                try:
                    raw = decode_hex(text)
                except MalformedHash:
                    raw = decode_b64(text)
            else:
                raw = decode_b64(text)
        elif encoding == "hex":
            raw = decode_hex(text)
        else:
            raw = decode_b64(text)
        if self.raw_len and len(raw) != self.raw_len:
            raise MalformedHash(
                f"{self.name} data decodes to {len(raw)} bytes instead of {self.raw_len}"
            )
        return raw

    # ------------------------------------------------------------------ policy

    def is_heavy(self, stored: StoredHash) -> bool:
        """Whether verifying ``stored`` is heavy; only MD5 depends on the data."""
        return self.heavy

    def profile(self, stored: StoredHash) -> Profile:
        """What ``stored`` is (kind, strength, costs); MalformedHash if unreadable."""
        return Profile(self.family, self.strength)

    def target(self, policy: HashPolicy) -> Profile:
        """What :meth:`generate` makes under ``policy``."""
        return Profile(self.family, self.strength)
