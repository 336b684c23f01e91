"""The guard and the verified-login cache, through Engine.authenticate().

Sources are documentation addresses (RFC 5737 / RFC 3849) so that nothing here
depends on the default allow-list of loopback.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailwarden.auth.engine import Engine
from mailwarden.config import CacheConfig, Config, GuardConfig, GuardRule
from mailwarden.directories.memory import MemoryDirectory
from mailwarden.errors import StoreUnavailable
from mailwarden.guard.policy import Guard, network_of, unknown_subject
from mailwarden.guard.stores.memory import MemoryStore
from mailwarden.model import Accepted, AccountStatus, Denied, DenyReason
from tests.conftest import EngineFactory
from tests.helpers import FAST, attempt, hashed

ATTACKER = "192.0.2.66"
NEIGHBOUR = "192.0.2.67"  # same /24 as the attacker
OWNER = "198.51.100.10"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def guard_config(**kw: Any) -> GuardConfig:
    base = GuardConfig(
        allow_networks=(),
        rules=(
            GuardRule(name="ip", period=60.0, threshold=5),
            GuardRule(name="net", period=3600.0, threshold=20, ipv4_prefix=24, ipv6_prefix=64),
        ),
        account_threshold=0,
    )
    return dataclasses.replace(base, **kw)


def make(
    make_engine: EngineFactory,
    directory: MemoryDirectory,
    *,
    guard: GuardConfig | None = None,
    store: Any = None,
    clock: Clock | None = None,
    cache: CacheConfig | None = None,
) -> Engine:
    config = dataclasses.replace(FAST, guard=guard or guard_config(), cache=cache or CacheConfig())
    engine = make_engine(config, directory)
    engine.guard = Guard(config.guard, store, clock=clock or Clock())
    return engine


async def login(engine: Engine, user: str, password: str, ip: str) -> object:
    return await engine.authenticate(attempt(user, password, remote_ip=ip))


def is_blocked(outcome: object) -> bool:
    return isinstance(outcome, Denied) and outcome.reason is DenyReason.BLOCKED


async def test_a_source_over_the_threshold_is_blocked_without_a_password_check(
    make_engine: EngineFactory, directory: MemoryDirectory
) -> None:
    engine = make(make_engine, directory)
    for i in range(5):
        outcome = await login(engine, "alice", f"guess{i}", ATTACKER)
        assert isinstance(outcome, Denied) and outcome.reason is DenyReason.CREDENTIALS
    before = engine.hasher.verifications
    # Banned now: even the right password is refused, and nothing is verified.
    assert is_blocked(await login(engine, "alice", "secret", ATTACKER))
    assert is_blocked(await login(engine, "nobody", "x", ATTACKER))
    assert engine.hasher.verifications == before
    # The owner elsewhere is not affected, nor is the attacker's neighbour (/32 rule).
    assert isinstance(await login(engine, "alice", "secret", OWNER), Accepted)
    assert isinstance(await login(engine, "alice", "secret", NEIGHBOUR), Accepted)


async def test_the_network_rule_bans_the_whole_prefix(
    make_engine: EngineFactory, directory: MemoryDirectory
) -> None:
    engine = make(make_engine, directory)
    # 4 failures each from 5 addresses of one /24: no /32 rule trips, the /24 rule does.
    for host in range(5):
        for i in range(4):
            await login(engine, f"user{host}{i}", "x", f"203.0.113.{host + 1}")
    assert is_blocked(await login(engine, "alice", "secret", "203.0.113.200"))
    bans = await engine.guard.bans()
    assert [(b.target, b.rule) for b in bans] == [("203.0.113.0/24", "net")]
    assert isinstance(await login(engine, "alice", "secret", "203.0.114.1"), Accepted)


async def test_ipv6_sources_are_scoped_by_prefix(
    make_engine: EngineFactory, directory: MemoryDirectory
) -> None:
    engine = make(
        make_engine,
        directory,
        guard=guard_config(rules=(GuardRule(name="v6", period=60.0, threshold=3, ipv6_prefix=64),)),
    )
    # Privacy addresses: a new address per attempt, all in one /64.
    for i in range(3):
        await login(engine, f"u{i}", "x", f"2001:db8:1:2::{i + 1:x}")
    assert is_blocked(await login(engine, "alice", "secret", "2001:db8:1:2:ffff::1"))
    assert isinstance(await login(engine, "alice", "secret", "2001:db8:1:3::1"), Accepted)
    # An IPv4-mapped address is the IPv4 address.
    assert engine.guard.source("::ffff:192.0.2.1") == engine.guard.source("192.0.2.1")


async def test_a_repeated_stale_password_counts_once(
    make_engine: EngineFactory, directory: MemoryDirectory
) -> None:
    engine = make(make_engine, directory)
    # A phone retrying its old password 50 times never gets its network banned...
    for _ in range(50):
        outcome = await login(engine, "alice", "old-password", ATTACKER)
        assert isinstance(outcome, Denied) and outcome.reason is DenyReason.CREDENTIALS
    assert await engine.guard.bans() == []
    # ...but distinct guesses do count (from a network alice never logged in from).
    elsewhere = "203.0.113.5"
    for i in range(5):
        await login(engine, "alice", f"guess{i}", elsewhere)
    assert is_blocked(await login(engine, "alice", "secret", elsewhere))
    assert isinstance(await login(engine, "alice", "secret", ATTACKER), Accepted)


async def test_an_office_full_of_stale_passwords_does_not_ban_itself(
    make_engine: EngineFactory, directory: MemoryDirectory
) -> None:
    """Many accounts behind one NAT, each with a phone sending an old password."""
    from mailwarden.model import Account

    engine = make(make_engine, directory)
    office = "198.51.100.200"
    users = [f"staff{i}" for i in range(12)]
    for user in users:
        await directory.create(Account(uid=user, password=hashed("right")))
        assert isinstance(await login(engine, user, "right", office), Accepted)
    for user in users:  # 12 distinct wrong passwords from one address: over the limit of 5
        await login(engine, user, f"old-{user}", office)
    assert await engine.guard.bans() == []
    assert isinstance(await login(engine, "staff0", "right", office), Accepted)
    # Guesses on an account that never logged in from the office still count.
    for i in range(5):
        await login(engine, "alice", f"guess{i}", office)
    assert is_blocked(await login(engine, "staff1", "right", office))


async def test_unknown_names_are_counted_like_accounts_without_their_names_in_clear(
    make_engine: EngineFactory, directory: MemoryDirectory
) -> None:
    engine = make(make_engine, directory)
    # A repeated password counts once, for a made-up name as for alice (else a ban
    # after five repeats would say "this name does not exist")...
    for user in ("alice", "nobody"):
        for _ in range(20):
            await login(engine, user, "same", ATTACKER)
    assert await engine.guard.bans() == []
    # ...and distinct ones count for both.
    for i in range(5):
        await login(engine, "nobody", f"guess{i}", ATTACKER)
    assert is_blocked(await login(engine, "alice", "secret", ATTACKER))
    local = engine.guard.local
    assert not any("nobody" in key for key in [*local._sets, *local._windows])


async def test_many_random_usernames_keep_the_state_bounded(
    make_engine: EngineFactory, directory: MemoryDirectory
) -> None:
    engine = make(
        make_engine,
        directory,
        guard=guard_config(rules=(GuardRule(name="ip", period=60.0, threshold=10**6),)),
    )
    engine.guard.local.max_keys = 100
    for i in range(300):
        await login(engine, f"random{i}", "pw", f"198.18.{i // 250}.{i % 250}")
    local = engine.guard.local
    assert len(local._sets) <= 100 and len(local._windows) <= 100


async def test_account_protection_looks_the_same_for_unknown_names(
    make_engine: EngineFactory, directory: MemoryDirectory, caplog: pytest.LogCaptureFixture
) -> None:
    """30 failures on a real account slowed it; made-up names answered at once."""
    engine = make(
        make_engine,
        directory,
        guard=guard_config(account_threshold=6, account_delay=0.25, account_period=3600.0),
    )
    guard = engine.guard
    for user in ("alice", "made-up@example.com"):
        for i in range(6):  # one guess each from many networks: no network rule trips
            await login(engine, user, f"guess{i}", f"100.64.{i}.1")
    new_source = guard.source("100.65.0.1")
    assert new_source is not None
    made_up = unknown_subject("made-up@example.com")
    assert await guard.delay(new_source, "alice") == 0.25
    assert await guard.delay(new_source, made_up) == 0.25
    assert {b.target for b in await guard.bans()} == {"account:alice", "account:" + made_up}
    # A name never tried is not slowed, existing or not.
    assert await guard.delay(new_source, unknown_subject("other")) == 0.0
    # And the engine does slow the made-up name (its debug trace says so).
    caplog.set_level(logging.INFO, logger="mailwarden.debug")
    for user in ("alice", "made-up@example.com"):
        await engine.authenticate(attempt(user, "again", remote_ip="100.65.0.1", debug=True))
    slowed = [r for r in caplog.records if "account is protected" in r.getMessage()]
    assert len(slowed) == 2


async def test_a_known_network_raises_the_threshold_but_never_stops_counting(
    make_engine: EngineFactory, directory: MemoryDirectory
) -> None:
    """300 wrong passwords from the victim's own /24 used to go unbanned."""
    engine = make(make_engine, directory, guard=guard_config(known_network_failures=20))
    assert isinstance(await login(engine, "alice", "secret", NEIGHBOUR), Accepted)
    outcomes = [await login(engine, "alice", f"guess{i}", ATTACKER) for i in range(300)]
    first_blocked = next(i for i, o in enumerate(outcomes) if is_blocked(o))
    # The owner's typos: 20 are tolerated, the rule's 5 more ban the address.
    assert first_blocked == 25
    assert is_blocked(await login(engine, "alice", "secret", ATTACKER))


