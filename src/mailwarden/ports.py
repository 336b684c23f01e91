"""The interfaces the front ends are typed against, so that they import no layer below.

A front end (:mod:`mailwarden.frontends`) may not import the account editor
(:mod:`mailwarden.accounts.edit`), the guard, a store or a directory
(``tests/test_layers.py`` walks the imports). Where it needs one of them it is
typed against a small protocol from here, and ``app.py`` passes the concrete
object: :class:`~mailwarden.accounts.edit.AccountAdmin` is an
:class:`AccountEditor`. This module imports nothing but value types.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Protocol

from mailwarden.model import Account, AppPassword, Listed, NewAppPassword


class AccountEditor(Protocol):
    """What the HTTP admin API and the web page change accounts with (the rules are
    :class:`~mailwarden.accounts.edit.AccountAdmin`'s: checked fields, hashed
    passwords, caches flushed). Errors: the AccountError tree and TemporaryFailure."""

    async def search(self, pattern: str = "*", *, limit: int = 1000) -> list[Account]: ...

    def listing(self, pattern: str = "*") -> AsyncIterator[Listed]:
        """Every matching account's list columns, streamed in uid order (what
        ``mailwarden user list PATTERN`` prints)."""
        ...

    async def show(self, name: str) -> Account: ...

    async def create(
        self,
        account: Account,
        *,
        password: bytes | None = None,
        scheme: str | None = None,
        changes: Mapping[str, object] | None = None,
    ) -> Account: ...

    async def patch(self, uid: str, changes: Mapping[str, object]) -> Account: ...

    async def apply(self, uid: str, change: Callable[[Account], Account]) -> Account: ...

    async def set_password(
        self, uid: str, password: bytes | None = None, *, scheme: str | None = None
    ) -> bytes | None: ...

    async def delete(self, uid: str) -> None: ...

    async def secure_account(
        self, uid: str, password: bytes, *, revoke_app_passwords: bool = False
    ) -> Account: ...

    async def add_app_password(
        self, uid: str, *, name: str, services: Iterable[str] = (), expires: int | None = None
    ) -> NewAppPassword: ...

    async def revoke_app_password(self, uid: str, which: str) -> AppPassword: ...

    async def set_app_passwords_only(self, uid: str, only: bool) -> Account: ...
