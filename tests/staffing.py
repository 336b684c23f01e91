"""Administrators and API tokens for tests: a Staff over a memory state store that
already knows one token per scope, with values the tests can send."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable
from pathlib import Path

from mailwarden import schemes
from mailwarden.accounts import totp
from mailwarden.accounts.staff import ADMIN_OWNER, Staff
from mailwarden.auth import tokens
from mailwarden.guard.policy import Guard
from mailwarden.hashing.pool import Hasher
from mailwarden.state.base import Administrator, ApiToken, SecondFactor, StateStore
from mailwarden.state.memory import MemoryStateStore
from mailwarden.state.sqlite import SQLiteStateStore

#: Token values in the issued form (``mwt_`` + 24 base32 characters), one per scope.
TOKENS = {
    "admin": "mwt_" + "a" * 24,
    "helpdesk": "mwt_" + "b" * 24,
    "read": "mwt_" + "c" * 24,
}
ADMIN_TOKEN = TOKENS["admin"]


def bearer(scope: str = "admin") -> dict[str, str]:
    return {"Authorization": "Bearer " + TOKENS[scope]}


async def staff_with_tokens(
    hasher: Hasher,
    *,
    bootstrap_token: str = "",
    bootstrap_name: str = "",
    store: StateStore | None = None,
    guard: Guard | None = None,
    clock: Callable[[], float] = time.time,
) -> Staff:
    """A Staff whose store holds the tokens of :data:`TOKENS` (named after their scope)."""
    store = store or MemoryStateStore()
    for scope, value in TOKENS.items():
        await store.add_token(
            ApiToken(
                name=scope,
                digest=tokens.digest(tokens.TokenKind.API_TOKEN, value),
                scope=scope,
                created=0.0,
                created_by="test",
            )
        )
    return Staff(
        store,
        hasher,
        bootstrap_token=bootstrap_token,
        bootstrap_name=bootstrap_name,
        guard=guard,
        clock=clock,
    )


#: The administrator tests sign in as, with a second factor already confirmed.
ADMIN_NAME = "admin"
ADMIN_PASSWORD = "admin password 4 tests"
ADMIN_SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"


@functools.cache
def _admin_hash() -> str:
    return schemes.generate(ADMIN_PASSWORD.encode(), "ARGON2ID")


async def add_admin(store: StateStore, name: str = ADMIN_NAME, role: str = "admin") -> None:
    """An administrator ``name`` (password :data:`ADMIN_PASSWORD`) whose second factor
    (:data:`ADMIN_SECRET`) is confirmed."""
    await store.add_admin(Administrator(name=name, password=_admin_hash(), role=role, created=0.0))
    owner = ADMIN_OWNER + name
    await store.swap_factor(
        owner, None, SecondFactor(owner=owner, secret=ADMIN_SECRET, confirmed=True)
    )


def admin_code(now: float) -> str:
    """The administrators' current TOTP code at ``now``."""
    return totp.code_at(ADMIN_SECRET, int(now // totp.STEP))


def seed_tokens(path: Path) -> None:
    """Put the tokens of :data:`TOKENS` into the SQLite state file at ``path`` (a daemon
    the test starts later reads them there)."""

    async def go() -> None:
        store = await SQLiteStateStore.open(path)
        try:
            hasher = Hasher(workers=1)
            await staff_with_tokens(hasher, store=store)
            hasher.close()
        finally:
            await store.close()

    asyncio.run(go())
