"""The one TOML configuration file, parsed into frozen typed objects.

Every section is a frozen dataclass; every key has a default (documented in
docs/configuration.md, which a test keeps in step with this module). Loading is
strict: an unknown key, a wrong type or an out-of-range value raises
:class:`~mailwarden.errors.ConfigError` naming the file, the key path and what
was expected, so a typo never silently becomes a default.

Where the file is found: ``--config PATH``, else ``$MAILWARDEN_CONFIG``, else
``/etc/mailwarden/mailwarden.toml``, else ``./mailwarden.toml`` (development);
with none of them, the built-in defaults apply.
"""

from __future__ import annotations

import os
import tomllib
import types
import typing
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

from mailwarden.errors import ConfigError

SYSTEM_CONFIG = Path("/etc/mailwarden/mailwarden.toml")
LOCAL_CONFIG = Path("mailwarden.toml")

UsernameFormat = Literal["%Lu", "%u", "%Ln", "%n"]
LoginAttr = Literal["uid", "mail", "alternate"]


@dataclass(frozen=True, slots=True, kw_only=True)
class DirectoryConfig:
    """``[directory]``: where accounts are stored."""

    backend: Literal["sqlite", "ldap"] = "sqlite"
    path: str = "/var/lib/mailwarden/mailwarden.db"
    login_attributes: tuple[LoginAttr, ...] = ("uid", "mail", "alternate")
    readers: int = 4
    timeout: float = 5.0
    cache_size: int = 10000

    def _check(self, key: str) -> None:
        _require(self.readers >= 1, f"{key}.readers", "an integer >= 1")
        _require(self.cache_size >= 0, f"{key}.cache_size", "an integer >= 0")
        _require(self.timeout > 0, f"{key}.timeout", "a number of seconds > 0")
        _require(bool(self.login_attributes), f"{key}.login_attributes", "at least one attribute")


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthConfig:
    """``[auth]``: how usernames are read and what the engine allows."""

    username_format: UsernameFormat = "%Lu"
    default_realm: str = ""
    username_chars: str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ01234567890.-_@"
    master_user_separator: str = ""
    disabled_message: str = "Account not enabled"
    service_disabled_message: str = "Account not enabled"
    max_username_length: int = 255
    max_password_length: int = 4096

    def _check(self, key: str) -> None:
        _require(
            len(self.master_user_separator) <= 1,
            f"{key}.master_user_separator",
            "one character or empty (disabled)",
        )
        _require(self.max_username_length > 0, f"{key}.max_username_length", "an integer > 0")
        _require(self.max_password_length > 0, f"{key}.max_password_length", "an integer > 0")


@dataclass(frozen=True, slots=True, kw_only=True)
class PasswordsConfig:
    """``[passwords]``: how new hashes are made and when old ones are upgraded."""

    scheme: str = "ARGON2ID"
    default_scheme: str = "CRYPT"
    rehash: Literal["weaker", "never"] = "weaker"
    argon2_memory_kib: int = 65536
    argon2_time_cost: int = 3
    argon2_parallelism: int = 1
    bcrypt_cost: int = 5
    sha_crypt_rounds: int = 5000
    pbkdf2_rounds: int = 5000
    scram_iterations: int = 4096

    def _check(self, key: str) -> None:
        from mailwarden import schemes  # noqa: PLC0415 - avoid an import cycle at load time

        for name in ("scheme", "default_scheme"):
            value: str = getattr(self, name)
            _require(
                value.upper() in schemes.SCHEMES,
                f"{key}.{name}",
                f"a known password scheme (one of {', '.join(sorted(schemes.SCHEMES))})",
            )
        _require(self.argon2_memory_kib >= 8, f"{key}.argon2_memory_kib", "an integer >= 8")
        _require(self.argon2_time_cost >= 1, f"{key}.argon2_time_cost", "an integer >= 1")
        _require(self.argon2_parallelism >= 1, f"{key}.argon2_parallelism", "an integer >= 1")
        _require(4 <= self.bcrypt_cost <= 31, f"{key}.bcrypt_cost", "an integer from 4 to 31")
        _require(self.sha_crypt_rounds >= 1000, f"{key}.sha_crypt_rounds", "an integer >= 1000")
        _require(self.pbkdf2_rounds >= 1, f"{key}.pbkdf2_rounds", "an integer >= 1")
        _require(self.scram_iterations >= 4096, f"{key}.scram_iterations", "an integer >= 4096")


