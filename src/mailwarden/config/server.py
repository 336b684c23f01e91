"""``[server]``: the daemon process.

A module of its own, importing nothing but :mod:`~mailwarden.config.build`:
``mailwarden checkpassword`` reads this section (for the control socket) on its
lean start, which must not import :mod:`mailwarden.model` (config/core.py does).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mailwarden.config.build import Section, require


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerConfig(Section):
    """``[server]``: the daemon process."""

    pid_file: str = ""
    shutdown_timeout: float = 10.0
    control_socket: str = "/run/mailwarden/control"
    control_socket_mode: int = 0o600
    control_socket_user: str = ""
    control_socket_group: str = ""
    workers: int = 1

    def check(self, key: str) -> None:
        require(self.shutdown_timeout >= 0, f"{key}.shutdown_timeout", "a number >= 0")
        require(self.workers >= 0, f"{key}.workers", "an integer >= 0 (0 = one per CPU core)")
        require(
            0 <= self.control_socket_mode <= 0o777,
            f"{key}.control_socket_mode",
            "a file mode such as 0o600",
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class StateConfig(Section):
    """``[state]``: mailwarden's own records (administrators, API tokens, second
    factors, the audit log); see docs/credentials.md."""

    backend: Literal["sqlite", "sql", "memory"] = "sqlite"
    path: str = ""
    timeout: float = 5.0

    def check(self, key: str) -> None:
        require(self.timeout > 0, f"{key}.timeout", "a number of seconds > 0")
        # "sql" keeps the tables in the [sql] database: a path would be ignored.
        require(
            self.backend != "sql" or not self.path,
            f"{key}.path",
            'empty when backend = "sql" (the state is kept in the [sql] database)',
        )
