"""The ``GuardStore`` protocol: the guard's shared state, behind a few simple primitives.

Two implementations: :mod:`~mailwarden.guard.stores.memory` (one process, the default)
and :mod:`~mailwarden.guard.stores.redis` (every worker and node of a site). The guard
(guard.py) holds all policy; a store only counts, remembers and forgets, so both
behave the same and the Redis one needs no server-side scripts.

Every method may raise :class:`~mailwarden.errors.StoreUnavailable`; the guard
catches it and falls back to local state (docs/guard.md), so a store failure is
never a wrong password and never an accept.

Keys are opaque strings built by the guard (``"ip-minute|192.0.2.7/32"``); a store
may prefix them but must not interpret them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Ban:
    """A blocked network (``192.0.2.0/24``) or account (``account:alice``)."""

    target: str
    rule: str
    expires: float  # UNIX time


FlushHandler = Callable[[list[str] | None], object]


class GuardStore(Protocol):
    async def hit(self, counters: Sequence[tuple[str, float]], now: float) -> list[float]:
        """Count one event in each ``(key, period)`` sliding window; return the new
        estimates (events in the last ``period`` seconds), in order."""
        ...

    async def counts(self, counters: Sequence[tuple[str, float]], now: float) -> list[float]:
        """The current estimates of ``(key, period)`` windows, without counting."""
        ...

    async def ban(self, target: str, rule: str, ttl: float, now: float) -> None:
        """Block ``target`` for ``ttl`` seconds (an existing longer ban stays)."""
        ...

    async def banned(self, targets: Sequence[str], now: float) -> str | None:
        """The first of ``targets`` that is blocked, or None."""
        ...

    async def bans(self, now: float) -> list[Ban]:
        """Every active ban."""
        ...

    async def unban(self, target: str | None) -> int:
        """Lift the ban on ``target`` (None: every ban) and reset its counters;
        the number of bans lifted."""
        ...

    async def add_member(self, key: str, member: str, ttl: float, limit: int, now: float) -> bool:
        """Add ``member`` to the set ``key`` (kept ``ttl`` seconds after its last
        add, at most ``limit`` newest members); whether it was new."""
        ...

    async def has_member(self, key: str, member: str, now: float) -> bool: ...

    async def publish_flush(self, users: list[str] | None) -> None:
        """Tell every process sharing this store to forget cached logins of
        ``users`` (None: all)."""
        ...

    async def subscribe_flush(self, handler: FlushHandler) -> None:
        """Call ``handler`` for every flush published by any process (this one too)."""
        ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


StoreFactory = Callable[[], Awaitable[GuardStore]]
