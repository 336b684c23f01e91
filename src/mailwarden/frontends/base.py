"""The one shape of a running front end, as ``app.serve`` drives it.

Every front end (Dovecot sockets, saslauthd, HTTP, the control socket) is built with
everything it serves (engine, its config section, where its paths resolve, the
sockets a supervisor bound), and then the daemon knows it only as a :class:`Frontend`
(each module's ``start_*`` function builds and starts one):

* :meth:`~Frontend.start`: bind its listeners (or take the inherited ones) and
  return once they accept; ConfigError when one cannot be set up, with nothing of
  it left bound.
* :meth:`~Frontend.reconfigure` on SIGHUP: new settings for the next requests, and,
  in a single process (``move``), listeners whose address changed are moved. A
  front end that moves by starting anew returns its replacement, otherwise itself;
  ConfigError (a new address cannot be bound) leaves it where it was.
* :meth:`~Frontend.close` on SIGTERM: stop accepting; requests in flight get up to
  ``drain`` seconds to be answered.
* :meth:`~Frontend.listening` and :meth:`~Frontend.connection_caps` for
  ``mailwarden status`` and the file descriptor budget (connlimit.check_fd_budget).
"""

from __future__ import annotations

from typing import Protocol

from mailwarden.config import Config

#: Listener keys a single process moves on SIGHUP (each front end's reconfigure); the
#: workers of ``serve --workers`` share the sockets their supervisor bound, so for
#: them these need a restart (app.split_reload).
LISTENER_KEYS: dict[str, tuple[str, ...]] = {
    "dovecot": tuple(
        f"{role}_socket{suffix}"
        for role in ("client", "login", "master", "userdb")
        for suffix in ("", "_mode", "_user", "_group")
    ),
    "saslauthd": ("socket", "socket_mode", "socket_user", "socket_group"),
    "http": ("listen", "tls_cert", "tls_key"),
}


def moved(old: object, new: object, section: str) -> bool:
    """Whether a SIGHUP moves ``section``'s listeners (``old``/``new``: its config)."""
    return any(getattr(old, k) != getattr(new, k) for k in LISTENER_KEYS[section])


class Frontend(Protocol):
    async def start(self) -> None: ...

    async def reconfigure(self, old: Config, new: Config, *, move: bool) -> Frontend: ...

    async def close(self, *, drain: float = 0.0) -> None: ...

    def listening(self) -> list[str]:
        """One line per listener (``mailwarden status``): kind, then address."""
        ...

    def connection_caps(self) -> dict[str, int]:
        """Listener name -> its connection cap (max_connections)."""
        ...
