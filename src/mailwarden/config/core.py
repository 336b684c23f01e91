"""The daemon's own sections: ``[directory]``, ``[auth]``, ``[passwords]``,
``[hashing]``, ``[log]``, ``[server]``, ``[ldap]``, ``[saslauthd]`` and ``[cluster]``
(``[sql]`` is in :mod:`.sql`)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Literal

from mailwarden.config.build import Section, require
from mailwarden.model import HashPolicy

UsernameFormat = Literal["%Lu", "%u", "%Ln", "%n"]
LoginAttr = Literal["uid", "mail", "alternate"]


@dataclass(frozen=True, slots=True, kw_only=True)
class DirectoryConfig(Section):
    """``[directory]``: where accounts are stored."""

    backend: Literal["sqlite", "ldap", "sql"] = "sqlite"
    path: str = "/var/lib/mailwarden/mailwarden.db"
    login_attributes: tuple[LoginAttr, ...] = ("uid", "mail", "alternate")
    readers: int = 4
    timeout: float = 5.0
    cache_size: int = 10000

    def check(self, key: str) -> None:
        require(self.readers >= 1, f"{key}.readers", "an integer >= 1")
        require(self.cache_size >= 0, f"{key}.cache_size", "an integer >= 0")
        require(self.timeout > 0, f"{key}.timeout", "a number of seconds > 0")
        require(bool(self.login_attributes), f"{key}.login_attributes", "at least one attribute")


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthConfig(Section):
    """``[auth]``: how usernames are read and what the engine allows."""

    username_format: UsernameFormat = "%Lu"
    default_realm: str = ""
    username_chars: str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ01234567890.-_@"
    master_user_separator: str = ""
    disabled_message: str = "Account not enabled"
    service_disabled_message: str = "Account not enabled"
    max_username_length: int = 255
    max_password_length: int = 4096

    def check(self, key: str) -> None:
        require(
            len(self.master_user_separator) <= 1,
            f"{key}.master_user_separator",
            "one character or empty (disabled)",
        )
        require(self.max_username_length > 0, f"{key}.max_username_length", "an integer > 0")
        require(self.max_password_length > 0, f"{key}.max_password_length", "an integer > 0")


@dataclass(frozen=True, slots=True, kw_only=True)
class PasswordsConfig(HashPolicy, Section):
    """``[passwords]``: how new hashes are made (the fields and defaults of
    :class:`~mailwarden.model.HashPolicy`: ``scheme`` and the costs) and which
    stored values are read how, and when old ones are upgraded."""

    default_scheme: str = "CRYPT"
    rehash: Literal["weaker", "never"] = "weaker"

    def hash_policy(self) -> HashPolicy:
        """The policy part of the section, as the schemes take it (scheme upper-cased)."""
        values = {f.name: getattr(self, f.name) for f in fields(HashPolicy)}
        return HashPolicy(**{**values, "scheme": self.scheme.upper()})

    def check(self, key: str) -> None:
        # ``scheme`` and ``default_scheme`` are checked against schemes.SCHEMES by
        # mailwarden.confignames (the registry's owner).
        require(self.argon2_memory_kib >= 8, f"{key}.argon2_memory_kib", "an integer >= 8")
        require(self.argon2_time_cost >= 1, f"{key}.argon2_time_cost", "an integer >= 1")
        require(self.argon2_parallelism >= 1, f"{key}.argon2_parallelism", "an integer >= 1")
        require(4 <= self.bcrypt_cost <= 31, f"{key}.bcrypt_cost", "an integer from 4 to 31")
        require(self.sha_crypt_rounds >= 1000, f"{key}.sha_crypt_rounds", "an integer >= 1000")
        require(self.pbkdf2_rounds >= 1, f"{key}.pbkdf2_rounds", "an integer >= 1")
        require(self.scram_iterations >= 4096, f"{key}.scram_iterations", "an integer >= 4096")


@dataclass(frozen=True, slots=True, kw_only=True)
class HashingConfig(Section):
    """``[hashing]``: the worker pool that runs expensive verifications."""

    workers: int = 0
    queue_limit: int = 1024
    processes: bool = True

    def check(self, key: str) -> None:
        require(self.workers >= 0, f"{key}.workers", "an integer >= 0 (0 = one per CPU core)")
        require(self.queue_limit >= 1, f"{key}.queue_limit", "an integer >= 1")


@dataclass(frozen=True, slots=True, kw_only=True)
class LogConfig(Section):
    """``[log]``: where and how decisions are logged."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["text", "json"] = "text"


@dataclass(frozen=True, slots=True, kw_only=True)
class LdapConfig(Section):
    """``[ldap]``: the LDAP directory (``directory.backend = "ldap"``); see docs/ldap.md."""

    servers: tuple[str, ...] = ("ldap://127.0.0.1/",)
    base_dn: str = ""
    filter: str = "(|(objectClass=qmailUser)(objectClass=mailwardenAccount))"
    bind_dn: str = ""
    bind_password: str = ""
    bind_password_file: str = ""
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

    def check(self, key: str) -> None:
        require(bool(self.servers), f"{key}.servers", "at least one ldap:// or ldaps:// URL")
        for i, url in enumerate(self.servers):
            ok = url.startswith(("ldap://", "ldaps://", "ldapi://"))
            require(ok, f"{key}.servers[{i}]", "an ldap://, ldaps:// or ldapi:// URL")
        require(self.pool_size >= 1, f"{key}.pool_size", "an integer >= 1")
        require(self.timeout > 0, f"{key}.timeout", "a number of seconds > 0")
        require(self.backoff_max > 0, f"{key}.backoff_max", "a number of seconds > 0")
        for name in ("default_uid_number", "default_gid_number"):
            require(getattr(self, name) >= 0, f"{key}.{name}", "an integer >= 0")
        for name in ("default_quota_bytes", "default_quota_messages"):
            require(getattr(self, name) >= 0, f"{key}.{name}", "an integer >= 0")


@dataclass(frozen=True, slots=True, kw_only=True)
class SaslauthdConfig(Section):
    """``[saslauthd]``: the Cyrus saslauthd socket; see docs/classic-interfaces.md."""

    enabled: bool = False
    socket: str = "/run/mailwarden/saslauthd/mux"
    socket_mode: int = 0o666
    socket_user: str = ""
    socket_group: str = ""
    realm: Literal["append", "ignore"] = "append"
    request_timeout: float = 10.0
    max_field_length: int = 1024
    failure_delay: float = 2.0
    max_connections: int = 256

    def check(self, key: str) -> None:
        require(
            0 <= self.failure_delay <= 8,
            f"{key}.failure_delay",
            "seconds from 0 to 8 (Postfix times out after 10)",
        )
        require(0 <= self.socket_mode <= 0o777, f"{key}.socket_mode", "a file mode such as 0o660")
        require(self.request_timeout > 0, f"{key}.request_timeout", "seconds > 0")
        require(
            1 <= self.max_field_length <= 65535, f"{key}.max_field_length", "an integer 1..65535"
        )
        require(self.max_connections >= 1, f"{key}.max_connections", "an integer >= 1")


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterConfig(Section):
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

    def check(self, key: str) -> None:
        require(not self.enabled or bool(self.me), f"{key}.me", "this host's name when enabled")
        require(self.connect_timeout > 0, f"{key}.connect_timeout", "seconds > 0")
        require(self.idle_timeout > 0, f"{key}.idle_timeout", "seconds > 0")
        for name in ("pop3_port", "imap_port"):
            require(0 < getattr(self, name) < 65536, f"{key}.{name}", "a TCP port 1..65535")