async def test_attempts_without_an_address_count_as_the_stand_in(
    make_engine: EngineFactory, directory: MemoryDirectory
) -> None:
    """saslauthd, or the Dovecot socket without rip: 200 guesses used to go unbanned."""
    engine = make(
        make_engine, directory, guard=guard_config(account_threshold=3, account_delay=0.01)
    )
    for i in range(3):  # under the rule's 5: the name's own counter protects it
        await engine.authenticate(attempt("alice", f"guess{i}"))
    assert {b.target for b in await engine.guard.bans()} == {"account:alice"}
    for i in range(3, 200):
        await engine.authenticate(attempt("alice", f"guess{i}"))
    assert is_blocked(await engine.authenticate(attempt("alice", "secret")))
    targets = {b.target for b in await engine.guard.bans()}
    assert targets == {"0.0.0.0/32", "account:alice"}
    # An address that does not parse is no way around it.
    assert is_blocked(await engine.authenticate(attempt("alice", "secret", remote_ip="x")))
    # Real addresses are not affected.
    assert isinstance(await login(engine, "alice", "secret", OWNER), Accepted)


async def test_without_a_stand_in_addressless_attempts_count_per_name(
    make_engine: EngineFactory, directory: MemoryDirectory
) -> None:
    engine = make(
        make_engine,
        directory,
        guard=guard_config(stand_in_address="", account_threshold=30, account_delay=0.25),
    )
    for i in range(30):
        await engine.authenticate(attempt("alice", f"guess{i}"))
    source = engine.guard.source(None)
    assert source is not None and source.trusted
    assert await engine.guard.delay(source, "alice") == 0.25
    assert {b.target for b in await engine.guard.bans()} == {"account:alice"}


