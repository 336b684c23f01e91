"""Connection accounting shared by every listener: caps, idle timers, the fd budget.

Each listener (a Dovecot socket, the saslauthd socket, the control socket, the
HTTP listeners together) admits at most its own number of connections
(:class:`ConnectionGate`); one more is closed as soon as it is accepted. The
caps are what keeps one front end's flood from starving the others: every open
connection costs a file descriptor, and when the process runs out of them, every
listener stops accepting at once (asyncio's accept loop then pauses for a second
at a time). :func:`raise_fd_limit` lifts the soft ``RLIMIT_NOFILE`` to the hard
limit at start, and :func:`check_fd_budget` warns when the caps add up to more
than the process may open.

:class:`IdleTimer` closes a connection that has been silent, with nothing in
flight, for too long: one timer per connection, re-armed lazily, so the read
path pays one clock read per chunk.

docs/operations.md lists every bound and its default.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from collections.abc import Callable, Mapping

log = logging.getLogger("mailwarden")

#: File descriptors kept for everything that is not a client connection: the
#: listening sockets, directory and store connections, hashing workers' pipes,
#: log files, the database.
FD_RESERVE = 256

#: A refused connection is logged at most once per this many seconds per listener.
_REFUSAL_LOG_INTERVAL = 10.0


class ConnectionGate:
    """At most ``limit()`` connections at once on one listener (named ``name`` in logs),
    or of anything else that is taken and given back (requests in flight).

    ``limit`` is asked on every accept, so a reloaded configuration applies at once
    (connections already open above a lowered cap stay).
    """

    __slots__ = ("_last_log", "_limit", "active", "name", "refused")

    def __init__(self, name: str, limit: Callable[[], int]) -> None:
        self.name = name
        self._limit = limit
        self.active = 0
        self.refused = 0
        self._last_log = float("-inf")

    def admit(self) -> bool:
        """Take a place for a new connection; False (logged, rate-limited) when full."""
        limit = self._limit()
        if self.active < limit:
            self.active += 1
            return True
        self.refused += 1
        now = asyncio.get_running_loop().time()
        if now - self._last_log >= _REFUSAL_LOG_INTERVAL:
            self._last_log = now
            log.warning(
                "%s: the limit of %d is reached; refusing more (%d refused so far)",
                self.name,
                limit,
                self.refused,
            )
        return False

    @property
    def limit(self) -> int:
        return self._limit()

    def release(self) -> None:
        """A connection admitted by :meth:`admit` ended."""
        self.active -= 1


class IdleTimer:
    """Calls ``expire`` once the connection was silent for ``timeout`` seconds while
    ``busy()`` was false (``timeout`` 0: never). Call :meth:`touch` on every input
    and :meth:`cancel` when the connection ends."""

    __slots__ = ("_busy", "_expire", "_handle", "_last", "_loop", "timeout")

    def __init__(self, timeout: float, *, busy: Callable[[], bool], expire: Callable[[], None]):
        self.timeout = timeout
        self._busy = busy
        self._expire = expire
        self._loop = asyncio.get_running_loop()
        self._last = self._loop.time()
        self._handle: asyncio.TimerHandle | None = None
        if timeout > 0:
            self._handle = self._loop.call_at(self._last + timeout, self._check)

    def touch(self) -> None:
        self._last = self._loop.time()

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _check(self) -> None:
        now = self._loop.time()
        due = self._last + self.timeout
        if self._busy():
            # A request in flight has its own timeout; look again one period later.
            due = now + self.timeout
        elif due <= now:
            self._handle = None
            self._expire()
            return
        self._handle = self._loop.call_at(due, self._check)


def raise_fd_limit() -> int:
    """Lift the soft ``RLIMIT_NOFILE`` to the hard limit; returns the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard
    if target != soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open file limit from %d to %d: %s", soft, target, exc)
    return soft


def check_fd_budget(caps: Mapping[str, int], fd_limit: int) -> bool:
    """Whether the listeners' connection caps (``caps``: listener -> cap) fit the
    process's file descriptor limit with :data:`FD_RESERVE` to spare; logs a
    warning naming the numbers when they do not."""
    total = sum(caps.values())
    if fd_limit == resource.RLIM_INFINITY or total + FD_RESERVE <= fd_limit:
        return True
    log.warning(
        "the connection limits add up to %d (%s), more than the open file limit %d allows "
        "with %d to spare: one front end's flood can stop the others. Raise LimitNOFILE or "
        "lower max_connections",
        total,
        ", ".join(f"{name} {cap}" for name, cap in caps.items()),
        fd_limit,
        FD_RESERVE,
    )
    return False
