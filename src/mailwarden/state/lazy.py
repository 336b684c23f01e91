"""A state store opened on first use.

Most commands never touch the state store (``auth test``, ``checkpassword``'s
local path, ``export``), and a read-only user may run them where the state file
cannot be opened. app.py therefore hands out this wrapper: the real store is opened
by the first call that needs it, once, and an open that failed is tried again by
the next call (StateUnavailable each time, never a crash).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from mailwarden.history.base import LoginEvent
from mailwarden.state.base import (
    Administrator,
    ApiToken,
    AuditEntry,
    AuditQuery,
    SecondFactor,
    StateStore,
)


class LazyStateStore:
    """:class:`~mailwarden.state.base.StateStore` that opens ``opener()`` when first used."""

    def __init__(self, opener: Callable[[], Awaitable[StateStore]]) -> None:
        self._opener = opener
        self._store: StateStore | None = None
        self._lock = asyncio.Lock()

    async def _get(self) -> StateStore:
        if self._store is None:
            async with self._lock:
                if self._store is None:
                    self._store = await self._opener()
        return self._store

    async def record(self, entry: AuditEntry) -> None:
        await (await self._get()).record(entry)

    async def audit(self, query: AuditQuery) -> list[AuditEntry]:
        return await (await self._get()).audit(query)

    async def admin(self, name: str) -> Administrator | None:
        return await (await self._get()).admin(name)

    async def admins(self) -> list[Administrator]:
        return await (await self._get()).admins()

    async def add_admin(self, admin: Administrator, *, first: bool = False) -> bool:
        return await (await self._get()).add_admin(admin, first=first)

    async def replace_admin(self, admin: Administrator) -> bool:
        return await (await self._get()).replace_admin(admin)

    async def remove_admin(self, name: str) -> bool:
        return await (await self._get()).remove_admin(name)

    async def token(self, digest: str) -> ApiToken | None:
        return await (await self._get()).token(digest)

    async def tokens(self) -> list[ApiToken]:
        return await (await self._get()).tokens()

    async def add_token(self, token: ApiToken) -> None:
        await (await self._get()).add_token(token)

    async def remove_token(self, name: str) -> bool:
        return await (await self._get()).remove_token(name)

    async def factor(self, owner: str) -> SecondFactor | None:
        return await (await self._get()).factor(owner)

    async def swap_factor(self, owner: str, expected: int | None, new: SecondFactor | None) -> bool:
        return await (await self._get()).swap_factor(owner, expected, new)

    async def add_logins(self, events: Sequence[LoginEvent], *, keep: int, ttl: float) -> None:
        await (await self._get()).add_logins(events, keep=keep, ttl=ttl)

    async def logins(self, uid: str, *, limit: int, since: float) -> list[LoginEvent]:
        return await (await self._get()).logins(uid, limit=limit, since=since)

    async def prune_logins(self, before: float, *, keep: int) -> int:
        return await (await self._get()).prune_logins(before, keep=keep)

    async def close(self) -> None:
        if self._store is not None:
            await self._store.close()
            self._store = None
