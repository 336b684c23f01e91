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


@dataclass(frozen=True, slots=True, kw_only=True)
class HistoryConfig(Section):
    """``[history]``: each account's recent logins (docs/history.md). Kept in the
    guard's Redis when ``guard.store = "redis"``, else in the state store."""

    enabled: bool = False
    days: int = 30
    max_per_account: int = 100
    queue_limit: int = 10_000
    batch_size: int = 500
    flush_interval_ms: int = 1000
    repeat_seconds: int = 300

    def check(self, key: str) -> None:
        require(1 <= self.days <= 3650, f"{key}.days", "an integer from 1 to 3650")
        require(
            0 <= self.repeat_seconds <= 86400,
            f"{key}.repeat_seconds",
            "seconds from 0 (every login an entry) to 86400",
        )
        require(
            1 <= self.max_per_account <= 10_000,
            f"{key}.max_per_account",
            "an integer from 1 to 10000",
        )
        require(self.queue_limit >= 1, f"{key}.queue_limit", "an integer >= 1")
        require(
            1 <= self.batch_size <= self.queue_limit,
            f"{key}.batch_size",
            "an integer from 1 to queue_limit",
        )
        require(
            10 <= self.flush_interval_ms <= 60_000,
            f"{key}.flush_interval_ms",
            "milliseconds from 10 to 60000",
        )
