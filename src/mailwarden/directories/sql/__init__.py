"""The SQL directory: accounts in PostgreSQL or MariaDB (``directory.backend = "sql"``).

This package holds the connection layer every SQL mode builds on; docs/sql.md
describes the modes, the config and the driver choice.

Modules. :mod:`.dialect` (pure: placeholders, quoting, upserts: a query is
written once as an :class:`Sql` of text and :class:`Param` values),
:mod:`.drivers` (asyncpg and aiomysql behind one ``Connection`` interface, and
what their errors mean), :mod:`.database` (the pool), :mod:`.listen`
(PostgreSQL LISTEN).

The connection layer's API (:class:`Database`)::

    db = await Database.open(config.sql, password=secret)   # DirectoryUnavailable if down
    db.dialect                                  # POSTGRESQL or MARIADB (dialect.py)
    rows = await db.fetch(Sql.of("SELECT a FROM t WHERE k = ", Param(k)))  # list[Row]
    row = await db.fetchrow(query, primary=True)   # first Row or None; primary: read-your-writes
    n = await db.execute(query)                 # a write on a primary, autocommit; rows affected
    async with db.transaction() as tx:          # one primary connection, BEGIN ... COMMIT
        await tx.fetch(q); await tx.execute(q); await tx.notify("chan", "payload")
    async with contextlib.aclosing(db.stream(query, batch=500)) as rows:  # server-side cursor
        async for row in rows: ...
    listener = db.listen("chan", on_notify=f, on_reconnect=g)  # PostgreSQL; await listener.close()
    await db.ping(); await db.close()

``Row`` has ``columns``, ``values``, ``row["col"]``, ``row.get("col")``, ``as_dict()``.

Rules (one place: :mod:`.database`).

- *Bounded pool.* ``sql.pool_size`` slots, each holding at most one connection;
  an operation takes a slot, so at most ``pool_size`` connections exist.
- *One deadline.* Every operation (waiting for a slot, connecting, the query) has
  ``sql.timeout`` seconds; connecting alone at most ``sql.connect_timeout``. The
  server is told the same limit (``statement_timeout`` / ``max_statement_time``),
  so an abandoned query does not run on. A connection whose query timed out or was
  cancelled is dropped, never reused. A :meth:`Database.stream` gives each batch
  its own ``timeout``.
- *Hosts.* Writes (and ``primary=True`` reads) go to ``sql.hosts`` in order, to
  the first that answers and is not read-only (``transaction_read_only`` /
  ``@@read_only``, checked at connect and whenever a write is refused as
  read-only). Reads go to ``hosts`` then ``replicas`` (``read_from = "hosts"``,
  the default: replicas are a fallback) or ``replicas`` first (``"replicas"``:
  they carry the reads; a lagging replica then answers with what it has). A host
  that fails rests for a backoff (0.1 s doubling up to ``sql.backoff_max``,
  :mod:`mailwarden.directories.failover`); a read moves on to the next host at
  once, a write is never sent twice (the first may have been applied). A pooled
  connection found dead (the server restarted) is replaced by a new one to the
  same host, once, without resting it, so a restart costs no failed login.
- *Failures.* Any outage, timeout, refused login to the server or failed query
  is :class:`~mailwarden.errors.DirectoryUnavailable` (a temporary failure,
  never a wrong password). A unique index refusing a write is
  :class:`~mailwarden.errors.DuplicateKey` (an AccountExists). A query the server
  refuses (a typo in a configured query) is logged at a bounded rate.
"""

from mailwarden.directories.sql.database import Database, Transaction
from mailwarden.directories.sql.dialect import DIALECTS, MARIADB, POSTGRESQL, Dialect, Param, Sql
from mailwarden.directories.sql.drivers import Endpoint, Row
from mailwarden.directories.sql.listen import Listener

__all__ = [
    "DIALECTS",
    "MARIADB",
    "POSTGRESQL",
    "Database",
    "Dialect",
    "Endpoint",
    "Listener",
    "Param",
    "Row",
    "Sql",
    "Transaction",
]
