"""Which of several servers to try, and how long a failed one rests.

Shared by the directories that talk to a list of servers (LDAP, SQL): they are
tried in configured order; a server that failed rests for a backoff that doubles
from :data:`BACKOFF_START` up to ``backoff_max`` and comes back by itself once the
rest is over (or at once when it answers again). Failures are logged at a bounded
rate (:class:`~mailwarden.lograte.RateLimitedLog`), one episode per server.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from mailwarden.lograte import RateLimitedLog

BACKOFF_START = 0.1

_default_log = logging.getLogger("mailwarden.directory.ldap")


class Servers:
    """Which servers may be tried now, and how long each failed one rests."""

    def __init__(
        self,
        urls: Sequence[str],
        backoff_max: float,
        *,
        label: str = "ldap server",
        logger: logging.Logger = _default_log,
    ) -> None:
        self.urls = tuple(urls)
        self.backoff_max = backoff_max
        self.label = label
        self._logger = logger
        self._rest_until: dict[str, float] = {}
        self._backoff: dict[str, float] = {}
        # An outage fails every request: one line per server every few seconds.
        self._log = RateLimitedLog(logger)

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

    def resting(self, url: str) -> bool:
        return self._rest_until.get(url, 0.0) > time.monotonic()

    def failed(self, url: str, why: str = "") -> None:
        backoff = min(self._backoff.get(url, BACKOFF_START / 2) * 2, self.backoff_max)
        self._backoff[url] = backoff
        self._rest_until[url] = time.monotonic() + backoff
        because = f" ({why})" if why else ""
        self._log.warning(url, "%s %s failed%s; resting %.1f s", self.label, url, because, backoff)

    def worked(self, url: str) -> None:
        if self._backoff.pop(url, None) is not None:
            self._rest_until.pop(url, None)
            left_out = self._log.clear(url)
            self._logger.info(
                "%s %s is back (%d failure lines left out)", self.label, url, left_out
            )
