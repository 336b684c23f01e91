"""The SQL directories' cache of looked-up accounts (directories/sql/cache.py).

The cache alone (bounds, expiry, drops by any login name, the epoch that keeps a
read overtaken by a write out of it), then on the real servers: the own schema's
cache stays exact through the change feed between two nodes, and the Dovecot mode's
lives ``sql.cache_ttl`` seconds and goes with a flush.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest

from mailwarden.config import CacheConfig, SqlConfig
from mailwarden.directories.sql import Database, Param, Sql
from mailwarden.directories.sql.cache import MISS, FindCache
from mailwarden.directories.sql.dovecot import DovecotSqlDirectory
from mailwarden.directories.sql.own import OwnDirectory
from mailwarden.guard.logincache import LoginCache
from mailwarden.model import Account
from tests.helpers import eventually


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


ALICE = Account(uid="alice", mail="alice@example.org", alternate_addresses=("al@example.org",))


def test_an_answer_is_kept_until_a_name_of_its_account_is_dropped() -> None:
    cache = FindCache(10)
    cache.put(("alice@example.org", "any"), "Alice@Example.org", ALICE, since=cache.epoch)
    cache.put(("ghost", "any"), "ghost", None, since=cache.epoch)
    assert cache.get(("alice@example.org", "any")) == ALICE
    assert cache.get(("ghost", "any")) is None  # "no such account" is an answer
    assert cache.get(("bob", "any")) is MISS
    assert cache.drop(["AL@example.org"]) == 1  # any of the account's names
    assert cache.get(("alice@example.org", "any")) is MISS
    assert cache.drop(["ghost"]) == 1  # an account made under that name ends it
    assert len(cache) == 0


def test_a_read_overtaken_by_a_drop_is_not_kept() -> None:
    cache = FindCache(10)
    since = cache.epoch  # the lookup starts...
    cache.drop(["bob"])  # ...a write lands meanwhile (any name: we cannot tell)...
    cache.put("k", "alice", ALICE, since=since)  # ...what was read may be old
    assert cache.get("k") is MISS
    cache.put("k", "alice", ALICE, since=cache.epoch)
    assert cache.get("k") == ALICE


def test_entries_expire_after_the_ttl_and_the_oldest_go_first() -> None:
    clock = Clock()
    cache = FindCache(2, ttl=60.0, clock=clock)
    for n in range(3):
        cache.put(n, f"user{n}", Account(uid=f"user{n}"), since=cache.epoch)
    assert cache.get(0) is MISS and len(cache) == 2  # bounded: the oldest went
    clock.now += 59
    assert cache.get(2) == Account(uid="user2")
    clock.now += 2
    assert cache.get(2) is MISS
    assert cache.drop(None) == 1 and len(cache) == 0


def test_a_flush_of_the_login_cache_reaches_a_linked_cache() -> None:
    cache = FindCache(10)
    cache.put("k", "alice", ALICE, since=cache.epoch)
    logins = LoginCache(CacheConfig())
    logins.link(cache.drop)
    logins.flush(["someone-else"])
    assert cache.get("k") == ALICE
    logins.flush(u for u in ["alice"])  # any iterable, read once
    assert cache.get("k") is MISS


# --------------------------------------------------------------------------- real servers


async def wait_for(check: Callable[[], bool], what: str) -> None:
    assert await eventually(check), f"timed out waiting for {what}"


@pytest.mark.peer
async def test_the_own_schema_cache_is_exact_across_nodes_through_the_feed(
    sql_config: SqlConfig,
) -> None:
    config = dataclasses.replace(sql_config, poll_interval=0.05)
    a = await OwnDirectory.open(config, password=config.password, create=True)
    cache = FindCache(100)
    b = await OwnDirectory.open(config, password=config.password, create=False, cache=cache)
    # As app.py does in the daemon: the feed's deliveries drop the cache's entries.
    b.changes.subscribe(cache.drop)
    heard: list[object] = []
    b.changes.subscribe(heard.append)

    async def settled(count: int, what: str) -> None:
        """Wait until node b has heard ``count`` deliveries: a lookup that a delivery
        overtakes is (rightly) not stored, so the test waits for the feed first."""
        await wait_for(lambda: len(heard) >= count, what)

    try:
        await wait_for(lambda: b.feed.live, "the feed of node b")
        await settled(1, "the feed's first 'everything'")
        await a.create(Account(uid="carol", mail="carol@example.org", password="{PLAIN}old"))
        await settled(2, "the creation of carol")
        found = await b.find("carol@example.org")
        assert found is not None and found.password == "{PLAIN}old"
        assert await b.find("carol@example.org") == found
        assert cache.hits == 1  # the second find was the cache's
        await a.set_password("carol", "{PLAIN}new")
        await settled(3, "the password change")
        assert len(cache) == 0
        found = await b.find("carol@example.org")
        assert found is not None and found.password == "{PLAIN}new"
        # "No such account" is kept too, and a creation elsewhere ends it.
        assert await b.find("dave") is None and await b.find("dave") is None
        assert cache.hits == 2
        await a.create(Account(uid="dave", password="{PLAIN}x"))
        await settled(4, "the creation of dave")
        assert await b.find("dave") is not None
    finally:
        await b.close()
        await a.close()


@pytest.mark.peer
async def test_without_a_live_feed_the_own_schema_cache_is_not_read(
    sql_config: SqlConfig,
) -> None:
    cache = FindCache(100)
    directory = await OwnDirectory.open(
        sql_config, password=sql_config.password, create=True, cache=cache
    )
    try:
        await directory.create(Account(uid="erin", password="{PLAIN}x"))
        # Nobody subscribed (a one-shot command): nothing could keep a cache true.
        assert not directory.feed.live
        assert await directory.find("erin") is not None
        assert await directory.find("erin") is not None
        assert (cache.hits, len(cache)) == (0, 0)
    finally:
        await directory.close()


@pytest.mark.peer
async def test_the_dovecot_mode_cache_lives_cache_ttl_seconds_and_goes_with_a_flush(
    sql_config: SqlConfig,
) -> None:
    db = await Database.open(sql_config)
    try:
        await db.execute(Sql.of("CREATE TABLE users (username VARCHAR(100), password TEXT)"))
        await db.execute(
            Sql.of("INSERT INTO users VALUES (", Param("frank"), ", ", Param("{PLAIN}one"), ")")
        )
        config = dataclasses.replace(
            sql_config,
            mode="dovecot",
            password_query="SELECT username AS user, password FROM users WHERE username = '%u'",
            user_query="",
            iterate_query="SELECT username AS user FROM users",
            cache_ttl=30.0,
        )
        clock = Clock()
        cache = FindCache(100, ttl=config.cache_ttl, clock=clock)
        directory = DovecotSqlDirectory(db, config, cache=cache)
        first = await directory.find("frank")
        assert first is not None and first.password == "{PLAIN}one"
        await db.execute(
            Sql.of("UPDATE users SET password = ", Param("{PLAIN}two"), " WHERE username = 'frank'")
        )
        # Changed behind mailwarden's back: seen once the entry expires, as Dovecot's.
        assert await directory.find("frank") == first
        clock.now += 31
        second = await directory.find("frank")
        assert second is not None and second.password == "{PLAIN}two"
        await db.execute(
            Sql.of(
                "UPDATE users SET password = ", Param("{PLAIN}three"), " WHERE username = 'frank'"
            )
        )
        logins = LoginCache(CacheConfig())
        logins.link(cache.drop)  # app.py's link: every flush of the engine reaches it
        logins.flush(["frank"])
        third = await directory.find("frank")
        assert third is not None and third.password == "{PLAIN}three"
    finally:
        await db.close()
