"""The negative cache of unknown names never outlives a write that makes a name resolvable.

The rule (docs/guard.md, "negative cache"): an entry counts only while the
directory's data version is the one read before the lookup that found nothing;
a directory without a version (LDAP) keeps entries at most
UNSIGNALLED_NEGATIVE_TTL seconds. The end-to-end sequence through a running daemon
and doveadm is tests/peers/test_negative_cache.py.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from mailwarden.config import CacheConfig
from mailwarden.directories.memory import MemoryDirectory
from mailwarden.directories.sqlite import SQLiteDirectory
from mailwarden.guard.logincache import UNSIGNALLED_NEGATIVE_TTL, LoginCache
from mailwarden.model import Accepted, Account, Denied
from tests.conftest import EngineFactory
from tests.helpers import attempt, hashed


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


async def test_an_account_created_by_another_process_on_sqlite_logs_in_at_once(
    make_engine: EngineFactory, tmp_path: Path
) -> None:
    path = tmp_path / "accounts.db"
    daemon_side = await SQLiteDirectory.open(path, create=True, cache_size=100)
    cli_side = await SQLiteDirectory.open(path, create=False)
    try:
        engine = make_engine(d=daemon_side)
        assert isinstance(await engine.authenticate(attempt("early", "pw")), Denied)
        before = daemon_side.data_version()
        assert engine.cache.unknown("early", before)
        # Another process writes; nothing tells this engine but the file itself,
        # whose data version the directory reads at most every 10 ms.
        await cli_side.create(Account(uid="early", password=hashed("pw")))
        for _ in range(500):
            if daemon_side.data_version() != before:
                break
            await asyncio.sleep(0.01)
        assert isinstance(await engine.authenticate(attempt("early", "pw")), Accepted)
    finally:
        await cli_side.close()
        await daemon_side.close()


async def test_a_write_to_the_memory_directory_voids_the_negative_cache(
    make_engine: EngineFactory, directory: MemoryDirectory
) -> None:
    engine = make_engine()
    assert isinstance(await engine.authenticate(attempt("bob", "pw")), Denied)
    await directory.update("alice", {"alternate_addresses": ("bob",)})
    outcome = await engine.authenticate(attempt("bob", "secret"))
    assert isinstance(outcome, Accepted) and outcome.user == "alice"


def test_an_entry_counts_only_under_the_version_it_was_made_at() -> None:
    cache = LoginCache(CacheConfig(negative_ttl=30.0), clock=Clock())
    cache.remember_unknown("ghost", 7)
    assert cache.unknown("ghost", 7)
    assert cache.unknown("GHOST", 7)
    assert not cache.unknown("ghost", 8)
    # Gone for good: the old version coming back does not revive it.
    assert not cache.unknown("ghost", 7)


def test_without_a_version_an_entry_lives_at_most_the_unsignalled_ttl() -> None:
    clock = Clock()
    cache = LoginCache(CacheConfig(negative_ttl=30.0), clock=clock)
    cache.remember_unknown("ghost", None)
    clock.now += UNSIGNALLED_NEGATIVE_TTL * 0.9
    assert cache.unknown("ghost", None)
    clock.now += UNSIGNALLED_NEGATIVE_TTL * 0.2
    assert not cache.unknown("ghost", None)
    # With a version the configured TTL holds.
    cache.remember_unknown("ghost", 1)
    clock.now += 29.0
    assert cache.unknown("ghost", 1)