async def test_allow_listed_networks_are_never_banned_but_count_per_name(
    make_engine: EngineFactory, directory: MemoryDirectory
) -> None:
    engine = make(
        make_engine,
        directory,
        guard=guard_config(
            allow_networks=("192.0.2.0/24",), account_threshold=30, account_delay=0.01
        ),
    )
    for i in range(40):  # Dovecot's rip=127.0.0.1 of a local webmail, say
        outcome = await login(engine, "alice", f"guess{i}", ATTACKER)
        assert isinstance(outcome, Denied) and outcome.reason is DenyReason.CREDENTIALS
    assert {b.target for b in await engine.guard.bans()} == {"account:alice"}
    source = engine.guard.source(ATTACKER)
    assert source is not None and source.trusted
    # Slowed, never locked; and a login from there never makes the network "known".
    assert await engine.guard.delay(source, "alice") == 0.01
    assert isinstance(await login(engine, "alice", "secret", ATTACKER), Accepted)
    assert await engine.guard.delay(source, "alice") == 0.01


async def test_bans_expire_and_can_be_lifted(
    make_engine: EngineFactory, directory: MemoryDirectory
) -> None:
    clock = Clock()
    engine = make(make_engine, directory, clock=clock, guard=guard_config(ban_time=600.0))
    for i in range(5):
        await login(engine, "alice", f"guess{i}", ATTACKER)
    assert is_blocked(await login(engine, "alice", "secret", ATTACKER))
    assert await engine.guard.unblock(ATTACKER) == 1
    assert isinstance(await login(engine, "alice", "secret", ATTACKER), Accepted)
    # The counters were reset with the ban: one more failure does not re-ban.
    # (Guesses on an unknown name: alice's own failures from here no longer count,
    # now that she logged in from this network.)
    await login(engine, "nobody", "another", ATTACKER)
    assert isinstance(await login(engine, "alice", "secret", ATTACKER), Accepted)
    for i in range(5):
        await login(engine, "nobody", f"more{i}", ATTACKER)
    assert is_blocked(await login(engine, "alice", "secret", ATTACKER))
    clock.now += 601
    assert isinstance(await login(engine, "alice", "secret", ATTACKER), Accepted)


