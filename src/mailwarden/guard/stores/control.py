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

from mailwarden.errors import ProtocolError, StoreUnavailable
from mailwarden.guard.stores.base import Ban, FlushHandler
from mailwarden.protocols import control


class ControlStore:
    """:class:`~mailwarden.guard.stores.base.GuardStore` backed by the daemon's control socket."""

    def __init__(self, path: Path, *, timeout: float = 2.0) -> None:
        self.path = path
        self.timeout = timeout
        self._conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._lines = control.LineReader()
        self._lock = asyncio.Lock()

    async def _ask(self, method: str, *args: Any) -> Any:
        async with self._lock:
            try:
                return await asyncio.wait_for(self._exchange(method, args), self.timeout)
            except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
                await self.close()
                raise StoreUnavailable(f"daemon control socket {self.path}: {exc!r}") from exc
            except ProtocolError as exc:
                raise StoreUnavailable(f"daemon control socket {self.path}: {exc}") from exc

    async def _exchange(self, method: str, args: tuple[Any, ...]) -> Any:
        if self._conn is None:
            self._conn = await asyncio.open_unix_connection(str(self.path))
        reader, writer = self._conn
        writer.write(control.request("store", method=method, args=list(args)))
        await writer.drain()
        while True:
            data = await reader.read(65536)
            if not data:
                raise ConnectionResetError("the daemon closed the control connection")
            self._lines.receive_data(data)
            if (line := self._lines.next_event()) is not None:
                return control.parse_reply(line)

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
        if self._conn is not None:
            _, writer = self._conn
            self._conn = None
            writer.close()
