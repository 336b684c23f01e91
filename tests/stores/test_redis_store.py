"""RedisStore's own behaviour: key layout, failures, password, TLS, Sentinel.

The semantics it shares with MemoryStore are in test_store_contract.py; here is
what only Redis has: the keys it writes and their expiry, what happens when Redis
is down, hung or comes back, several stores (processes) on one Redis, the password
file, ``rediss://`` and a Sentinel-managed master.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest

from mailwarden.config import RedisConfig
from mailwarden.errors import ConfigError, StoreUnavailable
from mailwarden.guard.stores.redis import RedisStore
from tests.helpers import make_cert
from tests.redisserver import REDIS_SERVER, RedisSentinel, RedisServer, free_port
from tests.stores.conftest import redis_config

IP = "192.0.2.9/32"


async def poll(condition: object, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


async def test_the_key_layout_and_its_expiry(redis_session: RedisServer) -> None:
    config = redis_config(redis_session)
    store = await RedisStore.open(config)
    p = config.key_prefix
    try:
        now = time.time()
        await store.hit([(f"ip|{IP}", 60.0), ("account|account:alice", 3600.0)], now)
        await store.ban(IP, "ip", 600.0, now)
        await store.add_member("known|alice", "198.51.100.0/24", 86400.0, 32, now)
        keys = sorted(await store.client.keys(f"{p}*"))
        assert keys == sorted(
            [
                f"{p}cnt:ip|{IP}",
                f"{p}cnt:account|account:alice",
                f"{p}cnt-index:60.0:{IP}",
                f"{p}cnt-index:3600.0:account:alice",
                f"{p}cnt-periods",
                f"{p}ban:{IP}",
                f"{p}bans",
                f"{p}set:known|alice",
            ]
        )
        ttl = store.client.pttl
        assert 110_000 < await ttl(f"{p}cnt:ip|{IP}") <= 120_000
        assert 7_100_000 < await ttl(f"{p}cnt:account|account:alice") <= 7_200_000
        assert 590_000 < await ttl(f"{p}ban:{IP}") <= 600_000
        assert 86_390_000 < await ttl(f"{p}set:known|alice") <= 86_400_000
        # Lifting every ban removes bans and counters only, and only under this prefix.
        other = await RedisStore.open(redis_config(redis_session))
        await other.ban(IP, "ip", 600.0, now)
        assert await store.unban(None) == 1
        assert await store.client.keys(f"{p}*") == [f"{p}set:known|alice"]
        assert await other.banned([IP], now) == IP
        await other.close()
    finally:
        await store.close()


async def test_stores_on_one_redis_share_state_under_one_prefix(
    redis_session: RedisServer,
) -> None:
    config = redis_config(redis_session)
    a, b = await RedisStore.open(config), await RedisStore.open(config)
    elsewhere = await RedisStore.open(redis_config(redis_session))
    try:
        now = time.time()
        await a.hit([(f"ip|{IP}", 60.0)], now)
        assert await b.hit([(f"ip|{IP}", 60.0)], now) == [2.0]
        await b.ban(IP, "ip", 60.0, now)
        assert await a.banned([IP], now) == IP
        assert await elsewhere.banned([IP], now) is None
        heard_a: list[list[str] | None] = []
        heard_b: list[list[str] | None] = []
        heard_elsewhere: list[list[str] | None] = []
        await a.subscribe_flush(heard_a.append)
        await b.subscribe_flush(heard_b.append)
        await elsewhere.subscribe_flush(heard_elsewhere.append)
        await b.publish_flush(["alice"])
        await poll(lambda: heard_a and heard_b, "the flush on both stores")
        assert heard_a == heard_b == [["alice"]]
        await elsewhere.publish_flush(None)
        await poll(lambda: heard_elsewhere == [None], "its own flush")
        assert heard_a == [["alice"]]
    finally:
        for store in (a, b, elsewhere):
            await store.close()


async def test_concurrent_bans_keep_the_longest(redis_session: RedisServer) -> None:
    config = redis_config(redis_session)
    stores = [await RedisStore.open(config) for _ in range(4)]
    try:
        now = time.time()
        await asyncio.gather(
            *(s.ban(IP, f"r{i}", 100.0 + i, now) for i, s in enumerate(stores) for _ in range(3))
        )
        [ban] = await stores[0].bans(now)
        assert (ban.rule, ban.expires) == ("r3", now + 103.0)
    finally:
        for store in stores:
            await store.close()


async def test_opening_while_redis_is_down_works_and_every_call_fails_fast(
    tmp_path: Path,
) -> None:
    server = RedisServer(tmp_path)  # not started: nothing listens on its port
    store = await RedisStore.open(redis_config(server, timeout=0.5))
    try:
        heard: list[list[str] | None] = []
        started = time.monotonic()
        await store.subscribe_flush(heard.append)  # does not raise: retries in the background
        calls = [
            store.hit([(f"ip|{IP}", 60.0)], time.time()),
            store.counts([(f"ip|{IP}", 60.0)], time.time()),
            store.ban(IP, "ip", 60.0, time.time()),
            store.banned([IP], time.time()),
            store.bans(time.time()),
            store.unban(IP),
            store.unban(None),
            store.add_member("k", "m", 60.0, 8, time.time()),
            store.has_member("k", "m", time.time()),
            store.publish_flush(None),
            store.ping(),
        ]
        for call in calls:
            with pytest.raises(StoreUnavailable, match=f"127.0.0.1:{server.port}"):
                await call
        assert time.monotonic() - started < 5
        # Redis arrives: the store works, and the subscription comes up by itself.
        server.start()
        try:
            await store.ping()
            await poll(store.subscribed.is_set, "the flush subscription")
            await store.publish_flush(["bob"])
            await poll(lambda: ["bob"] in heard, "the flush")
        finally:
            server.stop()
    finally:
        await store.close()


async def test_a_hung_redis_costs_at_most_the_timeout(redis_server: RedisServer) -> None:
    store = await RedisStore.open(redis_config(redis_server, timeout=0.3))
    try:
        await store.ping()
        redis_server.freeze()
        try:
            calls = [
                store.banned([IP], time.time()),
                store.hit([(f"ip|{IP}", 60.0)], time.time()),
                store.ban(IP, "ip", 60.0, time.time()),
                store.bans(time.time()),  # (listing may take longer; each read may not)
            ]
            for call in calls:
                started = time.monotonic()
                with pytest.raises(StoreUnavailable):
                    await call
                assert time.monotonic() - started < 1.5  # timeout 0.3 s, on a busy machine
        finally:
            redis_server.thaw()
        await store.ping()
    finally:
        await store.close()


async def test_the_subscription_comes_back_after_a_restart_and_flushes_everything(
    redis_server: RedisServer,
) -> None:
    store = await RedisStore.open(redis_config(redis_server))
    heard: list[list[str] | None] = []
    try:
        await store.subscribe_flush(heard.append)
        assert store.subscribed.is_set()
        redis_server.kill()
        await poll(lambda: not store.subscribed.is_set(), "the subscription to notice")
        redis_server.start()
        await poll(store.subscribed.is_set, "the subscription to come back")
        # Flushes published meanwhile may be lost: everything was flushed once.
        assert heard == [None]
        await store.publish_flush(["carol"])
        await poll(lambda: heard == [None, ["carol"]], "a flush after the restart")
    finally:
        await store.close()


async def test_the_password_comes_from_the_password_file(tmp_path: Path) -> None:
    server = RedisServer(tmp_path, args=("--requirepass", "s3cret pass"))
    server.start()
    try:
        (tmp_path / "redis.pw").write_text("s3cret pass\n")
        good = await RedisStore.open(
            redis_config(server, password_file="redis.pw"), resolve=lambda p: tmp_path / p
        )
        await good.ping()
        await good.close()
        without = await RedisStore.open(redis_config(server))
        with pytest.raises(StoreUnavailable, match="uthentication"):
            await without.ping()
        await without.close()
        with pytest.raises(ConfigError, match="password_file"):
            await RedisStore.open(
                redis_config(server, password_file="missing.pw"), resolve=lambda p: tmp_path / p
            )
    finally:
        server.stop()


async def test_the_master_is_found_through_sentinel(
    sentinel: RedisSentinel, redis_server: RedisServer
) -> None:
    config = RedisConfig(
        url="redis://unused/0",
        sentinels=(f"127.0.0.1:{sentinel.port}",),
        sentinel_master="mw",
        key_prefix="sentinel:",
        timeout=1.0,
    )
    store = await RedisStore.open(config)
    direct = await RedisStore.open(redis_config(redis_server, key_prefix="sentinel:"))
    try:
        now = time.time()
        await store.ban(IP, "ip", 60.0, now)
        assert await direct.banned([IP], now) == IP
        heard: list[list[str] | None] = []
        await store.subscribe_flush(heard.append)
        await direct.publish_flush(["dave"])
        await poll(lambda: heard == [["dave"]], "a flush through the sentinel's master")
    finally:
        await store.close()
        await direct.close()


async def test_a_password_in_the_url_is_refused_and_url_options_cannot_lift_the_timeout(
    redis_session: RedisServer,
) -> None:
    with pytest.raises(ConfigError, match="password_file"):
        await RedisStore.open(redis_config(redis_session, url="redis://:pw@127.0.0.1:1/0"))
    url = f"{redis_session.url}?socket_timeout=60&timeout=60&max_connections=1"
    store = await RedisStore.open(redis_config(redis_session, url=url, timeout=0.5))
    try:
        pool = store.client.connection_pool
        assert pool.connection_kwargs["socket_timeout"] == 0.5
        assert pool.max_connections > 1
        await store.ping()
    finally:
        await store.close()


def tls_ping(port: int, ca: Path) -> bool:
    context = ssl.create_default_context(cafile=str(ca))
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=1.0) as raw,
            context.wrap_socket(raw, server_hostname="127.0.0.1") as sock,
        ):
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


async def test_rediss_urls_connect_with_tls(tmp_path: Path) -> None:
    pem = make_cert(tmp_path)
    port = free_port()
    proc = subprocess.Popen(
        [
            REDIS_SERVER,
            *("--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1"),
            *("--tls-cert-file", str(pem.cert), "--tls-key-file", str(pem.key)),
            *("--tls-auth-clients", "no", "--dir", str(tmp_path)),
            *("--save", "", "--appendonly", "no"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 20
        while not tls_ping(port, pem.cert):
            assert proc.poll() is None and time.monotonic() < deadline, "redis did not start"
            time.sleep(0.05)
        url = f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={pem.cert}"
        store = await RedisStore.open(RedisConfig(url=url, key_prefix="tls:", timeout=2.0))
        try:
            await store.ban(IP, "ip", 60.0, time.time())
            assert await store.banned([IP], time.time()) == IP
        finally:
            await store.close()
        # Without the CA the certificate is not trusted: no connection.
        plain = f"rediss://127.0.0.1:{port}/0"
        untrusted = await RedisStore.open(RedisConfig(url=plain, key_prefix="tls:", timeout=2.0))
        try:
            with pytest.raises(StoreUnavailable):
                await untrusted.ping()
        finally:
            await untrusted.close()
    finally:
        proc.kill()
        proc.wait(10)


async def test_close_stops_the_subscription_and_closes_every_connection(
    redis_server: RedisServer,
) -> None:
    watcher = await RedisStore.open(redis_config(redis_server))
    store = await RedisStore.open(redis_config(redis_server))
    await store.subscribe_flush(lambda users: None)
    await asyncio.gather(*(store.banned([IP], time.time()) for _ in range(8)))
    assert len(await watcher.client.client_list()) > 2
    await store.close()
    clients: list[object] = []

    async def count() -> None:
        clients[:] = await watcher.client.client_list()

    deadline = time.monotonic() + 5
    while True:
        await count()
        if len(clients) == 1:  # the watcher itself
            break
        assert time.monotonic() < deadline, f"connections left open: {clients}"
        await asyncio.sleep(0.05)
    await watcher.close()


async def test_the_sentinels_password_comes_from_its_own_file(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    (tmp_path / "guarded").mkdir()
    guarded = RedisSentinel(
        tmp_path / "guarded", redis_server.port, args=("--requirepass", "sentinel pw")
    )
    guarded.start()
    try:
        (tmp_path / "sentinel.pw").write_text("sentinel pw\n")
        config = RedisConfig(
            url="redis://unused/0",
            sentinels=(f"127.0.0.1:{guarded.port}",),
            sentinel_master="mw",
            sentinel_password_file="sentinel.pw",
            key_prefix="sentinel-pw:",
        )
        store = await RedisStore.open(config, resolve=lambda p: tmp_path / p)
        try:
            await store.ping()
        finally:
            await store.close()
        without = await RedisStore.open(dataclasses.replace(config, sentinel_password_file=""))
        try:
            with pytest.raises(StoreUnavailable, match="No master found"):
                await without.ping()
        finally:
            await without.close()
        with pytest.raises(ConfigError, match=r"guard\.redis\.sentinel_password_file"):
            await RedisStore.open(
                dataclasses.replace(config, sentinel_password_file="missing.pw"),
                resolve=lambda p: tmp_path / p,
            )
    finally:
        guarded.stop()


async def _mget_calls(store: RedisStore) -> int:
    stats = await store.client.info("commandstats")
    return int(stats.get("cmdstat_mget", {}).get("calls", 0))


async def test_bans_are_answered_from_the_mirror_and_every_change_reaches_it(
    redis_session: RedisServer,
) -> None:
    config = redis_config(redis_session)
    a, b = await RedisStore.open(config), await RedisStore.open(config)
    try:
        now = time.time()
        await a.ban("198.51.100.0/24", "ip", 600.0, now)  # before b subscribes: loaded
        await b.subscribe_flush(lambda users: None)
        assert b.mirror.active
        before = await _mget_calls(b)
        assert await b.banned(["203.0.113.0/24", "198.51.100.0/24"], now) == "198.51.100.0/24"
        await a.ban(IP, "ip", 600.0, now)  # after: published in the ban's transaction
        await poll(lambda: b.mirror.entries.get(IP) is not None, "the ban's message")
        assert await b.banned([IP], now) == IP
        assert await b.banned([IP], now + 601.0) is None  # expired by the clock, as in Redis
        await a.unban(IP)
        await poll(lambda: IP not in b.mirror.entries, "the unban's message")
        assert await b.banned([IP], now) is None
        await a.ban(IP, "ip", 600.0, now)
        await a.unban(None)
        await poll(lambda: not b.mirror.entries, "the unban-all message")
        assert await b.banned([IP, "198.51.100.0/24"], now) is None
        assert await _mget_calls(b) == before  # no round trip for any of them
    finally:
        await a.close()
        await b.close()


async def test_a_malformed_ban_change_turns_the_mirror_off_and_redis_answers(
    redis_session: RedisServer,
) -> None:
    config = redis_config(redis_session)
    store = await RedisStore.open(config)
    try:
        now = time.time()
        await store.subscribe_flush(lambda users: None)
        await store.client.publish(store.bans_channel, "not json")
        await poll(lambda: not store.mirror.active, "the mirror to be turned off")
        await store.ban(IP, "ip", 600.0, now)
        before = await _mget_calls(store)
        assert await store.banned([IP], now) == IP
        assert await _mget_calls(store) == before + 1
    finally:
        await store.close()


async def test_the_mirror_is_off_while_redis_is_away_and_reloaded_after(
    redis_server: RedisServer,
) -> None:
    config = dataclasses.replace(redis_config(redis_server), timeout=0.5, retry_interval=0.1)
    store = await RedisStore.open(config)
    try:
        await store.subscribe_flush(lambda users: None)
        assert store.mirror.active
        redis_server.stop()
        await poll(lambda: not store.mirror.active, "the mirror to be dropped", timeout=30.0)
        with pytest.raises(StoreUnavailable):
            await store.banned([IP], time.time())
        redis_server.start()
        other = await RedisStore.open(config)
        await other.ban(IP, "ip", 600.0, time.time())  # while store may still be away
        await other.close()
        await poll(lambda: store.mirror.active, "the mirror to be reloaded", timeout=30.0)
        assert await store.banned([IP], time.time()) == IP
    finally:
        await store.close()