async def test_unblock_everything(make_engine: EngineFactory, directory: MemoryDirectory) -> None:
    engine = make(make_engine, directory)
    for ip in (ATTACKER, "203.0.113.9"):
        for i in range(5):
            await login(engine, "alice", f"g{i}", ip)
    assert len(await engine.guard.bans()) == 2
    assert await engine.guard.unblock(None) == 2
    assert await engine.guard.bans() == []


async def test_distributed_attack_slows_new_networks_but_not_known_ones(
    make_engine: EngineFactory, directory: MemoryDirectory
) -> None:
    engine = make(
        make_engine,
        directory,
        guard=guard_config(account_threshold=6, account_delay=0.25, account_period=3600.0),
    )
    guard = engine.guard
    # The owner logs in from home once: that /24 becomes a known network.
    assert isinstance(await login(engine, "alice", "secret", OWNER), Accepted)
    # A botnet: one guess each from many networks (no network rule trips).
    for i in range(6):
        await login(engine, "alice", f"guess{i}", f"100.64.{i}.1")
    assert any(b.target == "account:alice" for b in await guard.bans())
    new_source = guard.source("100.65.0.1")
    home = guard.source("198.51.100.99")  # another address in the owner's /24
    assert new_source is not None and home is not None
    assert await guard.delay(new_source, "alice") == 0.25
    assert await guard.delay(home, "alice") == 0.0
    # Slowed, never locked: the right password from a new network still works.
    assert isinstance(await login(engine, "alice", "secret", "100.65.0.1"), Accepted)
    assert await guard.unblock("account:alice") == 1
    assert await guard.delay(new_source, "alice") == 0.0


