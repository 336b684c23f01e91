"""The guard: brute-force protection for every front end, decided in the engine.

Policy (docs/guard.md has the full story and the reasons):

* **Rules** count *failed* logins per source network, each rule with its own
  period, threshold and prefix (a single IPv4 address, an IPv4 /24, an IPv6 /64 ...).
  When a rule reaches its threshold within its period, that network is banned for
  ``ban_time``; a banned source gets the wrong-password reply at once, without any
  password check (``Denied(BLOCKED)``, which every front end sends exactly like a
  wrong password; nginx also gets ``Auth-Wait``).
* **Only distinct wrong passwords count.** For an existing account, a wrong
  password already seen from the same network (a phone retrying its stale
  password after a change) is not counted again. The history holds keyed digests
  (BLAKE2b with a per-process key, 96 bits) and never leaves this process;
  with several workers a stale password may count once per worker (docs/guard.md).
* **Known networks raise the threshold, they never stop the counting.** A wrong
  password for an account from a network where it logged in before is most likely
  its owner's typo: the first ``known_network_failures`` of them per account and
  network within ``account_period`` are counted only against the account, so an
  office NAT full of typing users does not ban itself; beyond that they count like
  any other failure, so a guesser behind the same NAT is banned all the same.
* **Every name is counted, existing or not.** A made-up name gets the same
  per-name counters, history and protection as an account (under ``?<digest>``, so
  no name is stored in clear): after ``account_threshold`` failures it is slowed
  exactly like a real account, so the delay does not tell which names exist.
* **Distributed attacks on one account** (many networks, few attempts each): after
  ``account_threshold`` failures within ``account_period`` the account is
  *protected*: attempts on it from networks where it never logged in are slowed by
  ``account_delay``; networks where it logged in successfully before are not.
  The account is never locked.
* **No client address is no excuse.** An attempt without a usable address is
  counted as coming from ``stand_in_address`` (saslauthd, Dovecot without ``rip``).
  Allow-listed networks are never banned, but their failures still count per name.
* **Store failures never decide a login.** A Redis error makes the guard carry on
  with its local in-memory store (still protecting this process) and counts the
  errors for monitoring. A background probe pings Redis every PROBE_EVERY seconds
  and returns to it at the first answer (at the latest after ``retry_interval``);
  failures of operations that started before the latest failure or return belong to
  that episode and do not send the guard back (a restart leaves several pooled
  connections dead at once, each failing once).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from mailwarden.config import GuardConfig, GuardRule
from mailwarden.errors import StoreUnavailable
from mailwarden.guard.stores.base import Ban, FlushHandler, GuardStore
from mailwarden.guard.stores.memory import MemoryStore
from mailwarden.lograte import RateLimitedLog

# Re-exported: the engine names it from here.
from mailwarden.model import ACCOUNT_PREFIX, parse_ip

log = logging.getLogger("mailwarden.guard")

T = TypeVar("T")

ACCOUNT_RULE = "account"
#: How many networks per account are remembered as "known" (newest kept).
KNOWN_NETWORKS_LIMIT = 32
#: A (account, network) success is written to the store at most this often.
KNOWN_REFRESH = 3600.0
#: Seconds during which "is this account protected?" is answered from memory.
PROTECTION_MEMO = 1.0
#: Seconds during which a ban just written is not written (nor logged) again.
BAN_MEMO = 5.0
#: How many parsed remote addresses are remembered (then forgotten all at once).
SOURCE_CACHE_SIZE = 16384
#: Longer address text is never remembered: no address is written longer (an IPv6
#: address with an IPv4 tail and a zone), so it is junk a client sent as ``rip``.
SOURCE_TEXT_MAX = 64
#: Seconds between two pings of an unavailable shared store.
PROBE_EVERY = 0.5


#: Prefix of the per-name subject of a login name that matches no account.
UNKNOWN_SUBJECT = "?"


@dataclass(frozen=True, slots=True)
class Source:
    """Where an attempt comes from, cut to each rule's prefix.

    An allow-listed source has no networks (nothing to ban) and ``home`` ``"*"``:
    it is still counted per name, and is never a known network."""

    ip: str
    networks: tuple[tuple[GuardRule, str], ...]
    home: str  # the network used for "known networks" and the password history
    targets: tuple[str, ...]  # the distinct networks of ``networks``, as bans name them

    @property
    def trusted(self) -> bool:
        """Allow-listed: counted per name only, never banned, never a known network."""
        return not self.networks


def unknown_subject(login: str) -> str:
    """The per-name subject of a login name that matches no account: a digest, so
    that names (often a user's typo of their own address) are not stored in clear.
    Unkeyed, so that every process and node of a site counts the same name alike."""
    digest = hashlib.blake2b(login.lower().encode(), digest_size=12, person=b"mw-unknown")
    return UNKNOWN_SUBJECT + digest.hexdigest()


def network_of(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, v4: int, v6: int) -> str:
    """``ip``'s network of prefix length ``v4`` or ``v6``, as ``ip_network`` writes it."""
    if ip.version == 4:
        # The same text as str(ip_network(...)) without parsing it back (a new client
        # address is cut once per rule: this is on the path of every cold login).
        base = int(ip) & (0xFFFFFFFF << (32 - v4)) & 0xFFFFFFFF
        return f"{base >> 24}.{(base >> 16) & 255}.{(base >> 8) & 255}.{base & 255}/{v4}"
    return str(ipaddress.IPv6Network((int(ip), v6), strict=False))


class Guard:
    """Brute-force state and decisions over a :class:`GuardStore` (see module docstring)."""

    def __init__(
        self,
        config: GuardConfig,
        store: GuardStore | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.local = MemoryStore()
        self.store: GuardStore = store if store is not None else self.local
        self.clock = clock
        self.store_errors = 0
        self.degraded_until = 0.0
        #: The failure that started the latest episode (/readyz logs it
        #: while degraded): which server or Sentinel master, and what went wrong.
        self.store_problem = ""
        # When the latest episode of store trouble started or ended (monotonic):
        # a failure of an operation started before it belongs to that episode.
        self._episode = 0.0
        self._probe: asyncio.Task[None] | None = None
        self._log = RateLimitedLog(log)
        self._history_key = secrets.token_bytes(32)
        self._recent_known: dict[tuple[str, str], float] = {}
        self._sources: dict[str, Source | None] = {}
        self._recent_bans: dict[str, float] = {}
        self._protected: dict[str, tuple[float, bool]] = {}
        # (uid, network) -> until when this process let a typo pass there (succeeded()).
        self._typos: dict[tuple[str, str], float] = {}
        self.bans_made = 0  # a metric
        self.reconfigure(config)

    def reconfigure(self, config: GuardConfig) -> None:
        """Take ``config``'s rules, allow-list and limits (at start, and on SIGHUP:
        the store itself stays; memos derived from the old rules are dropped)."""
        self.config = config
        self._allow = [ipaddress.ip_network(n, strict=False) for n in config.allow_networks]
        self._history_ttl = max((r.period for r in config.rules), default=3600.0)
        self._sources.clear()
        self._recent_bans.clear()
        self._protected.clear()

    # ------------------------------------------------------------ the store, safely

    async def _call(self, op: Callable[[GuardStore], Awaitable[T]]) -> T:
        """Run ``op`` on the shared store; on StoreUnavailable, on the local one."""
        if self.store is not self.local and self.clock() >= self.degraded_until:
            started = time.monotonic()
            try:
                return await op(self.store)
            except StoreUnavailable as exc:
                self._store_failed(exc, started)
        return await op(self.local)

    def _store_failed(self, exc: StoreUnavailable, started: float) -> None:
        self.store_errors += 1
        if started < self._episode:
            return  # another failure of the episode already handled (module docstring)
        self._episode = time.monotonic()
        self.degraded_until = self.clock() + self._retry_interval
        self.store_problem = str(exc)
        self._log.warning(
            "store", "guard store unavailable (%s): using local state until it answers", exc
        )
        if self._probe is None or self._probe.done():
            with contextlib.suppress(RuntimeError):  # no running loop: retry_interval rules
                self._probe = asyncio.get_running_loop().create_task(self._probe_store())

    async def _probe_store(self) -> None:
        """Ping the shared store until it answers, then use it again."""
        while self.degraded:
            await asyncio.sleep(min(PROBE_EVERY, self._retry_interval))
            try:
                await self.store.ping()
            except StoreUnavailable:
                continue
            self._episode = time.monotonic()
            self.degraded_until = 0.0
            left_out = self._log.clear("store")
            log.warning(
                "guard store is back (%d failures not logged): shared state again", left_out
            )

    async def check_store(self) -> None:
        """Ping the shared store now (``/readyz``), so that an outage shows without
        traffic; a failure starts local state as any failed operation does."""
        if self.store is not self.local and not self.degraded:
            await self._call(lambda s: s.ping())

    async def on_store(self, op: Callable[[GuardStore], Awaitable[T]]) -> T:
        """Run ``op`` on the store this guard uses now (the control socket's ``store``
        op: a one-shot command borrowing the daemon's state)."""
        return await self._call(op)

    @property
    def _retry_interval(self) -> float:
        return self.config.redis.retry_interval

    @property
    def shared(self) -> bool:
        """Whether the state is shared with other processes (a Redis store)."""
        return self.store is not self.local

    @property
    def degraded(self) -> bool:
        return self.store is not self.local and self.clock() < self.degraded_until

    # ------------------------------------------------------------ decisions

    def source(self, remote_ip: str | None) -> Source | None:
        """The attempt's source, or None when the guard is disabled.

        No address, or one that does not parse, is ``stand_in_address`` (or, when
        that is empty, a trusted source: counted per name only)."""
        if not self.config.enabled:
            return None
        if not remote_ip:
            remote_ip = self.config.stand_in_address or "-"
        # Parsing addresses and cutting networks costs tens of microseconds and the
        # same clients come back all the time: remember recent answers (bounded).
        try:
            return self._sources[remote_ip]
        except KeyError:
            pass
        if len(remote_ip) > SOURCE_TEXT_MAX:
            return self._source(remote_ip)
        if len(self._sources) >= SOURCE_CACHE_SIZE:
            self._sources.clear()
        found = self._source(remote_ip)
        self._sources[remote_ip] = found
        return found

    def _source(self, remote_ip: str) -> Source:
        try:
            ip = parse_ip(remote_ip.split("%", 1)[0])
        except ValueError:
            stand_in = self.config.stand_in_address
            if not stand_in or remote_ip == stand_in:
                return Source(ip="-", networks=(), home="*", targets=())
            return self._source(stand_in)
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if any(ip in net for net in self._allow):
            return Source(ip=str(ip), networks=(), home="*", targets=())
        c = self.config
        networks = tuple(
            (rule, network_of(ip, rule.ipv4_prefix, rule.ipv6_prefix)) for rule in c.rules
        )
        home = network_of(ip, c.known_ipv4_prefix, c.known_ipv6_prefix)
        targets = tuple(dict.fromkeys(net for _, net in networks))
        return Source(ip=str(ip), networks=networks, home=home, targets=targets)

    async def blocked(self, source: Source) -> str | None:
        """The banned network ``source`` belongs to, or None."""
        targets = source.targets
        if not targets:
            return None
        now = self.clock()
        if self.store is self.local:
            # Asked on every login: the in-process store answers without the
            # fallback machinery (there is nothing to fall back from).
            return self.local.banned_now(targets, now)
        return await self._call(lambda s: s.banned(targets, now))

    async def delay(self, source: Source, uid: str) -> float:
        """Seconds to slow this attempt on ``uid`` (account protection), or 0.

        ``uid`` is an account's uid or, for a name that matches no account, its
        :func:`unknown_subject`: both take the same steps, so the delay (and the time
        taken to decide it) does not tell which names exist."""
        c = self.config
        if c.account_threshold <= 0 or c.account_delay <= 0:
            return 0.0
        now = self.clock()
        user = uid.lower()
        # Whether the account is protected is remembered for a second: with a
        # shared store that spares a round trip on almost every login, and a
        # protection that starts a second late changes nothing.
        memo = self._protected.get(user)
        if memo is not None and memo[0] > now:
            protected = memo[1]
        else:
            target = ACCOUNT_PREFIX + user
            protected = await self._call(lambda s: s.banned([target], now)) is not None
            if len(self._protected) > 100_000:
                self._protected.clear()
            self._protected[user] = (now + PROTECTION_MEMO, protected)
        if not protected:
            return 0.0
        known = await self._call(lambda s: s.has_member(_known_key(uid), source.home, now))
        return 0.0 if known else c.account_delay

    async def failed(
        self,
        source: Source,
        *,
        uid: str,
        password: bytes | None,
        password_variant: str | None = None,
    ) -> bool:
        """Count a wrong password on ``uid`` (an account's uid, or the
        :func:`unknown_subject` of a name that matches none); whether it counted.

        ``password_variant`` stands for a password this process never sees (Dovecot's
        truncated ``pwhash``, docs/policy-server.md): attempts with equal variants
        are the same wrong password for ``distinct_passwords``. Give it instead of
        ``password``; variants are digested apart from passwords (another ``person``)."""
        c = self.config
        now = self.clock()
        user = uid.lower()
        material, person = password, b""
        if password is None and password_variant:
            material, person = password_variant.encode(), b"mw-variant"
        if c.distinct_passwords and material is not None:
            digest = hashlib.blake2b(
                user.encode() + b"\0" + material,
                key=self._history_key,
                digest_size=12,
                person=person,
            ).digest()
            key = f"history|{source.home}|{user}"
            new = await self.local.add_member(
                key, digest.hex(), self._history_ttl, c.history_size, now
            )
            if not new:
                log.debug("guard: repeated wrong password for %s from %s", uid, source.home)
                return False
        networks = source.networks
        known = bool(networks) and await self._call(
            lambda s: s.has_member(_known_key(uid), source.home, now)
        )
        if known:
            # The account logged in from this network before: a wrong password here is
            # most likely its owner's typo. The first few per account and network are
            # kept off the network rules (many owners behind one NAT must not ban
            # their office), the rest count as usual: a known network raises the
            # threshold, it never stops the counting (docs/guard.md).
            key = f"known-net|{source.home}|{user}"
            tolerated = await self._call(lambda s: s.hit([(key, c.account_period)], now))
            if tolerated[0] <= c.known_network_failures:
                log.debug("guard: wrong password for %s from its known network", uid)
                networks = ()
                if len(self._typos) > 100_000:
                    self._typos.clear()
                self._typos[(user, source.home)] = now + c.account_period
        counters = [(f"{rule.name}|{net}", rule.period) for rule, net in networks]
        account_target = None
        if c.account_threshold > 0:
            account_target = ACCOUNT_PREFIX + user
            counters.append((f"{ACCOUNT_RULE}|{account_target}", c.account_period))
        if not counters:
            return True
        estimates = await self._call(lambda s: s.hit(counters, now))
        for (rule, net), estimate in zip(networks, estimates, strict=False):
            if estimate >= rule.threshold and self._first_ban(net, now):
                log.warning(
                    "guard: banning %s for %.0f s (rule %s: %.0f failures in %.0f s)",
                    net,
                    c.ban_time,
                    rule.name,
                    estimate,
                    rule.period,
                )
                await self._ban(net, rule.name, c.ban_time, now)
        if (
            account_target is not None
            and estimates[-1] >= c.account_threshold
            and self._first_ban(account_target, now)
        ):
            await self._ban(account_target, ACCOUNT_RULE, c.account_period, now)
            self._protected[account_target.removeprefix(ACCOUNT_PREFIX)] = (
                now + PROTECTION_MEMO,
                True,
            )
        return True

    def _first_ban(self, target: str, now: float) -> bool:
        """Whether to write (and log) a ban of ``target`` now: requests already past
        the ban check when it was made would each ban again; within BAN_MEMO seconds
        one write is enough (short, so that a ban lifted elsewhere is renewed)."""
        if self._recent_bans.get(target, 0.0) > now:
            return False
        if len(self._recent_bans) > 10_000:
            self._recent_bans.clear()
        self._recent_bans[target] = now + BAN_MEMO
        self.bans_made += 1
        return True

    async def succeeded(self, source: Source, uid: str) -> None:
        """Remember that ``uid`` logs in from ``source``'s network (not a trusted one:
        everyone comes from there), and forgive the typos counted against its
        allowance there (``known_network_failures``); never any network's counters."""
        if source.trusted:
            return
        now = self.clock()
        mark = (uid.lower(), source.home)
        if self._typos.pop(mark, 0.0) > now:
            # The owner proved the password from here: the typos this process let
            # pass from this known network are forgiven (docs/guard.md, "A success
            # forgives typos"). The target ``<network>|<uid>`` names exactly that
            # counter (``known-net|<network>|<uid>``), and no ban has that name.
            await self._call(lambda s: s.unban(f"{mark[1]}|{mark[0]}"))
        if self._recent_known.get(mark, 0.0) > now:
            return
        if len(self._recent_known) > 100_000:
            self._recent_known.clear()
        self._recent_known[mark] = now + KNOWN_REFRESH
        ttl = self.config.known_network_ttl
        await self._call(
            lambda s: s.add_member(_known_key(uid), source.home, ttl, KNOWN_NETWORKS_LIMIT, now)
        )

    # ------------------------------------------------------------ administration

    async def bans(self) -> list[Ban]:
        """Blocked networks and protected accounts (``account:<uid>``)."""
        now = self.clock()
        return await self._call(lambda s: s.bans(now))

    async def describe_bans(self) -> list[dict[str, object]]:
        """:meth:`bans` as JSON-able dicts (control socket, admin API, CLI)."""
        now = self.clock()
        out: list[dict[str, object]] = []
        for ban in await self.bans():
            account = ban.target.startswith(ACCOUNT_PREFIX)
            out.append(
                {
                    "target": ban.target,
                    "kind": "account" if account else "network",
                    "rule": ban.rule,
                    "expires": round(ban.expires, 3),
                    "ttl": max(0, round(ban.expires - now)),
                }
            )
        return out

    async def unblock(self, target: str | None) -> int:
        """Lift a ban: a network as listed (``192.0.2.0/24``), ``account:<uid>`` (and the
        protection of that name counted as a name, ``account:?<digest>``), or an
        address (every network it falls in); None lifts every ban. Returns how many
        were lifted; the counters behind them are reset too."""
        self._protected.clear()
        if target is None:
            self._recent_bans.clear()
            return await self._call(lambda s: s.unban(None))
        targets = [target]
        if target.startswith(ACCOUNT_PREFIX):
            targets = [target.lower()]
            name = target.removeprefix(ACCOUNT_PREFIX)
            if name and not name.startswith(UNKNOWN_SUBJECT):
                # The same name counted as a name (no such account, or Dovecot's
                # policy requests: docs/policy-server.md) is lifted by its name too.
                targets.append(ACCOUNT_PREFIX + unknown_subject(name))
        elif "/" in target:
            with contextlib.suppress(ValueError):
                targets = [str(ipaddress.ip_network(target, strict=False))]
        else:
            try:
                ip = ipaddress.ip_address(target)
            except ValueError:
                pass
            else:
                rules = self.config.rules
                targets = list(
                    dict.fromkeys(network_of(ip, r.ipv4_prefix, r.ipv6_prefix) for r in rules)
                )
        lifted = 0
        for t in targets:
            self._recent_bans.pop(t, None)
            lifted += await self._unban(t)
        return lifted

    async def _ban(self, target: str, rule: str, ttl: float, now: float) -> None:
        await self._call(lambda s: s.ban(target, rule, ttl, now))

    async def _unban(self, target: str) -> int:
        return await self._call(lambda s: s.unban(target))

    # ------------------------------------------------------------ cache fan-out

    async def subscribe_flush(self, handler: FlushHandler) -> None:
        await self.local.subscribe_flush(handler)
        if self.store is not self.local:
            try:
                await self.store.subscribe_flush(handler)
            except StoreUnavailable as exc:
                self.store_errors += 1
                log.warning("guard store unavailable (%s): flushes stay local", exc)

    async def publish_flush(self, users: list[str] | None) -> None:
        """Tell every process sharing the store (and this one) to flush ``users``."""
        if self.store is self.local:
            await self.local.publish_flush(users)
            return
        try:
            await self.store.publish_flush(users)
        except StoreUnavailable as exc:
            self.store_errors += 1
            log.warning("guard store unavailable (%s): flush applied locally only", exc)
            await self.local.publish_flush(users)

    async def close(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe
        if self.store is not self.local:
            await self.store.close()
        await self.local.close()


def _known_key(uid: str) -> str:
    return f"known|{uid.lower()}"
