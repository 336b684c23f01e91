"""The own schema's change feed: every node hears of every account write at once.

A write transaction records the lower-cased logins it touched (the uid and the
addresses before and after): on PostgreSQL as a ``NOTIFY`` on :data:`CHANNEL`,
delivered when the transaction commits; on MariaDB, which has no NOTIFY, as a row
of ``account_changes`` that every node polls every ``sql.poll_interval`` seconds.
:class:`SqlChanges` is the :class:`~mailwarden.directories.base.ChangeFeed`
app.py hands to the engine, which drops its cached logins of those names.

What may be missed is flushed whole (``None``): after a LISTEN connection is lost
and regained (notifications sent meanwhile are gone), after a poll that failed,
and when a write touched too many logins to list. Entries older than
:data:`RETENTION` are pruned by the writers.

Staleness bound on MariaDB: a committed change is seen by every node within
``poll_interval`` plus one query (at most ``sql.timeout``). Each poll reads the
rows stamped since its previous one minus ``sql.timeout`` (a transaction stamps
its row when it writes it and may commit up to ``timeout`` later); ids already
seen are not delivered twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Sequence

from mailwarden.directories.sql.database import Database, Transaction
from mailwarden.directories.sql.dialect import Param, Sql
from mailwarden.directories.sql.listen import Listener
from mailwarden.errors import DirectoryUnavailable
from mailwarden.lograte import RateLimitedLog

log = logging.getLogger("mailwarden.directory.sql")

CHANNEL = "mailwarden_accounts"
#: A payload longer than this says "everything" (PostgreSQL's limit is 8000 bytes).
MAX_PAYLOAD = 4000
#: How long MariaDB's change log keeps a row.
RETENTION = "1 DAY"
EVERYTHING = "*"

OnChange = Callable[[Sequence[str] | None], object]


def encode(names: Sequence[str] | None) -> str:
    """The payload for ``names`` (None: everything)."""
    if names is None:
        return EVERYTHING
    text = json.dumps(sorted(set(names)), ensure_ascii=False, separators=(",", ":"))
    return text if len(text.encode()) <= MAX_PAYLOAD else EVERYTHING


def decode(payload: str) -> list[str] | None:
    """The names in ``payload``; None (everything) for "*" or anything malformed."""
    if payload == EVERYTHING:
        return None
    try:
        names = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        return None
    return names


class SqlChanges:
    """The change feed of one own-schema database (module docstring)."""

    def __init__(self, db: Database, *, poll_interval: float) -> None:
        self._db = db
        self._poll_interval = poll_interval
        self._subscribers: list[OnChange] = []
        self._listener: Listener | None = None
        self._poller: asyncio.Task[None] | None = None
        self._log = RateLimitedLog(log)
        self.polls = 0  # successful polls (MariaDB), for tests and status
        self._last_poll = float("-inf")  # loop time of the last good poll (MariaDB)

    @property
    def listener(self) -> Listener | None:
        return self._listener

    @property
    def live(self) -> bool:
        """Whether every write since the subscribers last heard "everything" has been
        or will soon be delivered: PostgreSQL, the LISTEN connection is up; MariaDB,
        the last poll worked and is at most two intervals and a query old. A cache
        kept by the feed (sql/cache.py) is read only while this holds."""
        if self._listener is not None:
            return self._listener.connected
        if self._poller is None:
            return False
        age = asyncio.get_running_loop().time() - self._last_poll
        return age <= 2 * self._poll_interval + self._db.config.timeout

    def subscribe(self, on_change: OnChange) -> None:
        """Call ``on_change(names)`` for every write from now on (None: anything may
        have changed); starts listening or polling with the first subscriber."""
        self._subscribers.append(on_change)
        if self._listener is not None or self._poller is not None:
            return
        if self._db.dialect.name == "postgresql":
            self._listener = self._db.listen(
                CHANNEL,
                on_notify=lambda payload: self.deliver(decode(payload)),
                on_reconnect=lambda: self.deliver(None),
            )
        else:
            self._poller = asyncio.create_task(self._poll(), name="sql-change-poll")

    def deliver(self, names: Sequence[str] | None) -> None:
        for on_change in self._subscribers:
            try:
                on_change(names)
            except Exception:
                log.exception("sql change feed: a subscriber failed")

    async def record(self, tx: Transaction, names: Sequence[str] | None) -> None:
        """Record a write of ``names`` in ``tx`` (sent, or visible, when it commits)."""
        payload = encode(names)
        if self._db.dialect.name == "postgresql":
            await tx.notify(CHANNEL, payload)
            return
        await tx.execute(
            Sql.of("INSERT INTO account_changes (logins) VALUES (", Param(payload), ")")
        )
        await tx.execute(
            Sql.of(
                "DELETE FROM account_changes"  # noqa: S608 - a constant
                f" WHERE changed_at < NOW(6) - INTERVAL {RETENTION}"
            )
        )

    async def _poll(self) -> None:
        """MariaDB: read the change log every ``poll_interval`` seconds, forever."""
        since: object = None  # the database's clock at the last good poll
        seen: set[int] = set()
        timeout = self._db.config.timeout
        failed = True  # the first poll starts from a clean slate
        while True:
            try:
                now = await self._db.fetchrow(Sql.of("SELECT NOW(6)"), primary=True)
                assert now is not None
                # After a flush of everything (the first poll, a failed one) the rows
                # of the window are only noted as seen: they are older than the flush.
                rows = await self._db.fetch(
                    Sql.of(
                        "SELECT id, logins FROM account_changes WHERE changed_at >= ",
                        Param(now.values[0] if since is None else since),
                        f" - INTERVAL {int(timeout * 1_000_000) + 1} MICROSECOND ORDER BY id",
                    ),
                    primary=True,
                )
            except DirectoryUnavailable as exc:
                self._log.warning("poll", "sql change log: %s", exc)
                failed = True
                self._last_poll = float("-inf")  # not live until a poll works again
            else:
                since = now.values[0]
                if failed:
                    self.deliver(None)
                    self._log.clear("poll")
                else:
                    for row in rows:
                        if int(row.values[0]) not in seen:
                            self.deliver(decode(str(row.values[1])))
                seen = {int(row.values[0]) for row in rows}
                failed = False
                self.polls += 1
                self._last_poll = asyncio.get_running_loop().time()
            await asyncio.sleep(self._poll_interval)

    async def close(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            await listener.close()
        poller, self._poller = self._poller, None
        if poller is not None:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller
