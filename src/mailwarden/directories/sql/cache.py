"""Looked-up accounts remembered by an SQL directory, so a repeat login costs no query.

A login on an SQL directory is a round trip to the database and, with asyncpg, a few
hundred microseconds of client CPU: more than the rest of a cached login. A
:class:`FindCache` keeps the answers of recent finds (accounts, and "no such
account") in a bounded LRU of ``directory.cache_size`` entries. What keeps it true
depends on the mode:

* **own** schema: exact. Every write, on any node, reaches the change feed
  (:mod:`.own.feed`), which drops the entries of the names it touched
  (:meth:`FindCache.drop`); this process's own writes drop them before they return.
  While the feed cannot vouch for being complete (the LISTEN connection is down, the
  MariaDB change log's last good poll is too old) the cache is not read, and
  whatever the feed says it missed drops everything.
* **dovecot**: a site's tables change behind mailwarden's back, with no signal. As
  Dovecot's ``auth_cache_ttl``, each entry lives ``sql.cache_ttl`` seconds (0, the
  default: no cache), and a change in the database is seen at the latest then.
  ``mailwarden cache flush`` and Dovecot's ``CACHE-FLUSH`` drop it too.

Keys are whatever determines the answer (own: the login and the attributes it may
match; dovecot: the bound queries, i.e. exactly the variables they use). Each entry
is indexed under the login names it concerns (the name asked for and the account's
uid and addresses) so that a change of any of them drops it.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable, Iterable
from typing import cast

from mailwarden.directories.base import login_key
from mailwarden.model import Account

#: What :meth:`FindCache.get` returns for a key it does not hold (None is an answer).
MISS = object()


class FindCache:
    """A bounded LRU of find answers with optional expiry (module docstring)."""

    def __init__(
        self,
        size: int,
        *,
        ttl: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.size = size
        self.ttl = ttl
        self.clock = clock
        self._entries: OrderedDict[Hashable, tuple[Account | None, float, tuple[str, ...]]] = (
            OrderedDict()
        )
        self._by_name: dict[str, set[Hashable]] = {}
        #: Counts drops: a find that began before one must not store what it read
        #: (the row may have changed after it was read): see :meth:`put`.
        self.epoch = 0
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable) -> Account | object | None:
        """The answer remembered for ``key``, or :data:`MISS`."""
        entry = self._entries.get(key)
        if entry is None:
            self.misses += 1
            return MISS
        account, expires, _names = entry
        if expires < self.clock():
            self._remove(key)
            self.misses += 1
            return MISS
        self._entries.move_to_end(key)
        self.hits += 1
        return account

    def put(self, key: Hashable, login: str, account: Account | None, *, since: int) -> None:
        """Remember ``account`` (None: no such account) as the answer for ``key``, a
        lookup of ``login`` begun at :attr:`epoch` ``since``; not if anything was
        dropped since (a write may have come between the read and now)."""
        if self.size <= 0 or since != self.epoch:
            return
        self._remove(key)
        names = {login_key(login)}
        if account is not None:
            names.update(login_key(n) for n in account.logins())
        expires = self.clock() + self.ttl if self.ttl is not None else float("inf")
        self._entries[key] = (account, expires, tuple(names))
        for name in names:
            self._by_name.setdefault(name, set()).add(key)
        while len(self._entries) > self.size:
            self._remove(next(iter(self._entries)))

    async def find(
        self, key: Hashable, login: str, read: Callable[[], Awaitable[Account | None]]
    ) -> Account | None:
        """The answer for ``key`` (a lookup of ``login``): remembered, or ``read()``
        and remembered unless a drop overtook the read (:meth:`put`)."""
        cached = self.get(key)
        if cached is not MISS:
            return cast(Account | None, cached)
        since = self.epoch
        account = await read()
        self.put(key, login, account, since=since)
        return account

    def drop(self, names: Iterable[str] | None) -> int:
        """Forget every answer that concerns one of ``names`` (None: everything); how
        many were dropped."""
        self.epoch += 1
        if names is None:
            dropped = len(self._entries)
            self._entries.clear()
            self._by_name.clear()
            return dropped
        keys = {k for n in names for k in self._by_name.get(login_key(n), ())}
        for key in keys:
            self._remove(key)
        return len(keys)

    def __len__(self) -> int:
        return len(self._entries)

    def _remove(self, key: Hashable) -> None:
        entry = self._entries.pop(key, None)
        if entry is None:
            return
        for name in entry[2]:
            keys = self._by_name.get(name)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._by_name[name]
