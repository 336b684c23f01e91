"""Repeated backend errors, logged at a bounded rate with a count.

During an outage every request fails the same way: an LDAP server down wrote a
warning per request (150 lines a second), burying everything else and filling the
disk. :class:`RateLimitedLog` writes the first line of a kind at once, then at most
one line per ``interval`` seconds for the same key, carrying how many were left out
meanwhile; :meth:`RateLimitedLog.clear` ends an episode (the backend is back) and says
how many were never written. Used by the directories and the guard's stores; keys are
short fixed texts (a server URL, an operation), and their number is bounded.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

#: Seconds between two lines of the same key.
DEFAULT_INTERVAL = 10.0
#: Keys remembered at most (then forgotten all at once: a few extra lines, no growth).
MAX_KEYS = 1024


class RateLimitedLog:
    """A logger's lines, at most one per key and interval (module docstring)."""

    def __init__(
        self,
        logger: logging.Logger,
        *,
        interval: float = DEFAULT_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.interval = interval
        self.clock = clock
        # key -> (time the next line may be written, lines left out since the last one)
        self._state: dict[str, tuple[float, int]] = {}

    def log(self, level: int, key: str, msg: str, *args: object) -> bool:
        """Write ``msg % args`` at ``level`` unless a line of ``key`` was written less
        than ``interval`` seconds ago (then count it); whether it was written."""
        now = self.clock()
        due, left_out = self._state.get(key, (0.0, 0))
        if now < due:
            self._state[key] = (due, left_out + 1)
            return False
        if len(self._state) >= MAX_KEYS and key not in self._state:
            self._state.clear()
        self._state[key] = (now + self.interval, 0)
        if left_out:
            msg += " (%d more like it since the last such line)"
            args = (*args, left_out)
        self.logger.log(level, msg, *args)
        return True

    def warning(self, key: str, msg: str, *args: object) -> bool:
        return self.log(logging.WARNING, key, msg, *args)

    def error(self, key: str, msg: str, *args: object) -> bool:
        return self.log(logging.ERROR, key, msg, *args)

    def clear(self, key: str) -> int:
        """End ``key``'s episode: its next line is written at once. Returns how many
        lines of it were left out and never reported."""
        _, left_out = self._state.pop(key, (0.0, 0))
        return left_out