@dataclass(frozen=True, slots=True, kw_only=True)
class HashingConfig:
    """``[hashing]``: the worker pool that runs expensive verifications."""

    workers: int = 0
    queue_limit: int = 1024
    processes: bool = True

    def _check(self, key: str) -> None:
        _require(self.workers >= 0, f"{key}.workers", "an integer >= 0 (0 = one per CPU core)")
        _require(self.queue_limit >= 1, f"{key}.queue_limit", "an integer >= 1")


@dataclass(frozen=True, slots=True, kw_only=True)
class DovecotConfig:
    """``[dovecot]``: the Dovecot auth protocol front end (Postfix, Exim, doveadm)."""

    enabled: bool = True
    client_socket: str = "/run/mailwarden/auth-client"
    login_socket: str = ""
    master_socket: str = "/run/mailwarden/auth-master"
    userdb_socket: str = "/run/mailwarden/auth-userdb"
    tcp_listen: tuple[str, ...] = ()
    # Each UNIX listener's file mode, owner and group (empty: the daemon's own);
    # defaults as Dovecot's (docs/dovecot-protocol.md, "Socket permissions").
    client_socket_mode: int = 0o666
    client_socket_user: str = ""
    client_socket_group: str = ""
    client_socket_trusted: bool = False
    login_socket_mode: int = 0o600
    login_socket_user: str = ""
    login_socket_group: str = ""
    login_socket_trusted: bool = True
    master_socket_mode: int = 0o600
    master_socket_user: str = ""
    master_socket_group: str = ""
    userdb_socket_mode: int = 0o600
    userdb_socket_user: str = ""
    userdb_socket_group: str = ""
    userdb_trusted_users: tuple[str, ...] = ()
    userdb_trusted_groups: tuple[str, ...] = ()
    mechanisms: tuple[str, ...] = ("PLAIN", "LOGIN")
    anonymous_username: str = "anonymous"
    hostname: str = ""
    realms: tuple[str, ...] = ()
    failure_delay: float = 2.0
    max_line_length: int = 16384
    max_pending: int = 256
    request_timeout: float = 150.0
    max_connections: int = 1000
    idle_timeout: float = 600.0
    max_pending_total: int = 4096

    def _check(self, key: str) -> None:
        from mailwarden import sasl  # noqa: PLC0415 - avoid an import cycle at load time

        for i, mech in enumerate(self.mechanisms):
            _require(
                mech.upper() in sasl.MECHANISMS,
                f"{key}.mechanisms[{i}]",
                f"a SASL mechanism (one of {', '.join(sorted(sasl.MECHANISMS))})",
            )
        for role in ("client", "login", "master", "userdb"):
            name = f"{role}_socket_mode"
            _require(
                0 <= getattr(self, name) <= 0o777, f"{key}.{name}", "a file mode such as 0o660"
            )
        for i, addr in enumerate(self.tcp_listen):
            host, sep, port = addr.rpartition(":")
            _require(
                bool(sep and host and port.isdigit() and 0 < int(port) < 65536),
                f"{key}.tcp_listen[{i}]",
                'HOST:PORT, e.g. "127.0.0.1:12345"',
            )
        # Postfix gives every auth-socket read 10 s; a longer delay makes it drop us.
        _require(
            0 <= self.failure_delay <= 8,
            f"{key}.failure_delay",
            "seconds from 0 to 8 (Postfix times out after 10)",
        )
        _require(self.max_line_length >= 1024, f"{key}.max_line_length", "an integer >= 1024")
        _require(self.max_pending >= 1, f"{key}.max_pending", "an integer >= 1")
        _require(self.request_timeout > 0, f"{key}.request_timeout", "seconds > 0")
        _require(self.max_connections >= 1, f"{key}.max_connections", "an integer >= 1")
        _require(self.idle_timeout >= 0, f"{key}.idle_timeout", "seconds >= 0 (0: never)")
        _require(self.max_pending_total >= 1, f"{key}.max_pending_total", "an integer >= 1")


