"""``[dovecot]`` and ``[checkpassword]``: the two sections ``mailwarden checkpassword``
loads (``config.load(path, sections=...)``) on its daemon path, once per POP3 login;
a module of their own, so that the command builds no other section class."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mailwarden.config.build import Section, require


@dataclass(frozen=True, slots=True, kw_only=True)
class DovecotConfig(Section):
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

    def check(self, key: str) -> None:
        # The names in ``mechanisms`` are checked against sasl.MECHANISMS by
        # mailwarden.confignames (the registry's owner).
        for role in ("client", "login", "master", "userdb"):
            name = f"{role}_socket_mode"
            require(0 <= getattr(self, name) <= 0o777, f"{key}.{name}", "a file mode such as 0o660")
        for i, addr in enumerate(self.tcp_listen):
            host, sep, port = addr.rpartition(":")
            require(
                bool(sep and host and port.isdigit() and 0 < int(port) < 65536),
                f"{key}.tcp_listen[{i}]",
                'HOST:PORT, e.g. "127.0.0.1:12345"',
            )
        # Postfix gives every auth-socket read 10 s; a longer delay makes it drop us.
        require(
            0 <= self.failure_delay <= 8,
            f"{key}.failure_delay",
            "seconds from 0 to 8 (Postfix times out after 10)",
        )
        require(self.max_line_length >= 1024, f"{key}.max_line_length", "an integer >= 1024")
        require(self.max_pending >= 1, f"{key}.max_pending", "an integer >= 1")
        require(self.request_timeout > 0, f"{key}.request_timeout", "seconds > 0")
        require(self.max_connections >= 1, f"{key}.max_connections", "an integer >= 1")
        require(self.idle_timeout >= 0, f"{key}.idle_timeout", "seconds >= 0 (0: never)")
        require(self.max_pending_total >= 1, f"{key}.max_pending_total", "an integer >= 1")


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckpasswordConfig(Section):
    """``[checkpassword]``: how ``mailwarden checkpassword`` decides; see
    docs/classic-interfaces.md. (Read without this module on the lean path:
    :mod:`mailwarden.checkpassword` keeps the same keys and defaults.)"""

    via: Literal["auto", "daemon", "local"] = "auto"
    timeout: float = 15.0
    failure_delay: float = 2.0
    first_valid_uid: int = 500
    first_valid_gid: int = 1

    def check(self, key: str) -> None:
        require(self.timeout > 0, f"{key}.timeout", "seconds > 0")
        require(
            0 <= self.failure_delay < self.timeout,
            f"{key}.failure_delay",
            "seconds >= 0 and below checkpassword.timeout (the command would give up first)",
        )
        require(self.first_valid_uid >= 1, f"{key}.first_valid_uid", "an integer >= 1 (never root)")
        require(self.first_valid_gid >= 0, f"{key}.first_valid_gid", "an integer >= 0")
