"""``sql.mode = "own"``: mailwarden's own tables in PostgreSQL or MariaDB.

The same data as the SQLite directory, with the semantics of
:mod:`mailwarden.directories.memory` (the contract suite runs against both
engines). :mod:`.schema` (tables and versioned migrations, applied by
``mailwarden init``), :mod:`.rows` (statements and the row mapping, shared with
SQLite's), :mod:`.directory` (the class), :mod:`.feed` (LISTEN/NOTIFY on
PostgreSQL, a polled change log on MariaDB: other nodes' writes reach this
node's caches). docs/sql.md, "Own schema", is the user's guide.

Errors: any server trouble is DirectoryUnavailable; a taken uid or address is
AccountExists naming the login and its owner (a clash with a write that
committed a moment earlier, found by the unique index, is AccountExists too);
an account the schema cannot hold (a login over :data:`.schema.MAX_LOGIN`
characters) is InvalidAccount.
"""

from mailwarden.directories.sql.own.directory import OwnDirectory
from mailwarden.directories.sql.own.feed import CHANNEL, SqlChanges
from mailwarden.directories.sql.own.schema import MAX_LOGIN, MIGRATIONS, SCHEMA_VERSION

__all__ = ["CHANNEL", "MAX_LOGIN", "MIGRATIONS", "SCHEMA_VERSION", "OwnDirectory", "SqlChanges"]
