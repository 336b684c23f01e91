"""``[sql]``: the SQL directory (``directory.backend = "sql"``), and the state store with
``state.backend = "sql"``; see docs/sql.md and docs/credentials.md.

The Dovecot-style queries are checked here only for being there; their ``%``
variables are parsed by :mod:`mailwarden.directories.sql.queries`, called from
:mod:`mailwarden.confignames` (config/ imports no other layer).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mailwarden.config.build import Section, require

#: Dovecot 2.3's defaults (dovecot-sql.conf.ext), used when a key is not set.
DOVECOT_PASSWORD_QUERY = (
    "SELECT username, domain, password FROM users WHERE username = '%n' AND domain = '%d'"  # noqa: S105
)
DOVECOT_USER_QUERY = "SELECT home, uid, gid FROM users WHERE username = '%n' AND domain = '%d'"
DOVECOT_ITERATE_QUERY = "SELECT username, domain FROM users"


def valid_host(host: str) -> bool:
    """``name``, ``name:port``, ``[v6]:port``, an IP, or an absolute socket path."""
    if host.startswith("/"):
        return True
    if not host or any(c.isspace() for c in host) or "/" in host:
        return False
    if host.startswith("["):
        end = host.find("]")
        rest = host[end + 1 :]
        return end > 1 and (rest == "" or (rest[:1] == ":" and rest[1:].isdigit()))
    if host.count(":") == 1:
        name, port = host.split(":")
        return bool(name) and port.isdigit() and 0 < int(port) < 65536
    return True  # a name, an IPv4 address or a bare IPv6 address


@dataclass(frozen=True, slots=True, kw_only=True)
class SqlConfig(Section):
    """``[sql]``: the PostgreSQL or MariaDB server(s) and what the tables look like."""

    driver: Literal["postgresql", "mariadb"] = "postgresql"
    hosts: tuple[str, ...] = ("127.0.0.1",)
    replicas: tuple[str, ...] = ()
    read_from: Literal["hosts", "replicas"] = "hosts"
    port: int = 0
    database: str = "mailwarden"
    user: str = "mailwarden"
    password: str = ""
    password_file: str = ""
    pool_size: int = 8
    timeout: float = 5.0
    connect_timeout: float = 5.0
    backoff_max: float = 1.0
    poll_interval: float = 1.0
    mode: Literal["own", "dovecot"] = "own"
    password_query: str = DOVECOT_PASSWORD_QUERY
    user_query: str = DOVECOT_USER_QUERY
    iterate_query: str = DOVECOT_ITERATE_QUERY
    update_query: str = ""
    default_pass_scheme: str = "MD5"  # noqa: S105 - a scheme name
    cache_ttl: float = 0.0

    def check(self, key: str) -> None:
        require(bool(self.hosts), f"{key}.hosts", "at least one host")
        for name in ("hosts", "replicas"):
            for i, host in enumerate(getattr(self, name)):
                require(
                    valid_host(host),
                    f"{key}.{name}[{i}]",
                    "a host name or IP, host:port, [IPv6]:port, or an absolute socket path",
                )
        require(0 <= self.port < 65536, f"{key}.port", "a TCP port 1..65535 (0 = the default)")
        require(
            self.read_from == "hosts" or bool(self.replicas),
            f"{key}.read_from",
            '"hosts" unless replicas are listed',
        )
        require(bool(self.database), f"{key}.database", "a database name")
        require(bool(self.user), f"{key}.user", "a user name")
        # password and password_file: one or the other (build.check_pairs).
        require(
            2 <= self.pool_size <= 1000,
            f"{key}.pool_size",
            "an integer from 2 to 1000 (a listing holds one connection while lookups go on)",
        )
        for name in ("timeout", "connect_timeout", "backoff_max", "poll_interval"):
            require(getattr(self, name) > 0, f"{key}.{name}", "a number of seconds > 0")
        require(self.cache_ttl >= 0, f"{key}.cache_ttl", "seconds >= 0 (0: no cache)")
        require(
            bool(self.default_pass_scheme.strip()),
            f"{key}.default_pass_scheme",
            "a password scheme name such as MD5-CRYPT",
        )
        # user_query may be empty (userdb fields from prefetch columns only), and
        # update_query (no password writes).
        for name in ("password_query", "iterate_query"):
            text: str = getattr(self, name)
            require(bool(text.strip()), f"{key}.{name}", "an SQL query")
