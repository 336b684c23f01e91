"""The login history in Redis, shared by two "workers" (two engines, each with its own
RedisStore and recorder, as two processes or two nodes would have) on a real
redis-server; and a Redis that is gone costs entries, never a login."""

from __future__ import annotations

import pytest

from mailwarden.config import HistoryConfig
from mailwarden.errors import StoreUnavailable
from mailwarden.guard.stores.redis import RedisStore
from mailwarden.history.base import LoginEvent, LoginResult
from mailwarden.history.recorder import HistoryRecorder
from mailwarden.history.redis import RedisHistory
from mailwarden.model import Accepted, CredentialKind, DenyReason
from tests.helpers import attempt
from tests.redisserver import RedisServer
from tests.stores.conftest import Workers
from tests.stores.conftest import WorkersFactory as Factory
from tests.stores.test_redis_guard import ATTACKER, OWNER, denied, login

CONFIG = HistoryConfig(enabled=True, max_per_account=4, flush_interval_ms=10)


def shared(engine_store: object) -> RedisHistory:
    assert isinstance(engine_store, RedisStore)
    return RedisHistory(
        engine_store.client, key_prefix=engine_store.prefix, timeout=engine_store.timeout
    )


def with_history(w: Workers) -> tuple[HistoryRecorder, HistoryRecorder]:
    made: list[HistoryRecorder] = []
    for engine in (w.a, w.b):
        recorder = HistoryRecorder(shared(engine.guard.store), CONFIG, resolve=engine.history_uid)
        engine.history = recorder
        made.append(recorder)
    return made[0], made[1]


async def test_a_login_on_one_worker_is_in_the_history_the_other_reads(
    workers: Factory, redis_session: RedisServer
) -> None:
    w = await workers(redis_session)
    a, b = with_history(w)
    assert isinstance(await login(w.a, "alice", "secret", OWNER), Accepted)
    await login(w.b, "alice", "guess", ATTACKER)
    await a.flush()
    await b.flush()
    found = await b.recent("alice", limit=10)
    assert [(e.result, e.remote_ip) for e in found] == [
        (LoginResult.WRONG_PASSWORD, ATTACKER),
        (LoginResult.ACCEPTED, OWNER),
    ]
    assert await a.recent("alice", limit=10) == found
    assert await a.recent("bob", limit=10) == []


async def test_each_list_is_trimmed_to_max_per_account_and_expires(
    workers: Factory, redis_session: RedisServer
) -> None:
    w = await workers(redis_session)
    a, _ = with_history(w)
    for i in range(6):
        await login(w.a, "alice", f"guess{i}" if i % 2 else "secret", OWNER)
    await a.flush()
    assert len(await a.recent("alice", limit=100)) == 4
    history = a.store
    assert isinstance(history, RedisHistory)
    ttl = await history.client.ttl(history.key("alice"))
    assert 0 < ttl <= 30 * 86400


async def test_a_blocked_login_on_one_worker_is_shown_on_the_other(
    workers: Factory, redis_session: RedisServer
) -> None:
    w = await workers(redis_session)
    a, b = with_history(w)
    for i in range(3):
        await login(w.a, "alice", f"guess{i}", ATTACKER)
    blocked = await login(w.b, "alice", "secret", ATTACKER)
    assert denied(blocked, DenyReason.BLOCKED)
    await b.flush()
    await a.flush()
    newest = (await a.recent("alice", limit=1))[0]
    assert newest.result is LoginResult.BLOCKED and newest.remote_ip == ATTACKER


async def test_redis_gone_costs_entries_and_never_a_login(
    workers: Factory, redis_server: RedisServer
) -> None:
    w = await workers(redis_server)
    a, _ = with_history(w)
    redis_server.kill()
    try:
        assert isinstance(await w.a.authenticate(attempt("alice", "secret")), Accepted)
        await a.flush()
        assert a.failures == 1 and a.lost == 1 and a.written == 0
    finally:
        redis_server.start()
    event = LoginEvent(
        uid="alice",
        at=1.0,
        frontend="t",
        service="imap",
        remote_ip=None,
        result=LoginResult.ACCEPTED,
        credential=CredentialKind.PASSWORD,
    )
    history = a.store
    assert isinstance(history, RedisHistory)
    redis_server.kill()
    try:
        with pytest.raises(StoreUnavailable):
            await history.logins("alice", limit=1, since=0)
    finally:
        redis_server.start()
    await history.add_logins([event], keep=5, ttl=60)  # back: written again
    assert await history.logins("alice", limit=5, since=0) == [event]
