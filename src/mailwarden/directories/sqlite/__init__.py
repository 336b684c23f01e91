"""The embedded default directory: one SQLite file, read by a pool of threads.

:class:`SQLiteDirectory` implements the ``Directory`` protocol with the semantics
of :mod:`mailwarden.directories.memory` (the reference), on a database file in WAL
mode. Everything that touches ``sqlite3`` lives in this package:
:mod:`.schema` (migrations), :mod:`.rows` (statements, row mapping, inserts),
:mod:`.directory` (threads, login cache, the class) and :mod:`.export` (an export
read and formatted by worker processes, for ``export passwd-file``).

Threads. ``sqlite3`` calls block, so none of them runs on the event loop. Reads go
to a pool of ``readers`` threads, each with its own connection (opened on first
use, ``query_only``); WAL lets them all read while a write is in progress. The logins of one turn of
the event loop that miss the login cache (a pipelined burst of cold logins) go
to the readers together, in chunks of :data:`FIND_BATCH`: handing work to a
thread and back costs several times the ~35 µs of the query itself. Writes
go to one dedicated thread with the only writing connection, so they are
serialised in this process without any lock of ours; another process (the CLI
while the daemon runs) waits up to ``timeout`` seconds for SQLite's own lock.

Durability. ``synchronous=FULL``: in WAL mode the default (NORMAL) only syncs the
WAL at checkpoints, so a power cut can lose the last transactions even though
they were reported as committed. Here a write that returned is on disk: a
password changed through the mail gateway and acknowledged to the user must not
silently revert after a crash. It costs one fsync per write transaction; writes
are rare next to logins, and a bulk import is one transaction.

Schema. ``accounts`` holds one row per account. Logins, services and SSH keys
are tables of their own, because they are what a query selects on: ``logins``
is the case-insensitive index every ``find`` goes through (and its primary key
is what makes uids and addresses unique), ``services`` answers "who has IMAP
off", ``ssh_keys`` "whose key is this". ``passdb_fields``, ``userdb_fields``,
``allow_nets`` and ``profile`` are JSON text columns: they are open-ended,
always read whole with their account and never searched, so tables would only
add joins. ``find`` is still one statement: the child rows come back as JSON
aggregates of indexed sub-selects.

Migrations. ``PRAGMA user_version`` is the number of :data:`MIGRATIONS` applied;
each step runs in one transaction together with the version bump, so a crash
leaves either the old or the new schema. ``open(create=True)`` creates the file
and applies every step; ``open(create=False)`` applies pending steps to an
existing mailwarden database and refuses files that are missing, not SQLite,
belong to another application or come from a newer mailwarden.

Errors. Any ``sqlite3`` error is :class:`~mailwarden.errors.DirectoryUnavailable`
(naming the file), except constraint violations: a taken uid or address is
:class:`~mailwarden.errors.AccountExists` naming the login and its owner, any
other constraint :class:`~mailwarden.errors.InvalidAccount`.
"""

from mailwarden.directories.sqlite.directory import CACHE_RECHECK, FIND_BATCH, SQLiteDirectory
from mailwarden.directories.sqlite.schema import APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION

__all__ = [
    "APPLICATION_ID",
    "CACHE_RECHECK",
    "FIND_BATCH",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "SQLiteDirectory",
]