@dataclass(frozen=True, slots=True, kw_only=True)
class LogConfig:
    """``[log]``: where and how decisions are logged."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["text", "json"] = "text"


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerConfig:
    """``[server]``: the daemon process."""

    pid_file: str = ""
    shutdown_timeout: float = 10.0
    control_socket: str = "/run/mailwarden/control"
    control_socket_mode: int = 0o600
    workers: int = 1

    def _check(self, key: str) -> None:
        _require(self.shutdown_timeout >= 0, f"{key}.shutdown_timeout", "a number >= 0")
        _require(self.workers >= 0, f"{key}.workers", "an integer >= 0 (0 = one per CPU core)")
        _require(
            0 <= self.control_socket_mode <= 0o777,
            f"{key}.control_socket_mode",
            "a file mode such as 0o600",
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class LdapConfig:
    """``[ldap]``: the LDAP directory (``directory.backend = "ldap"``); see docs/ldap.md."""

    servers: tuple[str, ...] = ("ldap://127.0.0.1/",)
    base_dn: str = ""
    filter: str = "(|(objectClass=qmailUser)(objectClass=mailwardenAccount))"
    bind_dn: str = ""
    bind_password: str = ""
    verify: Literal["search", "rebind"] = "search"
    pool_size: int = 4
    timeout: float = 5.0
    backoff_max: float = 1.0
    tls: Literal["none", "starttls"] = "none"
    ca_file: str = ""
    object_classes: tuple[str, ...] = ("account", "mailwardenAccount")
    attributes: dict[str, str] = field(default_factory=dict)
    default_uid_number: int = 0
    default_gid_number: int = 0
    default_mail_location: str = ""
    default_quota_bytes: int = 0
    default_quota_messages: int = 0

    def _check(self, key: str) -> None:
        _require(bool(self.servers), f"{key}.servers", "at least one ldap:// or ldaps:// URL")
        for i, url in enumerate(self.servers):
            ok = url.startswith(("ldap://", "ldaps://", "ldapi://"))
            _require(ok, f"{key}.servers[{i}]", "an ldap://, ldaps:// or ldapi:// URL")
        _require(self.pool_size >= 1, f"{key}.pool_size", "an integer >= 1")
        _require(self.timeout > 0, f"{key}.timeout", "a number of seconds > 0")
        _require(self.backoff_max > 0, f"{key}.backoff_max", "a number of seconds > 0")
        for name in ("default_uid_number", "default_gid_number"):
            _require(getattr(self, name) >= 0, f"{key}.{name}", "an integer >= 0")
        for name in ("default_quota_bytes", "default_quota_messages"):
            _require(getattr(self, name) >= 0, f"{key}.{name}", "an integer >= 0")


@dataclass(frozen=True, slots=True, kw_only=True)
class SaslauthdConfig:
    """``[saslauthd]``: the Cyrus saslauthd socket; see docs/classic-interfaces.md."""

    enabled: bool = False
    socket: str = "/run/mailwarden/saslauthd/mux"
    socket_mode: int = 0o666
    realm: Literal["append", "ignore"] = "append"
    request_timeout: float = 10.0
    max_field_length: int = 1024
    failure_delay: float = 2.0
    max_connections: int = 256

    def _check(self, key: str) -> None:
        _require(
            0 <= self.failure_delay <= 8,
            f"{key}.failure_delay",
            "seconds from 0 to 8 (Postfix times out after 10)",
        )
        _require(0 <= self.socket_mode <= 0o777, f"{key}.socket_mode", "a file mode such as 0o660")
        _require(self.request_timeout > 0, f"{key}.request_timeout", "seconds > 0")
        _require(
            1 <= self.max_field_length <= 65535, f"{key}.max_field_length", "an integer 1..65535"
        )
        _require(self.max_connections >= 1, f"{key}.max_connections", "an integer >= 1")


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterConfig:
    """``[cluster]``: qmail-ldap clustering (accounts on other mail hosts); see
    docs/classic-interfaces.md."""

    enabled: bool = False
    me: str = ""
    proxy: Literal["proxy", "proxy_maybe"] = "proxy"
    pop3_port: int = 110
    imap_port: int = 143
    imap_login: Literal["plain", "login"] = "plain"
    connect_timeout: float = 10.0
    idle_timeout: float = 1800.0

    def _check(self, key: str) -> None:
        _require(not self.enabled or bool(self.me), f"{key}.me", "this host's name when enabled")
        _require(self.connect_timeout > 0, f"{key}.connect_timeout", "seconds > 0")
        _require(self.idle_timeout > 0, f"{key}.idle_timeout", "seconds > 0")
        for name in ("pop3_port", "imap_port"):
            _require(0 < getattr(self, name) < 65536, f"{key}.{name}", "a TCP port 1..65535")


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckpasswordConfig:
    """``[checkpassword]``: how ``mailwarden checkpassword`` decides; see
    docs/classic-interfaces.md. (Read without this module on the lean path:
    :mod:`mailwarden.checkpassword` keeps the same keys and defaults.)"""

    via: Literal["auto", "daemon", "local"] = "auto"
    timeout: float = 15.0
    first_valid_uid: int = 500
    first_valid_gid: int = 1

    def _check(self, key: str) -> None:
        _require(self.timeout > 0, f"{key}.timeout", "seconds > 0")
        _require(
            self.first_valid_uid >= 1, f"{key}.first_valid_uid", "an integer >= 1 (never root)"
        )
        _require(self.first_valid_gid >= 0, f"{key}.first_valid_gid", "an integer >= 0")


@dataclass(frozen=True, slots=True, kw_only=True)
class GuardRule:
    """One brute-force rule: more than ``threshold`` counted failures within
    ``period`` seconds from one network (the source address cut to the prefix of
    its family) bans that network for ``guard.ban_time``."""

    name: str
    period: float
    threshold: int
    ipv4_prefix: int = 32
    ipv6_prefix: int = 128

    def _check(self, key: str) -> None:
        ok = 1 <= len(self.name) <= 32 and all(
            c.isascii() and (c.isalnum() or c in "-_") for c in self.name
        )
        _require(ok, f"{key}.name", "1-32 letters, digits, - or _")
        _require(1 <= self.period <= 30 * 86400, f"{key}.period", "seconds from 1 to 2592000")
        _require(self.threshold >= 1, f"{key}.threshold", "an integer >= 1")
        _require(0 <= self.ipv4_prefix <= 32, f"{key}.ipv4_prefix", "an integer from 0 to 32")
        _require(0 <= self.ipv6_prefix <= 128, f"{key}.ipv6_prefix", "an integer from 0 to 128")


DEFAULT_GUARD_RULES = (
    GuardRule(name="ip-minute", period=60.0, threshold=10),
    GuardRule(name="net-hour", period=3600.0, threshold=100, ipv4_prefix=24, ipv6_prefix=64),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class RedisConfig:
    """``[guard.redis]``: the shared state store of several workers and nodes."""

    url: str = "redis://127.0.0.1:6379/0"
    sentinels: tuple[str, ...] = ()
    sentinel_master: str = ""
    password_file: str = ""
    key_prefix: str = "mailwarden:"
    timeout: float = 0.5
    retry_interval: float = 5.0

    def _check(self, key: str) -> None:
        _require(
            self.url.startswith(("redis://", "rediss://", "unix://")),
            f"{key}.url",
            "a redis://, rediss:// or unix:// URL",
        )
        for i, addr in enumerate(self.sentinels):
            host, sep, port = addr.rpartition(":")
            _require(bool(sep and host and port.isdigit()), f"{key}.sentinels[{i}]", "HOST:PORT")
        _require(
            bool(self.sentinel_master) == bool(self.sentinels),
            f"{key}.sentinel_master",
            "set together with sentinels",
        )
        _require(0 < self.timeout <= 10, f"{key}.timeout", "seconds from 0 to 10")
        _require(self.retry_interval > 0, f"{key}.retry_interval", "seconds > 0")


@dataclass(frozen=True, slots=True, kw_only=True)
class GuardConfig:
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

    def _check(self, key: str) -> None:
        import ipaddress  # noqa: PLC0415 - keep checkpassword's lean start lean

        for i, net in enumerate(self.allow_networks):
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError:
                raise _Invalid(
                    f"{key}.allow_networks[{i}]", "a network such as 10.0.0.0/8"
                ) from None
        names = [r.name for r in self.rules]
        _require(len(names) == len(set(names)), f"{key}.rules", "rules with different names")
        _require(self.ban_time > 0, f"{key}.ban_time", "seconds > 0")
        _require(1 <= self.history_size <= 100, f"{key}.history_size", "an integer from 1 to 100")
        _require(self.account_threshold >= 0, f"{key}.account_threshold", "an integer >= 0")
        _require(self.account_period > 0, f"{key}.account_period", "seconds > 0")
        _require(
            0 <= self.account_delay <= 8,
            f"{key}.account_delay",
            "seconds from 0 to 8 (Postfix times out after 10)",
        )
        _require(0 <= self.known_ipv4_prefix <= 32, f"{key}.known_ipv4_prefix", "0 to 32")
        _require(0 <= self.known_ipv6_prefix <= 128, f"{key}.known_ipv6_prefix", "0 to 128")
        _require(self.known_network_ttl > 0, f"{key}.known_network_ttl", "seconds > 0")
        _require(
            self.known_network_failures >= 0, f"{key}.known_network_failures", "an integer >= 0"
        )
        if self.stand_in_address:
            try:
                ipaddress.ip_address(self.stand_in_address)
            except ValueError:
                raise _Invalid(
                    f"{key}.stand_in_address", "an IP address such as 0.0.0.0, or empty"
                ) from None


@dataclass(frozen=True, slots=True, kw_only=True)
class CacheConfig:
    """``[cache]``: the verified-login cache; see docs/guard.md."""

    enabled: bool = True
    ttl: float = 600.0
    negative_ttl: float = 30.0
    max_entries: int = 100_000

    def _check(self, key: str) -> None:
        _require(0 <= self.ttl <= 86400, f"{key}.ttl", "seconds from 0 to 86400")
        _require(0 <= self.negative_ttl <= 3600, f"{key}.negative_ttl", "seconds from 0 to 3600")
        _require(self.max_entries >= 1, f"{key}.max_entries", "an integer >= 1")


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpConfig:
    """``[http]``: the HTTP API (Nauthilus-compatible auth endpoint); see docs/http-api.md."""

    enabled: bool = False
    listen: tuple[str, ...] = ("127.0.0.1:9080",)
    tls_cert: str = ""
    tls_key: str = ""
    auth_username: str = ""
    auth_password: str = ""
    allow_list_accounts: bool = False
    admin_token: str = ""
    metrics_token: str = ""
    disabled_text: str = "Account not enabled"
    attributes: dict[str, str] = field(default_factory=dict)
    nginx_backends: dict[str, dict[str, str]] = field(default_factory=dict)
    nginx_default_host: str = ""
    max_body_bytes: int = 65536
    web_enabled: bool = True
    admin_username: str = "admin"
    session_secret_file: str = ""
    session_lifetime: float = 3600.0
    min_password_length: int = 10
    max_connections: int = 1000
    header_timeout: float = 20.0
    idle_timeout: float = 60.0
    metrics_services: tuple[str, ...] = (
        "imap",
        "pop3",
        "smtp",
        "submission",
        "lmtp",
        "sieve",
        "doveadm",
    )
    trusted_proxies: tuple[str, ...] = ()

    def _check(self, key: str) -> None:
        from mailwarden.protocols import nauthilus  # noqa: PLC0415 - avoid an import cycle

        _require(bool(self.admin_username), f"{key}.admin_username", "a non-empty name")
        _require(self.session_lifetime >= 60, f"{key}.session_lifetime", "seconds >= 60")
        _require(self.min_password_length >= 1, f"{key}.min_password_length", "an integer >= 1")

        for i, addr in enumerate(self.listen):
            host, sep, port = addr.rpartition(":")
            _require(
                bool(sep) and bool(host) and port.isdigit() and 0 < int(port) < 65536,
                f"{key}.listen[{i}]",
                "HOST:PORT such as 127.0.0.1:9080 or [::1]:9080",
            )
        _require(bool(self.tls_cert) == bool(self.tls_key), f"{key}.tls_key", "set with tls_cert")
        _require(self.max_body_bytes >= 1024, f"{key}.max_body_bytes", "an integer >= 1024")
        _require(self.max_connections >= 1, f"{key}.max_connections", "an integer >= 1")
        _require(self.header_timeout > 0, f"{key}.header_timeout", "seconds > 0")
        _require(self.idle_timeout > 0, f"{key}.idle_timeout", "seconds > 0")
        import ipaddress  # noqa: PLC0415 - keep checkpassword's lean start lean

        for i, net in enumerate(self.trusted_proxies):
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError:
                raise _Invalid(
                    f"{key}.trusted_proxies[{i}]", "a network such as 127.0.0.1/32"
                ) from None
        for name, source in self.attributes.items():
            _require(
                nauthilus.valid_source(source),
                f"{key}.attributes.{name}",
                "an account field (" + ", ".join(nauthilus.SOURCES) + "), userdb:X or passdb:X",
            )


MAILGATE_FIELDS: tuple[str, ...] = (
    "c",
    "l",
    "facsimiletelephonenumber",
    "telephonenumber",
    "postaladdress",
    "postalcode",
    "loginshell",
    "emailforward",
    "ircnick",
    "onvacation",
    "labeledurl",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class MailgateConfig:
    """``[mailgate]``: the OpenPGP-signed self-service gateway; see docs/mailgate.md."""

    gnupg_home: str = "/var/lib/mailwarden/gnupg"
    gpg_binary: str = "gpg"
    state_dir: str = "/var/lib/mailwarden/mailgate"
    chpasswd_phrase: str = "Please change my mail password"
    max_age: float = 4 * 86400.0
    max_future: float = 3 * 86400.0
    replay_keep: float = 7 * 86400.0
    sendmail: str = "/usr/sbin/sendmail"
    smtp_host: str = ""
    smtp_port: int = 25
    from_address: str = ""
    signing_key: str = ""
    max_message_bytes: int = 1_048_576
    fields: tuple[str, ...] = MAILGATE_FIELDS
    login_shells: tuple[str, ...] = (
        "/bin/sh",
        "/bin/bash",
        "/usr/bin/bash",
        "/bin/zsh",
        "/usr/bin/zsh",
        "/bin/dash",
        "/usr/bin/fish",
    )
    dns_zone: str = ""
    max_ssh_keys: int = 20
    ssh_key_blocklist: tuple[str, ...] = ()
    atomic: bool = False
    dns_underscore_names: tuple[str, ...] = ()

    def _check(self, key: str) -> None:
        _require(bool(self.chpasswd_phrase.strip()), f"{key}.chpasswd_phrase", "a phrase")
        for name in ("max_age", "max_future", "replay_keep"):
            _require(getattr(self, name) > 0, f"{key}.{name}", "seconds > 0")
        _require(
            self.replay_keep >= self.max_age + self.max_future,
            f"{key}.replay_keep",
            "at least max_age + max_future (a replay must outlive the clock window)",
        )
        _require(0 < self.smtp_port < 65536, f"{key}.smtp_port", "a port number")
        _require(bool(self.sendmail or self.smtp_host), f"{key}.sendmail", "set (or smtp_host)")
        _require(self.max_message_bytes >= 1024, f"{key}.max_message_bytes", "an integer >= 1024")
        _require(self.max_ssh_keys >= 1, f"{key}.max_ssh_keys", "an integer >= 1")
        for i, name in enumerate(self.fields):
            _require(name.lower() in MAILGATE_FIELDS, f"{key}.fields[{i}]", "a field of the list")
        for i, name in enumerate(self.dns_underscore_names):
            _require(
                name.startswith("_") and name.strip() == name and "." not in name,
                f"{key}.dns_underscore_names[{i}]",
                "a single DNS label starting with _ (e.g. _acme-challenge)",
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """The whole configuration file."""

    directory: DirectoryConfig = field(default_factory=DirectoryConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    passwords: PasswordsConfig = field(default_factory=PasswordsConfig)
    hashing: HashingConfig = field(default_factory=HashingConfig)
    dovecot: DovecotConfig = field(default_factory=DovecotConfig)
    log: LogConfig = field(default_factory=LogConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    ldap: LdapConfig = field(default_factory=LdapConfig)
    saslauthd: SaslauthdConfig = field(default_factory=SaslauthdConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    checkpassword: CheckpasswordConfig = field(default_factory=CheckpasswordConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    guard: GuardConfig = field(default_factory=GuardConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    mailgate: MailgateConfig = field(default_factory=MailgateConfig)
    source: str = field(default="<defaults>", compare=False)

    def _check(self, key: str) -> None:
        # Several workers must share the brute-force state (docs/architecture.md).
        _require(
            self.server.workers == 1 or self.guard.store == "redis",
            "server.workers",
            '1 unless guard.store = "redis" (workers must share the brute-force state)',
        )


# --------------------------------------------------------------------------- loading


class _Invalid(Exception):
    def __init__(self, key: str, expected: str) -> None:
        self.key = key
        self.expected = expected


def _require(ok: bool, key: str, expected: str) -> None:
    if not ok:
        raise _Invalid(key, expected)


T = TypeVar("T")

#: Keys that existed once, with what replaces them (a clearer error than "unknown key").
RETIRED_KEYS: dict[str, str] = {
    "dovecot.socket_mode": "client_socket_mode, login_socket_mode and userdb_socket_mode "
    "instead (socket_mode was removed: every socket has its own mode)",
    "dovecot.socket_user": "client_socket_user, login_socket_user, master_socket_user and "
    "userdb_socket_user instead (socket_user was removed: every socket has its own owner)",
    "dovecot.socket_group": "client_socket_group, login_socket_group, master_socket_group and "
    "userdb_socket_group instead (socket_group was removed: every socket has its own group)",
}


def find_config_path(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The file to read, by the precedence in the module docstring; None: defaults."""
    if explicit is not None:
        return Path(explicit)
    env = os.environ.get("MAILWARDEN_CONFIG")
    if env:
        return Path(env)
    for candidate in (SYSTEM_CONFIG, LOCAL_CONFIG):
        if candidate.is_file():
            return candidate
    return None