async def test_a_store_failure_never_decides_a_login(
    make_engine: EngineFactory, directory: MemoryDirectory
) -> None:
    class DownStore(MemoryStore):
        async def hit(self, counters: Any, now: float) -> list[float]:
            raise StoreUnavailable("redis is down")

        async def banned(self, targets: Any, now: float) -> str | None:
            raise StoreUnavailable("redis is down")

    engine = make(make_engine, directory, store=DownStore())
    assert isinstance(await login(engine, "alice", "secret", ATTACKER), Accepted)
    for i in range(5):
        outcome = await login(engine, f"nobody{i}", f"guess{i}", ATTACKER)
        assert isinstance(outcome, Denied) and outcome.reason is DenyReason.CREDENTIALS
    # Local state took over: still protected, and the errors were counted.
    assert engine.guard.degraded
    assert engine.guard.store_errors >= 1
    assert is_blocked(await login(engine, "alice", "secret", ATTACKER))
    assert [b.target for b in await engine.guard.local.bans(engine.guard.clock())] == [
        "192.0.2.66/32"
    ]


# --------------------------------------------------------------------------- cache


async def test_a_repeat_login_skips_the_hash_and_a_wrong_password_never_hits(
    make_engine: EngineFactory, directory: MemoryDirectory
) -> None:
    await directory.update("alice", {"password": hashed("secret", "ARGON2ID")})
    engine = make(make_engine, directory)
    assert isinstance(await login(engine, "alice", "secret", OWNER), Accepted)
    before = engine.hasher.verifications
    for _ in range(5):
        assert isinstance(await login(engine, "alice", "secret", OWNER), Accepted)
    assert engine.hasher.verifications == before
    assert engine.cache.hits == 5
    assert isinstance(await login(engine, "alice", "Secret", OWNER), Denied)
    assert engine.hasher.verifications == before + 1


async def test_a_password_change_behind_our_back_invalidates_the_cache_at_once(
    make_engine: EngineFactory, directory: MemoryDirectory
) -> None:
    await directory.update("alice", {"password": hashed("secret", "ARGON2ID")})
    engine = make(make_engine, directory)
    assert isinstance(await login(engine, "alice", "secret", OWNER), Accepted)
    # Changed directly in the directory (as an LDAP admin would): no flush, no message.
    await directory.set_password("alice", hashed("new", "ARGON2ID"))
    assert isinstance(await login(engine, "alice", "secret", OWNER), Denied)
    assert isinstance(await login(engine, "alice", "new", OWNER), Accepted)


async def test_status_and_service_switches_apply_to_cached_logins(
    make_engine: EngineFactory, directory: MemoryDirectory
) -> None:
    await directory.update("alice", {"password": hashed("secret", "ARGON2ID")})
    engine = make(make_engine, directory)
    assert isinstance(await login(engine, "alice", "secret", OWNER), Accepted)
    await directory.update("alice", {"status": AccountStatus.DISABLED})
    outcome = await login(engine, "alice", "secret", OWNER)
    assert isinstance(outcome, Denied) and outcome.reason is DenyReason.DISABLED
    await directory.update("alice", {"status": AccountStatus.ACTIVE, "services": {"imap": False}})
    outcome = await login(engine, "alice", "secret", OWNER)
    assert isinstance(outcome, Denied) and outcome.reason is DenyReason.SERVICE_DISABLED


async def test_flush_by_address_drops_the_uids_entries(
    make_engine: EngineFactory, directory: MemoryDirectory
) -> None:
    await directory.update("alice", {"password": hashed("secret", "ARGON2ID")})
    engine = make(make_engine, directory)
    await login(engine, "alice", "secret", OWNER)
    assert len(engine.cache) == 1
    assert await engine.flush_cache(["alice@example.com"]) == 1
    assert len(engine.cache) == 0


