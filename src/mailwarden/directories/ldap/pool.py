"""Connections and failover: which LDAP results mean "this server cannot answer now",
the servers' rest and backoff, the pool slots, and how an LDAP error is described.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import ldap  # type: ignore[import-untyped]
import ldap.dn  # type: ignore[import-untyped]
import ldap.filter  # type: ignore[import-untyped]
from mailwarden.lograte import RateLimitedLog

log = logging.getLogger("mailwarden.directory.ldap")

# Results that mean "this server cannot answer now": drop the connection, rest the
# server, and (for reads) try the next one.
CONNECTION_ERRORS: tuple[type[Exception], ...] = (
    ldap.SERVER_DOWN,
    ldap.CONNECT_ERROR,
    ldap.TIMEOUT,
    ldap.BUSY,
    ldap.UNAVAILABLE,
)
RETRYABLE: tuple[type[BaseException], ...] = (*CONNECTION_ERRORS, TimeoutError)
# The schema refuses a value: the administrator's input, not an outage.
VALUE_ERRORS: tuple[type[Exception], ...] = (
    ldap.INVALID_SYNTAX,
    ldap.CONSTRAINT_VIOLATION,
    ldap.OBJECT_CLASS_VIOLATION,
    ldap.UNDEFINED_TYPE,
    ldap.INVALID_DN_SYNTAX,
    ldap.TYPE_OR_VALUE_EXISTS,
)

BACKOFF_START = 0.1


@dataclass(slots=True)
class Slot:
    conn: Any = None  # an ldap.ldapobject.LDAPObject bound as the service account
    server: str = ""


class Servers:
    """Which servers may be tried now, and how long each failed one rests."""

    def __init__(self, urls: Sequence[str], backoff_max: float) -> None:
        self.urls = tuple(urls)
        self.backoff_max = backoff_max
        self._rest_until: dict[str, float] = {}
        self._backoff: dict[str, float] = {}
        # An outage fails every request: one line per server every few seconds.
        self._log = RateLimitedLog(log)

    def candidates(self) -> list[str]:
        """Servers to try, in configured order, resting ones left out."""
        now = time.monotonic()
        return [u for u in self.urls if self._rest_until.get(u, 0.0) <= now]

    def next(self, tried: set[str]) -> str | None:
        """The server to connect to next within one operation, or None.

        Servers not resting come first, in configured order; a resting server is
        tried only when every other one already failed this operation (it may
        have come back before its rest is over).
        """
        fresh = [u for u in self.candidates() if u not in tried]
        if fresh:
            return fresh[0]
        resting = sorted(
            (u for u in self.urls if u not in tried), key=lambda u: self._rest_until.get(u, 0.0)
        )
        return resting[0] if resting else None

    def failed(self, url: str) -> None:
        backoff = min(self._backoff.get(url, BACKOFF_START / 2) * 2, self.backoff_max)
        self._backoff[url] = backoff
        self._rest_until[url] = time.monotonic() + backoff
        self._log.warning(url, "ldap server %s failed; resting %.1f s", url, backoff)

    def worked(self, url: str) -> None:
        if self._backoff.pop(url, None) is not None:
            self._rest_until.pop(url, None)
            left_out = self._log.clear(url)
            log.info("ldap server %s is back (%d failure lines left out)", url, left_out)


def quiet_unbind(conn: Any) -> None:
    with contextlib.suppress(ldap.LDAPError):
        conn.unbind_s()


def describe_error(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ldap.LDAPError) and exc.args and isinstance(exc.args[0], dict):
        info = exc.args[0]
        return str(info.get("desc", type(exc).__name__)) + (
            f" ({info['info']})" if info.get("info") else ""
        )
    return str(exc) or type(exc).__name__
