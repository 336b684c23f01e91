"""The in-process guard store: plain dicts with expiry, bounded in size.

The default: one process, no other server. It is also what the guard falls back
to while Redis is unreachable. Memory is bounded: at most ``max_keys`` counters
and sets (the oldest are dropped first when full, which can only make the guard
forget, never block wrongly), and expired entries are swept as time passes.
Nothing here awaits, so every method is atomic with respect to the event loop.
"""

from __future__ import annotations

import heapq
import math
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from mailwarden.guard.stores.base import Ban, FlushHandler

DEFAULT_MAX_KEYS = 200_000

# What an expiry in the sweep heap belongs to.
_WINDOW, _SET, _BAN = 0, 1, 2


class MemoryStore:
    """:class:`~mailwarden.guard.stores.base.GuardStore` in this process's memory."""

    def __init__(self, *, max_keys: int = DEFAULT_MAX_KEYS) -> None:
        self.max_keys = max_keys
        # key -> (window index, count in it, count in the previous window, expiry)
        self._windows: OrderedDict[str, tuple[int, float, float, float]] = OrderedDict()
        self._bans: dict[str, tuple[str, float]] = {}
        # key -> member -> expiry (insertion order = age)
        self._sets: OrderedDict[str, OrderedDict[str, float]] = OrderedDict()
        self._handlers: list[FlushHandler] = []
        self._next_sweep = 0.0
        # (expiry, kind, key) of every write: the sweep pops what has expired instead
        # of walking every key (a walk over 100k known-network sets took tens of ms,
        # a pause for every login waiting behind it). Entries of keys since rewritten,
        # trimmed or deleted are stale and skipped; the heap is rebuilt from the
        # tables when it holds more than twice as many entries as they do.
        self._expiries: list[tuple[float, int, str]] = []

    # ------------------------------------------------------------ sliding windows

    @staticmethod
    def _estimate(
        entry: tuple[int, float, float, float] | None, period: float, now: float
    ) -> float:
        if entry is None:
            return 0.0
        index, current, previous, _ = entry
        now_index = math.floor(now / period)
        if now_index == index + 1:
            previous, current = current, 0.0
        elif now_index != index:
            return 0.0
        elapsed = now / period - now_index
        return current + previous * (1.0 - elapsed)

    async def hit(self, counters: Sequence[tuple[str, float]], now: float) -> list[float]:
        self._sweep(now)
        out = []
        for key, period in counters:
            now_index = math.floor(now / period)
            entry = self._windows.pop(key, None)
            if entry is None:
                current, previous = 0.0, 0.0
            else:
                index, current, previous, _ = entry
                if now_index == index + 1:
                    previous, current = current, 0.0
                elif now_index != index:
                    previous, current = 0.0, 0.0
            entry = (now_index, current + 1.0, previous, now + 2 * period)
            self._windows[key] = entry
            self._expire(entry[3], _WINDOW, key)
            out.append(self._estimate(entry, period, now))
        self._trim(self._windows)
        return out

    async def counts(self, counters: Sequence[tuple[str, float]], now: float) -> list[float]:
        return [self._estimate(self._windows.get(key), period, now) for key, period in counters]

    # ------------------------------------------------------------ bans

    async def ban(self, target: str, rule: str, ttl: float, now: float) -> None:
        old = self._bans.get(target)
        if old is None or old[1] < now + ttl:
            self._bans[target] = (rule, now + ttl)
            self._expire(now + ttl, _BAN, target)

    async def banned(self, targets: Sequence[str], now: float) -> str | None:
        return self.banned_now(targets, now)

    def banned_now(self, targets: Sequence[str], now: float) -> str | None:
        """:meth:`banned` without the coroutine (the guard's per-login check)."""
        for target in targets:
            entry = self._bans.get(target)
            if entry is not None:
                if entry[1] > now:
                    return target
                del self._bans[target]
        return None

    async def bans(self, now: float) -> list[Ban]:
        return sorted(
            (Ban(target=t, rule=r, expires=e) for t, (r, e) in self._bans.items() if e > now),
            key=lambda b: b.target,
        )

    async def unban(self, target: str | None) -> int:
        if target is None:
            n = len(self._bans)
            self._bans.clear()
            self._windows.clear()
            return n
        lifted = 1 if self._bans.pop(target, None) is not None else 0
        suffix = "|" + target
        for key in [k for k in self._windows if k.endswith(suffix)]:
            del self._windows[key]
        return lifted

    # ------------------------------------------------------------ sets

    async def add_member(self, key: str, member: str, ttl: float, limit: int, now: float) -> bool:
        self._sweep(now)
        members = self._sets.pop(key, None)
        if members is None:
            members = OrderedDict()
        else:
            for m in [m for m, exp in members.items() if exp <= now]:
                del members[m]
        new = member not in members
        members.pop(member, None)
        members[member] = now + ttl
        self._expire(now + ttl, _SET, key)
        while len(members) > limit:
            members.popitem(last=False)
        self._sets[key] = members
        self._trim(self._sets)
        return new

    async def has_member(self, key: str, member: str, now: float) -> bool:
        members = self._sets.get(key)
        if members is None:
            return False
        expiry = members.get(member)
        return expiry is not None and expiry > now

    # ------------------------------------------------------------ flush fan-out

    async def publish_flush(self, users: list[str] | None) -> None:
        for handler in self._handlers:
            handler(users)

    async def subscribe_flush(self, handler: FlushHandler) -> None:
        self._handlers.append(handler)

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        self._handlers.clear()

    # ------------------------------------------------------------ housekeeping

    def _trim(self, table: OrderedDict[str, Any]) -> None:
        while len(table) > self.max_keys:
            table.popitem(last=False)

    def _expire(self, expiry: float, kind: int, key: str) -> None:
        heap = self._expiries
        heapq.heappush(heap, (expiry, kind, key))
        if len(heap) > 2 * (len(self._windows) + len(self._sets) + len(self._bans)) + 1024:
            heap[:] = [
                *((e[3], _WINDOW, k) for k, e in self._windows.items()),
                *((max(m.values()), _SET, k) for k, m in self._sets.items() if m),
                *((e, _BAN, k) for k, (_, e) in self._bans.items()),
            ]
            heapq.heapify(heap)

    def _sweep(self, now: float) -> None:
        """Drop expired windows, sets and bans, at most once a second: only the keys
        whose expiry has come, found in the heap, are looked at."""
        if now < self._next_sweep:
            return
        self._next_sweep = now + 1.0
        heap = self._expiries
        while heap and heap[0][0] <= now:
            _, kind, key = heapq.heappop(heap)
            if kind == _WINDOW:
                window = self._windows.get(key)
                if window is not None and window[3] <= now:
                    del self._windows[key]
            elif kind == _SET:
                members = self._sets.get(key)
                if members is not None and all(e <= now for e in members.values()):
                    del self._sets[key]
            else:
                ban = self._bans.get(key)
                if ban is not None and ban[1] <= now:
                    del self._bans[key]