def load(path: str | os.PathLike[str] | None = None) -> Config:
    """Find, read and validate the configuration. Raises ConfigError."""
    found = find_config_path(path)
    if found is None:
        return Config()
    try:
        raw = found.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", path=str(found)) from exc
    return loads(raw.decode("utf-8", "replace"), source=str(found))


def loads(text: str, *, source: str = "<string>") -> Config:
    """Parse TOML text into a Config. Raises ConfigError."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", path=source) from exc
    try:
        config = _build(Config, {**data, "source": source}, "")
    except _Invalid as exc:
        raise ConfigError(f"expected {exc.expected}", path=source, key=exc.key) from None
    return config


def _build(cls: type[T], data: Any, prefix: str) -> T:
    if not isinstance(data, dict):
        raise _Invalid(prefix.rstrip(".") or "<top>", "a table")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    for key in data:
        if f"{prefix}{key}" in RETIRED_KEYS:
            raise _Invalid(f"{prefix}{key}", RETIRED_KEYS[f"{prefix}{key}"])
        if key not in known:
            raise _Invalid(
                f"{prefix}{key}",
                f"one of the keys {', '.join(sorted(known - {'source'}))} (unknown key)",
            )
    kwargs: dict[str, Any] = {}
    for f in fields(cls):  # type: ignore[arg-type]
        if f.name not in data:
            continue
        kwargs[f.name] = _convert(hints[f.name], data[f.name], f"{prefix}{f.name}")
    obj = cls(**kwargs)
    check = getattr(obj, "_check", None)
    if check is not None:
        check(prefix.rstrip("."))
    return obj


def _convert(tp: Any, value: Any, key: str) -> Any:
    origin = get_origin(tp)
    if is_dataclass(tp) and isinstance(tp, type):
        return _build(tp, value, key + ".")
    if origin is Literal:
        choices = get_args(tp)
        if value not in choices:
            raise _Invalid(key, "one of " + ", ".join(repr(c) for c in choices))
        return value
    if origin in (types.UnionType, typing.Union):
        for arg in get_args(tp):
            try:
                return _convert(arg, value, key)
            except _Invalid:
                continue
        raise _Invalid(key, " or ".join(_describe(a) for a in get_args(tp)))
    if origin is tuple:
        (item_tp, _ellipsis) = get_args(tp)
        if not isinstance(value, list):
            raise _Invalid(key, f"an array of {_describe(item_tp)}")
        return tuple(_convert(item_tp, v, f"{key}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        _key_tp, val_tp = get_args(tp)
        if not isinstance(value, dict):
            raise _Invalid(key, "a table")
        return {str(k): _convert(val_tp, v, f"{key}.{k}") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise _Invalid(key, "true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Invalid(key, "an integer")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _Invalid(key, "a number")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise _Invalid(key, "a string")
        return value
    if tp is type(None):
        raise _Invalid(key, "nothing")
    raise _Invalid(key, f"a value of type {tp!r}")


def _describe(tp: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}.get(
        tp, str(tp)
    )


def defaults_table() -> list[tuple[str, str, str]]:
    """``(key path, default as TOML, type)`` for every key: docs are checked against it."""
    rows: list[tuple[str, str, str]] = []
    hints = typing.get_type_hints(Config)
    for section in fields(Config):
        if section.name == "source":
            continue
        rows.extend(_rows(hints[section.name], section.name))
    return rows


def _rows(cls: Any, prefix: str) -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = []
    sub_hints = typing.get_type_hints(cls)
    instance = cls()
    for f in fields(cls):
        value = getattr(instance, f.name)
        key = f"{prefix}.{f.name}"
        if is_dataclass(value):  # a sub-table such as [guard.redis]
            rows.extend(_rows(type(value), key))
        elif f.name.endswith("_mode"):  # file modes read best in octal, as TOML allows
            rows.append((key, oct(value), "integer"))
        else:
            rows.append((key, _toml_value(value), _type_name(sub_hints[f.name])))
    return rows


def _toml_value(value: Any) -> str:
    if is_dataclass(value) and not isinstance(value, type):
        items = [f"{f.name} = {_toml_value(getattr(value, f.name))}" for f in fields(value)]
        return "{" + ", ".join(items) + "}"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"
    return str(value)


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return " \\| ".join(repr(a).replace("'", '"') for a in get_args(tp))
    if origin is tuple:
        return f"array of {_type_name(get_args(tp)[0])}"
    if origin is dict:
        return f"table of {_type_name(get_args(tp)[1])}"
    if is_dataclass(tp):
        return "table"
    return {bool: "boolean", int: "integer", float: "number", str: "string"}.get(tp, str(tp))