async def test_the_cache_holds_no_password_and_is_bounded(make_engine: EngineFactory) -> None:
    from mailwarden.guard.logincache import LoginCache

    clock = Clock()
    cache = LoginCache(CacheConfig(ttl=10.0, max_entries=3), clock=clock)
    for i in range(5):
        cache.remember(f"u{i}", "{ARGON2ID}x", f"password-{i}".encode())
    assert len(cache) == 3
    assert not cache.verified("u0", "{ARGON2ID}x", b"password-0")  # evicted
    assert cache.verified("u4", "{ARGON2ID}x", b"password-4")
    assert not cache.verified("u4", "{ARGON2ID}y", b"password-4")  # another stored hash
    assert all(b"password" not in key for key in cache._verified)
    clock.now += 11
    assert not cache.verified("u4", "{ARGON2ID}x", b"password-4")  # expired


async def test_negative_cache_skips_the_directory_but_not_the_dummy_hash(
    make_engine: EngineFactory, directory: MemoryDirectory
) -> None:
    engine = make(make_engine, directory)
    finds = 0
    real_find = directory.find

    async def counting_find(*args: Any, **kw: Any) -> Any:
        nonlocal finds
        finds += 1
        return await real_find(*args, **kw)

    directory.find = counting_find  # type: ignore[method-assign]
    for i in range(3):
        assert isinstance(await login(engine, "ghost", f"pw{i}", OWNER), Denied)
    assert finds == 1
    assert engine.hasher.verifications == 3  # the dummy verification ran every time
    from mailwarden.model import Account

    await directory.create(Account(uid="ghost", password=hashed("pw0")))
    await engine.flush_cache(["ghost"])
    assert isinstance(await login(engine, "ghost", "pw0", OWNER), Accepted)


async def test_a_repeated_wrong_password_is_refused_without_hashing_for_anyone(
    make_engine: EngineFactory, directory: MemoryDirectory
) -> None:
    """A phone retrying its stale password costs one hash per cache TTL, and an unknown
    name gets exactly the same treatment (so timing does not tell them apart)."""
    engine = make(make_engine, directory)
    for user, source in (("alice", OWNER), ("nobody", NEIGHBOUR)):
        before = engine.hasher.verifications
        for _ in range(4):
            outcome = await login(engine, user, "stale", source)
            assert isinstance(outcome, Denied) and outcome.reason is DenyReason.CREDENTIALS
        assert engine.hasher.verifications == before + 1, user
    assert engine.cache.rejected_hits == 6
    # The right password is still checked, and accepted.
    assert isinstance(await login(engine, "alice", "secret", OWNER), Accepted)
    # A password change makes the remembered wrong password a candidate again.
    await directory.set_password("alice", hashed("stale"))
    assert isinstance(await login(engine, "alice", "stale", OWNER), Accepted)


def test_guard_config_rejects_bad_rules() -> None:
    from mailwarden.config import loads
    from mailwarden.errors import ConfigError

    with pytest.raises(ConfigError, match=r"guard\.rules"):
        loads('[[guard.rules]]\nname = "a"\nperiod = 60\nthreshold = 0\n')
    with pytest.raises(ConfigError, match="allow_networks"):
        loads('[guard]\nallow_networks = ["nope"]\n')
    config = loads('[[guard.rules]]\nname = "a"\nperiod = 60\nthreshold = 3\nipv4_prefix = 24\n')
    assert config.guard.rules == (GuardRule(name="a", period=60.0, threshold=3, ipv4_prefix=24),)
    assert Config().guard.rules[0].name == "ip-minute"


@given(
    st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)),
    st.integers(min_value=0, max_value=32),
    st.integers(min_value=0, max_value=128),
)
def test_network_of_writes_the_network_as_ipaddress_does(
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address, v4: int, v6: int
) -> None:
    prefix = v4 if ip.version == 4 else v6
    assert network_of(ip, v4, v6) == str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))
