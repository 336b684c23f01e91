"""The shared guard store: Redis, for every worker process and every node of a site.

Same semantics as :class:`~mailwarden.guard.stores.memory.MemoryStore` (the contract
tests run one suite over both), built from plain commands, MULTI transactions
and one optimistic WATCH, none newer than Redis 5.0; no server-side scripts.
With ``sentinels`` the server is the primary the Sentinels name, asked again for
each new connection, so after a failover the store reaches the new primary on its
own (docs/guard.md, "Sentinel"). Key layout, under ``key_prefix`` (``P``)::

    P cnt:<key>                  hash, window index -> failures counted in it
                                 (the current and the previous window are read;
                                 the whole hash expires 2 periods after the last hit)
    P cnt-index:<period>:<target>
                                 set of the counter keys ending in "|<target>"
                                 (same expiry), so unban(target) resets them cheaply
    P cnt-periods                set of the periods in use (a handful)
    P ban:<target>               "<expires> <rule>", expiring with the ban
    P bans                       sorted set target -> expires: the listing index
    P set:<key>                  sorted set member -> expiry (add_member/has_member)
    P flush                      pub/sub channel of cache flushes (JSON)

``now`` decides, exactly as in MemoryStore: window indexes, ban and member
expiry are computed from it and stored. Redis TTLs only collect garbage; they
equal the durations (``2 * period``, the ban's ``ttl``, the set's ``ttl``) in
real seconds, so with ``now = time.time()`` both agree.

Every operation is bounded by ``timeout`` (socket timeouts, plus
``asyncio.wait_for`` around the whole exchange; listing and lifting every ban,
which walk more keys, get :data:`ADMIN_TIMEOUTS` times as long). Any Redis, OS or
timeout error becomes :class:`~mailwarden.errors.StoreUnavailable`; the guard
then carries on with local state. Opening never talks to Redis, so the service
starts while Redis is down.

Flush fan-out: one background task per store holds a SUBSCRIBE connection, pings
it, and reconnects after an error with a growing pause. Messages published while
it was disconnected are lost, so after every reconnection it flushes the whole
local cache once (a hash per user), making up for any flush it missed.

Ban mirror: the same connection subscribes to ``P bans-changed`` and keeps every ban
in memory (banmirror.py says how it stays exact): :meth:`RedisStore.banned`, asked
on every login, answers without a round trip while the subscription holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import re
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.connection import BlockingConnectionPool, parse_url
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, WatchError

from mailwarden.config import RedisConfig
from mailwarden.config.secrets import read_secret
from mailwarden.errors import ConfigError, StoreUnavailable
from mailwarden.guard.stores.banmirror import BanMirror, ban_change, parse_ban
from mailwarden.guard.stores.base import Ban, FlushHandler

log = logging.getLogger("mailwarden.stores.redis")

T = TypeVar("T")

#: Listing every ban and lifting every ban may take this many ``timeout``s.
ADMIN_TIMEOUTS = 20
#: Keys asked for per SCAN step when lifting every ban.
SCAN_COUNT = 1000
#: Connections per process (logins wait up to ``timeout`` for a free one).
MAX_CONNECTIONS = 64
#: A WATCHed ban write retried this often when another process wrote the same ban.
BAN_ATTEMPTS = 5
#: The flush subscription pings Redis this often (seconds) to notice a dead link.
PING_EVERY = 5.0
#: Upper bound of the pause between reconnection attempts (seconds).
MAX_BACKOFF = 30.0

_ERRORS = (RedisError, OSError, TimeoutError)


def _glob_escape(text: str) -> str:
    """``text`` as a literal in a SCAN MATCH pattern."""
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


def _suffixes(key: str) -> list[str]:
    """The targets whose reset must clear counter ``key``: every part after a ``|``."""
    return [key[i + 1 :] for i, c in enumerate(key) if c == "|"]


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


class RedisStore:
    """:class:`~mailwarden.guard.stores.base.GuardStore` in Redis (see module docstring)."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        key_prefix: str,
        timeout: float,
        retry_interval: float,
        where: str,
        sentinel: Sentinel | None = None,
    ) -> None:
        self.client = client
        self.prefix = key_prefix
        self.timeout = timeout
        self.retry_interval = retry_interval
        self.where = where
        self._sentinel = sentinel
        self.channel = f"{key_prefix}flush"
        self.bans_channel = f"{key_prefix}bans-changed"
        self._handlers: list[FlushHandler] = []
        self.mirror = BanMirror()
        self._listener: asyncio.Task[None] | None = None
        #: Set while the flush subscription is established (tests wait on it).
        self.subscribed = asyncio.Event()

    @classmethod
    async def open(
        cls, config: RedisConfig, *, resolve: Callable[[str], Path] = Path
    ) -> RedisStore:
        """A store for ``config``; connects lazily, so it opens while Redis is down.

        ``resolve`` turns the config-relative ``password_file`` and
        ``sentinel_password_file`` into paths. A missing or unreadable password file
        is a ConfigError (a site whose Redis wants a password would otherwise run on
        local state forever).
        """
        try:
            url = parse_url(config.url)
        except ValueError as exc:
            raise ConfigError(str(exc), key="guard.redis.url") from None
        if "password" in url:
            raise ConfigError(
                "a password in the URL would sit in the config file: use password_file",
                key="guard.redis.url",
            )
        password = _read_password(config.password_file, "password_file", resolve)
        common: dict[str, Any] = {
            "socket_timeout": config.timeout,
            "socket_connect_timeout": config.timeout,
            # No retries inside redis-py: a failure goes straight to the guard,
            # which falls back to local state and comes back after retry_interval.
            "retry": Retry(NoBackoff(), 0),
            "decode_responses": True,
        }
        if password is not None:
            common["password"] = password
        sentinel = None
        if config.sentinels:
            master_kwargs = dict(common)
            for name, value in url.items():  # not the host: the Sentinels name it
                if name in ("db", "username") or name.startswith("ssl_"):
                    master_kwargs[name] = value
            if config.url.startswith("rediss://"):
                master_kwargs["ssl"] = True
            sentinel_kwargs: dict[str, Any] = {
                "socket_timeout": config.timeout,
                "socket_connect_timeout": config.timeout,
                "retry": Retry(NoBackoff(), 0),
            }
            sentinel_password = _read_password(
                config.sentinel_password_file, "sentinel_password_file", resolve
            )
            if sentinel_password is not None:
                sentinel_kwargs["password"] = sentinel_password
            sentinel = Sentinel(  # type: ignore[no-untyped-call]
                [(a.host, a.port) for a in config.sentinel_addresses()],
                sentinel_kwargs=sentinel_kwargs,
                **master_kwargs,
            )
            client = sentinel.master_for(config.sentinel_master)
            where = f"sentinel master {config.sentinel_master!r}"
        else:
            # Our timeouts win over any given in the URL's query string.
            limits = {"max_connections": MAX_CONNECTIONS, "timeout": config.timeout}
            pool = BlockingConnectionPool(**{**url, **common, **limits})
            client = aioredis.Redis.from_pool(pool)  # closing the client closes the pool
            where = _redact(config.url)
        return cls(
            client,
            key_prefix=config.key_prefix,
            timeout=config.timeout,
            retry_interval=config.retry_interval,
            where=where,
            sentinel=sentinel,
        )

    # ------------------------------------------------------------ bounded calls

    async def _run(self, what: str, op: Awaitable[T], *, timeout: float | None = None) -> T:
        """Await ``op`` within the timeout; any failure is StoreUnavailable."""
        try:
            # wait_for, not asyncio.timeout: a login starts in its connection's task
            # (frontends/dovecot_common.py, spawn), and asyncio.timeout would keep
            # that task, not the login's own, to cancel.
            return await asyncio.wait_for(op, timeout if timeout is not None else self.timeout)
        except _ERRORS as exc:
            # One dead connection means the others to that server are likely dead too
            # (Redis restarted): close the idle ones, so that each is not found dead
            # by a login of its own. In-use ones fail, or not, on their own.
            await _quietly(self.client.connection_pool.disconnect(inuse_connections=False))
            raise StoreUnavailable(f"redis {self.where}: {what}: {_describe(exc)}") from exc
        except (ValueError, TypeError) as exc:  # a key we did not write (another program?)
            raise StoreUnavailable(f"redis {self.where}: {what}: unexpected data: {exc}") from exc

    def _k(self, kind: str, name: str) -> str:
        return f"{self.prefix}{kind}:{name}"

    # ------------------------------------------------------------ sliding windows

    async def hit(self, counters: Sequence[tuple[str, float]], now: float) -> list[float]:
        return await self._run("hit", self._hit(counters, now))

    async def _hit(self, counters: Sequence[tuple[str, float]], now: float) -> list[float]:
        pipe = self.client.pipeline(transaction=True)
        plan = []
        periods = set()
        for key, period in counters:
            index = math.floor(now / period)
            name = self._k("cnt", key)
            life = _ms(2 * period)
            pipe.hincrby(name, str(index), 1)
            pipe.hget(name, str(index - 1))
            pipe.hdel(name, str(index - 2))
            pipe.pexpire(name, life)
            for target in _suffixes(key):
                index_key = self._k("cnt-index", f"{period!r}:{target}")
                pipe.sadd(index_key, key)
                pipe.pexpire(index_key, life)
            periods.add(repr(period))
            plan.append((index, period))
        if periods:
            pipe.sadd(f"{self.prefix}cnt-periods", *sorted(periods))
        replies = await pipe.execute()
        out = []
        at = 0
        for (key, _), (index, period) in zip(counters, plan, strict=True):
            current, previous = float(replies[at]), float(replies[at + 1] or 0)
            at += 4 + 2 * len(_suffixes(key))
            out.append(current + previous * (1.0 - (now / period - index)))
        return out

    async def counts(self, counters: Sequence[tuple[str, float]], now: float) -> list[float]:
        return await self._run("counts", self._counts(counters, now))

    async def _counts(self, counters: Sequence[tuple[str, float]], now: float) -> list[float]:
        pipe = self.client.pipeline(transaction=False)
        indexes = []
        for key, period in counters:
            index = math.floor(now / period)
            pipe.hmget(self._k("cnt", key), [str(index), str(index - 1)])
            indexes.append(index)
        replies = await pipe.execute()
        out = []
        for (_, period), index, (current, previous) in zip(counters, indexes, replies, strict=True):
            elapsed = now / period - index
            out.append(float(current or 0) + float(previous or 0) * (1.0 - elapsed))
        return out

    # ------------------------------------------------------------ bans

    async def ban(self, target: str, rule: str, ttl: float, now: float) -> None:
        await self._run("ban", self._ban(target, rule, ttl, now))

    async def _ban(self, target: str, rule: str, ttl: float, now: float) -> None:
        name = self._k("ban", target)
        expires = now + ttl
        async with self.client.pipeline(transaction=True) as pipe:
            # Keep an existing longer ban: read it under WATCH, write only if ours
            # lasts longer, and start again if another process wrote in between.
            for _ in range(BAN_ATTEMPTS):
                try:
                    await pipe.watch(name)
                    old = parse_ban(await pipe.get(name))
                    if old is not None and old[0] >= expires:
                        await pipe.unwatch()  # type: ignore[no-untyped-call]
                        return
                    pipe.multi()  # type: ignore[no-untyped-call]
                    pipe.set(name, f"{expires!r} {rule}", px=_ms(ttl))
                    pipe.zadd(f"{self.prefix}bans", {target: expires})
                    pipe.zremrangebyscore(f"{self.prefix}bans", "-inf", now)
                    pipe.publish(self.bans_channel, ban_change(target, expires, rule))
                    await pipe.execute()
                    return
                except WatchError:
                    continue
        raise StoreUnavailable(f"redis {self.where}: ban {target}: too much contention")

    async def banned(self, targets: Sequence[str], now: float) -> str | None:
        if not targets:
            return None
        if self.mirror.active:
            return self.mirror.banned(targets, now)
        names = [self._k("ban", t) for t in targets]
        values = await self._run("banned", self.client.mget(names))
        for target, value in zip(targets, values, strict=True):
            entry = parse_ban(value)
            if entry is not None and entry[0] > now:
                return target
        return None

    async def bans(self, now: float) -> list[Ban]:
        return await self._run("bans", self._bans(now), timeout=self.timeout * ADMIN_TIMEOUTS)

    async def _bans(self, now: float) -> list[Ban]:
        index = f"{self.prefix}bans"
        pipe = self.client.pipeline(transaction=True)
        pipe.zremrangebyscore(index, "-inf", now)
        pipe.zrangebyscore(index, f"({now!r}", "+inf")
        _, targets = await pipe.execute()
        if not targets:
            return []
        values = await self.client.mget([self._k("ban", t) for t in targets])
        out = []
        for target, value in zip(targets, values, strict=True):
            entry = parse_ban(value)
            if entry is not None and entry[0] > now:
                out.append(Ban(target=target, rule=entry[1], expires=entry[0]))
        return sorted(out, key=lambda b: b.target)

    async def unban(self, target: str | None) -> int:
        if target is None:
            return await self._run(
                "unban all", self._unban_all(), timeout=self.timeout * ADMIN_TIMEOUTS
            )
        return await self._run("unban", self._unban(target))

    async def _unban(self, target: str) -> int:
        periods = await self.client.smembers(f"{self.prefix}cnt-periods")
        index_keys = [self._k("cnt-index", f"{_text(p)}:{target}") for p in sorted(periods)]
        counter_keys: set[str] = set()
        if index_keys:
            pipe = self.client.pipeline(transaction=False)
            for key in index_keys:
                pipe.smembers(key)
            for members in await pipe.execute():
                counter_keys.update(members)
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(self._k("ban", target))
        pipe.zrem(f"{self.prefix}bans", target)
        pipe.publish(self.bans_channel, ban_change(target, None, ""))
        doomed = [self._k("cnt", k) for k in sorted(counter_keys)] + index_keys
        if doomed:
            pipe.delete(*doomed)
        replies = await pipe.execute()
        return int(replies[0])

    async def _unban_all(self) -> int:
        """Every ban and every counter under the prefix (sets, i.e. known networks,
        stay, as in MemoryStore). SCAN in steps: never one long blocking command."""
        lifted = 0
        prefix = _glob_escape(self.prefix)
        for pattern, is_ban in ((f"{prefix}ban:*", True), (f"{prefix}cnt*", False)):
            batch: list[str] = []
            async for key in self.client.scan_iter(match=pattern, count=SCAN_COUNT):
                batch.append(key)
                if len(batch) >= SCAN_COUNT:
                    deleted = await self.client.delete(*batch)
                    lifted += deleted if is_ban else 0
                    batch = []
            if batch:
                deleted = await self.client.delete(*batch)
                lifted += deleted if is_ban else 0
        await self.client.delete(f"{self.prefix}bans")
        await self.client.publish(self.bans_channel, ban_change(None, None, ""))
        return lifted

    # ------------------------------------------------------------ sets

    async def add_member(self, key: str, member: str, ttl: float, limit: int, now: float) -> bool:
        return await self._run("add_member", self._add_member(key, member, ttl, limit, now))

    async def _add_member(self, key: str, member: str, ttl: float, limit: int, now: float) -> bool:
        name = self._k("set", key)
        pipe = self.client.pipeline(transaction=True)
        pipe.zscore(name, member)
        pipe.zremrangebyscore(name, "-inf", now)
        pipe.zadd(name, {member: now + ttl})
        # Keep the ``limit`` newest (scored by expiry: the latest adds).
        pipe.zremrangebyrank(name, 0, -(limit + 1))
        pipe.pexpire(name, _ms(ttl))
        old = (await pipe.execute())[0]
        return old is None or float(old) <= now

    async def has_member(self, key: str, member: str, now: float) -> bool:
        score = await self._run("has_member", self.client.zscore(self._k("set", key), member))
        return score is not None and float(score) > now

    # ------------------------------------------------------------ flush fan-out

    async def publish_flush(self, users: list[str] | None) -> None:
        message = json.dumps({"users": users})
        await self._run("publish flush", self.client.publish(self.channel, message))

    async def subscribe_flush(self, handler: FlushHandler) -> None:
        """Register ``handler``; the first call starts the subscription task and
        waits up to ``timeout`` for it (it keeps trying in the background)."""
        self._handlers.append(handler)
        if self._listener is None:
            self._listener = asyncio.create_task(self._listen(), name="redis-flush-listener")
            try:
                await asyncio.wait_for(self.subscribed.wait(), self.timeout)
            except TimeoutError:
                log.warning(
                    "redis %s: flush subscription not ready yet; retrying in the background",
                    self.where,
                )

    async def _listen(self) -> None:
        failures = 0
        while True:
            pubsub = self.client.pubsub()
            try:
                await self._subscribe(pubsub)
                await self._load_mirror()
                if failures:
                    log.warning(
                        "redis %s: flush subscription restored; flushing the local cache "
                        "(flushes sent meanwhile were missed)",
                        self.where,
                    )
                    self._dispatch(None)
                failures = 0
                self.subscribed.set()
                await self._receive(pubsub)
            except Exception as exc:  # the task's boundary: log, back off, reconnect
                self.mirror.drop()
                self.subscribed.clear()
                pause = min(
                    self.retry_interval * 2**failures, max(MAX_BACKOFF, self.retry_interval)
                )
                if not isinstance(exc, _ERRORS):
                    log.exception("redis %s: flush subscription failed", self.where)
                elif failures == 0:
                    log.warning(
                        "redis %s: flush subscription lost (%s); retrying in %.1f s",
                        self.where,
                        _describe(exc),
                        pause,
                    )
                failures += 1
                await asyncio.sleep(pause)
            finally:
                self.mirror.drop()
                self.subscribed.clear()
                await _quietly(pubsub.aclose())  # type: ignore[no-untyped-call]

    async def _subscribe(self, pubsub: Any) -> None:
        channels = {self.channel, self.bans_channel}
        await asyncio.wait_for(pubsub.subscribe(*sorted(channels)), self.timeout)
        deadline = asyncio.get_running_loop().time() + self.timeout
        while channels:  # the confirmations: from now on no message is missed
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise TimeoutError("no subscribe confirmation")
            msg = await asyncio.wait_for(pubsub.get_message(timeout=left), self.timeout)
            if msg is not None and msg["type"] == "subscribe":
                channels.discard(_text(msg["channel"]))

    async def _load_mirror(self) -> None:
        """Every ban into the mirror (after subscribing: banmirror.py)."""
        self.mirror.drop()
        bans = await self._run(
            "load bans", self._read_bans(), timeout=self.timeout * ADMIN_TIMEOUTS
        )
        if not self.mirror.load(bans):
            log.warning(
                "redis %s: %d bans, more than the mirror holds; asking Redis on every login",
                self.where,
                len(bans),
            )

    async def _read_bans(self) -> dict[str, tuple[float, str]]:
        targets = [str(t) for t in await self.client.zrange(f"{self.prefix}bans", 0, -1)]
        bans: dict[str, tuple[float, str]] = {}
        for start in range(0, len(targets), SCAN_COUNT):
            chunk = targets[start : start + SCAN_COUNT]
            values = await self.client.mget([self._k("ban", t) for t in chunk])
            for target, value in zip(chunk, values, strict=True):
                entry = parse_ban(value)
                if entry is not None:
                    bans[target] = entry
        return bans

    def _apply_ban_change(self, data: str) -> None:
        was_active = self.mirror.active
        problem = self.mirror.apply(data)
        if problem is not None and was_active:
            log.warning(
                "redis %s: malformed ban change (%s); asking Redis for bans until "
                "the subscription is renewed",
                self.where,
                problem,
            )

    async def _receive(self, pubsub: Any) -> None:
        loop = asyncio.get_running_loop()
        heard = loop.time()
        next_ping = heard + PING_EVERY
        while True:
            msg = await pubsub.get_message(timeout=min(1.0, PING_EVERY))
            now = loop.time()
            if msg is not None:
                heard = now
                if msg["type"] == "message":
                    if _text(msg["channel"]) == self.bans_channel:
                        self._apply_ban_change(msg["data"])
                    else:
                        self._dispatch_raw(msg["data"])
            if now >= next_ping:
                await asyncio.wait_for(pubsub.ping(), self.timeout)
                next_ping = now + PING_EVERY
            if now - heard > 2 * PING_EVERY + self.timeout:
                raise TimeoutError("the flush subscription stopped answering pings")

    def _dispatch_raw(self, data: str) -> None:
        try:
            users = json.loads(data)["users"]
            if users is not None and not (
                isinstance(users, list) and all(isinstance(u, str) for u in users)
            ):
                raise ValueError("users is not a list of strings")
        except (ValueError, KeyError, TypeError) as exc:
            # Flushing too much only costs hashes; flushing too little could serve a
            # login a flush should have stopped.
            log.warning("redis %s: malformed flush message (%s); flushing all", self.where, exc)
            users = None
        self._dispatch(users)

    def _dispatch(self, users: list[str] | None) -> None:
        for handler in self._handlers:
            try:
                handler(users)
            except Exception:  # one broken handler must not stop the others
                log.exception("flush handler failed")

    # ------------------------------------------------------------ lifecycle

    async def ping(self) -> None:
        await self._run("ping", self.client.ping())

    async def close(self) -> None:
        """Stop the subscription task and close every connection."""
        self._handlers.clear()
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.wait([self._listener])
            self._listener = None
        await _quietly(self.client.aclose())
        if self._sentinel is not None:
            for sentinel in self._sentinel.sentinels:
                await _quietly(sentinel.aclose())


def _read_password(name: str, key: str, resolve: Callable[[str], Path]) -> str | None:
    """The password in file ``name`` (config/secrets.py's rules), None when ``name`` is
    empty; ConfigError naming ``guard.redis.<key>`` when unreadable."""
    return read_secret(name, key=f"guard.redis.{key}", resolve=resolve) if name else None


def _describe(exc: BaseException) -> str:
    """``exc`` for a message: its class and its text (redis-py's own ``repr`` gives
    only the class, without the address or the Sentinel's answer)."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _redact(url: str) -> str:
    """``url`` for log lines: without any password."""
    return re.sub(r"//([^:/@]*):[^@/]*@", r"//\1:***@", url)


async def _quietly(op: Awaitable[Any]) -> None:
    with contextlib.suppress(*_ERRORS):
        await op
