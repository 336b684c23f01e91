"""The password-scheme interface and the parsed form of a stored password.

A scheme is a small object with a name that can *generate* an encoded hash for a
password and *verify* a password against one (passlib's interface, without its
metaprogramming). Schemes are pure: no I/O, no asyncio. Whether a verification is
expensive enough to leave the event loop is a property of the scheme (``heavy``);
``mailwarden.hashing.pool`` acts on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from mailwarden.model import HashPolicy as HashPolicy  # noqa: PLC0414 - re-exported


@dataclass(frozen=True, slots=True)
class StoredHash:
    """A stored password split into its parts.

    ``scheme`` is the canonical registry name (upper case, e.g. ``SHA512-CRYPT``);
    ``encoding`` is the explicit suffix of ``{SCHEME.HEX}`` / ``{SCHEME.B64}``
    (``"hex"`` / ``"b64"``) or ``None``; ``data`` is everything after the prefix.
    """

    scheme: str
    encoding: str | None
    data: str

    def __repr__(self) -> str:
        # A stored hash is not the password, but it is still a secret worth
        # keeping out of logs and tracebacks.
        return f"StoredHash(scheme={self.scheme!r}, encoding={self.encoding!r}, data=<hidden>)"

    def encoded(self) -> str:
        """The value as it is stored, with its ``{SCHEME}`` prefix."""
        suffix = f".{self.encoding.upper()}" if self.encoding else ""
        return f"{{{self.scheme}{suffix}}}{self.data}"


class Scheme(Protocol):
    """One password scheme.

    ``verify`` raises :class:`~mailwarden.errors.MalformedHash` when ``stored.data``
    can never verify anything (wrong length, bad base64 ...); it returns ``False``
    for a wrong password. It compares in constant time where the scheme allows.
    """

    @property
    def name(self) -> str: ...

    @property
    def heavy(self) -> bool:
        """True when one verification costs enough CPU to run off the event loop."""
        ...

    @property
    def strength(self) -> int:
        """Rank used by the rehash policy: higher is stronger (see docs/schemes.md)."""
        ...

    def generate(
        self, password: bytes, *, user: str, policy: HashPolicy, rounds: int | None
    ) -> str:
        """The data to store after ``{NAME}`` for ``password``."""
        ...

    def verify(self, password: bytes, stored: StoredHash, *, user: str) -> bool: ...
