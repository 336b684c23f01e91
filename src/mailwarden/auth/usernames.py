"""Username normalisation, as Dovecot's auth process does it.

Order (auth-request-fields.c): append the default realm when there is no ``@``,
reject characters outside ``username_chars``, apply ``username_format``, reject an
empty result. Pure functions over values; the engine calls them before any
directory lookup, so every front end treats names the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailwarden.config import AuthConfig


@dataclass(frozen=True, slots=True)
class UsernameRules:
    """Precomputed from ``[auth]`` once, used on every attempt."""

    fmt: str
    realm: str
    chars: frozenset[str]
    max_length: int

    @classmethod
    def from_config(cls, auth: AuthConfig) -> UsernameRules:
        return cls(
            fmt=auth.username_format,
            realm=auth.default_realm,
            chars=frozenset(auth.username_chars),
            max_length=auth.max_username_length,
        )

    def normalise(self, name: str) -> str | None:
        """The canonical form of ``name``, or None when it can never be a valid login.

        None is not an error to show: the engine treats it exactly like an
        unknown user (including the dummy verification), so a client cannot tell
        a badly formed name from a missing account.
        """
        if not name or len(name) > self.max_length:
            return None
        if self.realm and "@" not in name:
            name = f"{name}@{self.realm}"
        if self.chars and not self.chars.issuperset(name):
            return None
        match self.fmt:
            case "%Lu":
                name = name.lower()
            case "%Ln":
                name = name.split("@", 1)[0].lower()
            case "%n":
                name = name.split("@", 1)[0]
            case _:
                pass
        return name or None
