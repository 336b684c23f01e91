"""The login history in this process's memory: the reference store, for tests and
for the in-memory state store (``state.backend = "memory"``)."""

from __future__ import annotations

import collections
from collections.abc import Sequence

from mailwarden.history.base import MAX_ROWS, LoginEvent


class MemoryHistory:
    """:class:`~mailwarden.history.base.HistoryStore` in a dict of bounded deques."""

    def __init__(self) -> None:
        self._by_uid: dict[str, collections.deque[LoginEvent]] = {}

    async def add_logins(self, events: Sequence[LoginEvent], *, keep: int, ttl: float) -> None:
        for event in events:
            found = self._by_uid.get(event.uid)
            if found is None or found.maxlen != keep:
                found = self._by_uid[event.uid] = collections.deque(found or (), maxlen=keep)
            found.append(event)

    async def logins(self, uid: str, *, limit: int, since: float) -> list[LoginEvent]:
        found = self._by_uid.get(uid, ())
        limit = max(0, min(limit, MAX_ROWS))
        newest = [e for e in reversed(found) if e.at >= since]
        return newest[:limit]

    async def prune_logins(self, before: float, *, keep: int) -> int:
        removed = 0  # each deque is cut to ``keep`` as it is written
        for uid in list(self._by_uid):
            kept = self._by_uid[uid]
            while kept and kept[0].at < before:
                kept.popleft()
                removed += 1
            if not kept:
                del self._by_uid[uid]
        return removed
