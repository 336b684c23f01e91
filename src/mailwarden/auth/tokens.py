"""Random secrets that mailwarden issues itself: app passwords and API tokens.

A password is chosen by a person, so it is stored behind a slow hash: whoever
steals the stored value must still guess. A secret issued here is not chosen:
it is 120 random bits, shown once, and no one can guess it offline or online.
A slow hash would only make every verification cost milliseconds (and, for an
account with ten app passwords, ten of them), so these are stored as a keyed
fast digest instead and verified in microseconds:

* **the value** is ``<prefix>_<24 characters>``: an identifying prefix per kind
  (``mwa`` app password, ``mwt`` API token; secret scanners and people can tell
  what leaked), then 120 random bits in lowercase RFC 4648 base32, which a phone
  keyboard can type and which survives case folding;
* **the digest** is HMAC-SHA-256 keyed with the kind's name. The key is not a
  secret (it need not be: the input cannot be guessed); it separates the kinds,
  so an app password's digest never matches an API token's, and it makes the
  stored value useless for any other purpose;
* **verification** recognises the prefix first, so an ordinary password never
  pays for a digest, then compares digests with :func:`hmac.compare_digest`.

Nothing here does I/O; who stores the digests (the directory, the admin store)
decides what else is kept beside them.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import secrets
from dataclasses import dataclass

__all__ = ["Issued", "TokenKind", "digest", "issue", "matches", "recognise"]

_RANDOM_BYTES = 15  # 120 bits: 24 base32 characters, no padding
_LENGTH = 24
_ALPHABET = frozenset("abcdefghijklmnopqrstuvwxyz234567")


class TokenKind(enum.Enum):
    """What a token is for; the value is its prefix."""

    APP_PASSWORD = "mwa"  # noqa: S105 (a prefix, not a secret)
    API_TOKEN = "mwt"  # noqa: S105

    @property
    def key(self) -> bytes:
        return b"mailwarden " + self.name.lower().encode()


@dataclass(frozen=True, slots=True)
class Issued:
    """A new token: ``value`` is shown once and never stored; ``digest`` is stored."""

    value: str
    digest: str

    def __repr__(self) -> str:
        return f"Issued(value=<hidden>, digest={self.digest!r})"

    __str__ = __repr__


def issue(kind: TokenKind) -> Issued:
    """A new random token of ``kind`` and the digest to store for it."""
    body = base64.b32encode(secrets.token_bytes(_RANDOM_BYTES)).decode().lower()
    value = f"{kind.value}_{body}"
    return Issued(value=value, digest=digest(kind, value))


def recognise(kind: TokenKind, presented: bytes | str) -> str | None:
    """``presented`` as a token of ``kind`` (case folded, surrounding blanks and the
    spaces or dashes a person may type between groups removed), or ``None`` when it
    cannot be one: then it is an ordinary password and no digest is computed."""
    if isinstance(presented, bytes):
        try:
            text = presented.decode("ascii")
        except UnicodeDecodeError:
            return None
    else:
        text = presented
    text = text.strip().lower()
    prefix = kind.value + "_"
    if not text.startswith(prefix):
        return None
    body = text[len(prefix) :].replace(" ", "").replace("-", "")
    if len(body) != _LENGTH or not _ALPHABET.issuperset(body):
        return None
    return prefix + body


def digest(kind: TokenKind, value: str) -> str:
    """The stored form of a recognised ``value``: hex HMAC-SHA-256 under the kind's key."""
    return hmac.new(kind.key, value.encode("ascii"), hashlib.sha256).hexdigest()


def matches(kind: TokenKind, presented: bytes | str, stored: str) -> bool:
    """Whether ``presented`` is the token whose digest is ``stored``."""
    value = recognise(kind, presented)
    return value is not None and hmac.compare_digest(digest(kind, value), stored)
