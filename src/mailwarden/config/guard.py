"""The sections of brute-force protection and the login cache: ``[guard]`` (with its
rules and ``[guard.redis]``) and ``[cache]``; see docs/guard.md."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Literal

from mailwarden.config.build import HostPort, Section, host_port, require, require_networks
from mailwarden.errors import InvalidValue


@dataclass(frozen=True, slots=True, kw_only=True)
class GuardRule(Section):
    """One brute-force rule: more than ``threshold`` counted failures within
    ``period`` seconds from one network (the source address cut to the prefix of
    its family) bans that network for ``guard.ban_time``."""

    name: str
    period: float
    threshold: int
    ipv4_prefix: int = 32
    ipv6_prefix: int = 128

    def check(self, key: str) -> None:
        ok = 1 <= len(self.name) <= 32 and all(
            c.isascii() and (c.isalnum() or c in "-_") for c in self.name
        )
        require(ok, f"{key}.name", "1-32 letters, digits, - or _")
        require(1 <= self.period <= 30 * 86400, f"{key}.period", "seconds from 1 to 2592000")
        require(self.threshold >= 1, f"{key}.threshold", "an integer >= 1")
        require(0 <= self.ipv4_prefix <= 32, f"{key}.ipv4_prefix", "an integer from 0 to 32")
        require(0 <= self.ipv6_prefix <= 128, f"{key}.ipv6_prefix", "an integer from 0 to 128")


DEFAULT_GUARD_RULES = (
    GuardRule(name="ip-minute", period=60.0, threshold=10),
    GuardRule(name="net-hour", period=3600.0, threshold=100, ipv4_prefix=24, ipv6_prefix=64),
)


#: What ``guard.redis.sentinels`` takes (an error message says so).
SENTINEL_ADDRESS = "HOST:PORT such as 10.0.0.11:26379 or [fd00::11]:26379 (port 1-65535)"


@dataclass(frozen=True, slots=True, kw_only=True)
class RedisConfig(Section):
    """``[guard.redis]``: the shared state store of several workers and nodes.

    With ``sentinels`` the server is the master that the Sentinels name
    ``sentinel_master``, asked again for every new connection (docs/guard.md,
    "Sentinel"); ``url`` then gives only the db, the username and TLS.
    """

    url: str = "redis://127.0.0.1:6379/0"
    sentinels: tuple[str, ...] = ()
    sentinel_master: str = ""
    sentinel_password_file: str = ""
    password_file: str = ""
    key_prefix: str = "mailwarden:"
    timeout: float = 0.5
    retry_interval: float = 5.0

    def check(self, key: str) -> None:
        require(
            self.url.startswith(("redis://", "rediss://", "unix://")),
            f"{key}.url",
            "a redis://, rediss:// or unix:// URL",
        )
        seen = [(a.host.lower(), a.port) for a in self.sentinel_addresses(key)]
        for i, address in enumerate(seen):
            require(address not in seen[:i], f"{key}.sentinels[{i}]", "no Sentinel twice")
        require(
            bool(self.sentinel_master) == bool(self.sentinels),
            f"{key}.sentinel_master",
            "set together with sentinels",
        )
        require(
            all(c.isascii() and c.isprintable() and not c.isspace() for c in self.sentinel_master),
            f"{key}.sentinel_master",
            "a master name as in Sentinel's 'sentinel monitor' line (no spaces)",
        )
        require(
            not (self.sentinels and self.url.startswith("unix://")),
            f"{key}.url",
            "a redis:// or rediss:// URL with sentinels (it gives the db, username and TLS)",
        )
        require(
            bool(self.sentinels) or not self.sentinel_password_file,
            f"{key}.sentinel_password_file",
            "set only together with sentinels",
        )
        require(0 < self.timeout <= 10, f"{key}.timeout", "seconds from 0 to 10")
        require(self.retry_interval > 0, f"{key}.retry_interval", "seconds > 0")

    def sentinel_addresses(self, key: str = "guard.redis") -> tuple[HostPort, ...]:
        """``sentinels`` parsed; InvalidValue naming the first that is not ``HOST:PORT``."""
        out = []
        for i, addr in enumerate(self.sentinels):
            parsed = host_port(addr)
            if parsed is None:
                raise InvalidValue(f"{key}.sentinels[{i}]", SENTINEL_ADDRESS)
            out.append(parsed)
        return tuple(out)


@dataclass(frozen=True, slots=True, kw_only=True)
class GuardConfig(Section):
    """``[guard]``: brute-force protection; see docs/guard.md."""

    enabled: bool = True
    store: Literal["memory", "redis"] = "memory"
    allow_networks: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
    rules: tuple[GuardRule, ...] = DEFAULT_GUARD_RULES
    ban_time: float = 3600.0
    distinct_passwords: bool = True
    history_size: int = 8
    account_threshold: int = 30
    account_period: float = 3600.0
    account_delay: float = 3.0
    known_ipv4_prefix: int = 24
    known_ipv6_prefix: int = 64
    known_network_ttl: float = 90 * 86400.0
    known_network_failures: int = 20
    stand_in_address: str = "0.0.0.0"  # noqa: S104 - an address to count by, not to bind
    redis: RedisConfig = field(default_factory=RedisConfig)

    def check(self, key: str) -> None:
        require_networks(self.allow_networks, f"{key}.allow_networks", "10.0.0.0/8")
        names = [r.name for r in self.rules]
        require(len(names) == len(set(names)), f"{key}.rules", "rules with different names")
        require(self.ban_time > 0, f"{key}.ban_time", "seconds > 0")
        require(1 <= self.history_size <= 100, f"{key}.history_size", "an integer from 1 to 100")
        require(self.account_threshold >= 0, f"{key}.account_threshold", "an integer >= 0")
        require(self.account_period > 0, f"{key}.account_period", "seconds > 0")
        require(
            0 <= self.account_delay <= 8,
            f"{key}.account_delay",
            "seconds from 0 to 8 (Postfix times out after 10)",
        )
        require(0 <= self.known_ipv4_prefix <= 32, f"{key}.known_ipv4_prefix", "0 to 32")
        require(0 <= self.known_ipv6_prefix <= 128, f"{key}.known_ipv6_prefix", "0 to 128")
        require(self.known_network_ttl > 0, f"{key}.known_network_ttl", "seconds > 0")
        require(
            self.known_network_failures >= 0, f"{key}.known_network_failures", "an integer >= 0"
        )
        if self.stand_in_address:
            try:
                ipaddress.ip_address(self.stand_in_address)
            except ValueError:
                raise InvalidValue(
                    f"{key}.stand_in_address", "an IP address such as 0.0.0.0, or empty"
                ) from None


@dataclass(frozen=True, slots=True, kw_only=True)
class CacheConfig(Section):
    """``[cache]``: the verified-login cache; see docs/guard.md."""

    enabled: bool = True
    ttl: float = 600.0
    negative_ttl: float = 30.0
    max_entries: int = 100_000

    def check(self, key: str) -> None:
        require(0 <= self.ttl <= 86400, f"{key}.ttl", "seconds from 0 to 86400")
        require(0 <= self.negative_ttl <= 3600, f"{key}.negative_ttl", "seconds from 0 to 3600")
        require(self.max_entries >= 1, f"{key}.max_entries", "an integer >= 1")
