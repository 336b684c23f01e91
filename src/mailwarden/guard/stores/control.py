"""A guard store that is the running daemon's: one-shot commands share its state.

``mailwarden checkpassword`` (when it decides in-process: APOP, or ``via =
"local"``), ``mailwarden pam`` and ``mailwarden auth test`` run as separate
processes. With the default in-memory store their guard would start empty every
time and see none of the daemon's bans. When the daemon's control socket is
reachable they use this store instead: every store operation is forwarded over
the socket (op ``store``) and runs on the daemon's own store, so a ban made over
IMAP holds for checkpassword and PAM too, and their failures count towards it.

Any socket problem raises StoreUnavailable; the guard then carries on with local
state, as it does when Redis is down. The password history (distinct wrong
passwords) stays in the calling process, like every per-process HMAC key.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mailwarden.client import DaemonClient
from mailwarden.errors import ProtocolError, StoreUnavailable
from mailwarden.guard.stores.base import Ban, FlushHandler


class ControlStore:
    """:class:`~mailwarden.guard.stores.base.GuardStore` backed by the daemon's control socket."""

    def __init__(self, path: Path, *, timeout: float = 2.0) -> None:
        self.path = path
        self.timeout = timeout
        # One connection, kept: a login makes several store calls.
        self._client = DaemonClient(path, timeout=timeout)
        self._lock = asyncio.Lock()

    async def _ask(self, method: str, *args: Any) -> Any:
        async with self._lock:
            try:
                # The blocking client in a thread: the event loop keeps running, and
                # every wait is bounded by the client's socket timeout.
                return await asyncio.to_thread(
                    self._client.ask, "store", method=method, args=list(args)
                )
            except OSError as exc:
                raise StoreUnavailable(f"daemon control socket {self.path}: {exc!r}") from exc
            except ProtocolError as exc:
                raise StoreUnavailable(f"daemon control socket {self.path}: {exc}") from exc

    async def hit(self, counters: Sequence[tuple[str, float]], now: float) -> list[float]:
        result: list[float] = await self._ask("hit", [list(c) for c in counters], now)
        return result

    async def counts(self, counters: Sequence[tuple[str, float]], now: float) -> list[float]:
        result: list[float] = await self._ask("counts", [list(c) for c in counters], now)
        return result

    async def ban(self, target: str, rule: str, ttl: float, now: float) -> None:
        await self._ask("ban", target, rule, ttl, now)

    async def banned(self, targets: Sequence[str], now: float) -> str | None:
        result: str | None = await self._ask("banned", list(targets), now)
        return result

    async def bans(self, now: float) -> list[Ban]:
        rows = await self._ask("bans", now)
        return [Ban(target=r["target"], rule=r["rule"], expires=r["expires"]) for r in rows]

    async def unban(self, target: str | None) -> int:
        result: int = await self._ask("unban", target)
        return result

    async def add_member(self, key: str, member: str, ttl: float, limit: int, now: float) -> bool:
        result: bool = await self._ask("add_member", key, member, ttl, limit, now)
        return result

    async def has_member(self, key: str, member: str, now: float) -> bool:
        result: bool = await self._ask("has_member", key, member, now)
        return result

    async def publish_flush(self, users: list[str] | None) -> None:
        return None  # a one-shot command caches nothing worth flushing elsewhere

    async def subscribe_flush(self, handler: FlushHandler) -> None:
        return None

    async def ping(self) -> None:
        await self._ask("banned", [], 0.0)

    async def close(self) -> None:
        async with self._lock:
            self._client.close()
