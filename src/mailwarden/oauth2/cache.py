"""The introspection cache: active answers remembered until the token expires.

Bounded in size and in time: an entry lives until the earlier of the token's ``exp``
and ``ttl`` seconds after it was asked (a token revoked at the provider keeps
working here for at most ``ttl``), and when the cache is full the oldest entry goes.
Refusals are not remembered: a refused token costs one request each time, and the
guard counts it like a wrong password. Keys are a keyed digest of the token, so the
process does not hold the tokens themselves longer than a request. No I/O; the
clock is passed in.
"""

from __future__ import annotations

import hashlib
import secrets

from mailwarden.oauth2.claims import TokenIdentity


class IntrospectionCache:
    """Token digest -> (identity, until)."""

    def __init__(self, *, size: int, ttl: float) -> None:
        self.size = size
        self.ttl = ttl
        self._key = secrets.token_bytes(16)
        self._entries: dict[bytes, tuple[TokenIdentity, float]] = {}

    def _digest(self, token: str) -> bytes:
        return hashlib.blake2b(token.encode(), key=self._key, digest_size=16).digest()

    def get(self, token: str, now: float) -> TokenIdentity | None:
        digest = self._digest(token)
        entry = self._entries.get(digest)
        if entry is None:
            return None
        identity, until = entry
        if now >= until:
            del self._entries[digest]
            return None
        return identity

    def put(self, token: str, identity: TokenIdentity, now: float) -> None:
        if self.size <= 0 or self.ttl <= 0:
            return
        until = now + self.ttl
        if identity.expires_at is not None:
            until = min(until, identity.expires_at)
        if until <= now:
            return
        if len(self._entries) >= self.size:
            self._evict(now)
        self._entries[self._digest(token)] = (identity, until)

    def _evict(self, now: float) -> None:
        """Drop what has expired; if that frees nothing, the oldest tenth (at least one)."""
        for digest in [d for d, (_, until) in self._entries.items() if now >= until]:
            del self._entries[digest]
        if len(self._entries) < self.size:
            return
        for digest in list(self._entries)[: max(1, self.size // 10)]:
            del self._entries[digest]

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
