"""The state store in this process's memory: the reference implementation, for tests
and for a process that needs no record to outlive it."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from mailwarden.errors import AccountExists, StateUnavailable
from mailwarden.history.base import LoginEvent
from mailwarden.history.memory import MemoryHistory
from mailwarden.state.base import (
    MAX_AUDIT_ROWS,
    Administrator,
    ApiToken,
    AuditEntry,
    AuditQuery,
    SecondFactor,
)


class MemoryStateStore:
    """:class:`~mailwarden.state.base.StateStore` in dicts and a list."""

    def __init__(self) -> None:
        self._audit: list[AuditEntry] = []
        self._admins: dict[str, Administrator] = {}
        self._tokens: dict[str, ApiToken] = {}
        self._factors: dict[str, SecondFactor] = {}
        self._history = MemoryHistory()
        self.closed = False

    def _open(self) -> None:
        if self.closed:
            raise StateUnavailable("the state store is closed")

    async def record(self, entry: AuditEntry) -> None:
        self._open()
        self._audit.append(dataclasses.replace(entry, id=len(self._audit) + 1))

    async def audit(self, query: AuditQuery) -> list[AuditEntry]:
        self._open()
        found: list[AuditEntry] = []
        limit = max(0, min(query.limit, MAX_AUDIT_ROWS))
        for entry in reversed(self._audit):
            if len(found) >= limit:
                break
            if query.target is not None and entry.target != query.target:
                continue
            if query.actor is not None and entry.actor != query.actor:
                continue
            if query.since is not None and entry.time < query.since:
                continue
            found.append(entry)
        return found

    async def admin(self, name: str) -> Administrator | None:
        self._open()
        return self._admins.get(name)

    async def admins(self) -> list[Administrator]:
        self._open()
        return [self._admins[n] for n in sorted(self._admins)]

    async def add_admin(self, admin: Administrator, *, first: bool = False) -> bool:
        self._open()
        if first and self._admins:
            return False
        if admin.name in self._admins:
            raise AccountExists(f"administrator {admin.name} exists")
        self._admins[admin.name] = admin
        return True

    async def replace_admin(self, admin: Administrator) -> bool:
        self._open()
        if admin.name not in self._admins:
            return False
        self._admins[admin.name] = admin
        return True

    async def remove_admin(self, name: str) -> bool:
        self._open()
        return self._admins.pop(name, None) is not None

    async def token(self, digest: str) -> ApiToken | None:
        self._open()
        return next((t for t in self._tokens.values() if t.digest == digest), None)

    async def tokens(self) -> list[ApiToken]:
        self._open()
        return [self._tokens[n] for n in sorted(self._tokens)]

    async def add_token(self, token: ApiToken) -> None:
        self._open()
        if token.name in self._tokens:
            raise AccountExists(f"token {token.name} exists")
        self._tokens[token.name] = token

    async def remove_token(self, name: str) -> bool:
        self._open()
        return self._tokens.pop(name, None) is not None

    async def factor(self, owner: str) -> SecondFactor | None:
        self._open()
        return self._factors.get(owner)

    async def swap_factor(self, owner: str, expected: int | None, new: SecondFactor | None) -> bool:
        self._open()
        current = self._factors.get(owner)
        if (None if current is None else current.version) != expected:
            return False
        if new is None:
            self._factors.pop(owner, None)
        else:
            version = 0 if expected is None else expected + 1
            self._factors[owner] = dataclasses.replace(new, owner=owner, version=version)
        return True

    async def add_logins(self, events: Sequence[LoginEvent], *, keep: int, ttl: float) -> None:
        self._open()
        await self._history.add_logins(events, keep=keep, ttl=ttl)

    async def logins(self, uid: str, *, limit: int, since: float) -> list[LoginEvent]:
        self._open()
        return await self._history.logins(uid, limit=limit, since=since)

    async def prune_logins(self, before: float, *, keep: int) -> int:
        self._open()
        return await self._history.prune_logins(before, keep=keep)

    async def close(self) -> None:
        self.closed = True
