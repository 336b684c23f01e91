"""The line of every name an import has accepted, in a temporary SQLite file.

``import passwd-file`` refuses a line whose user name or address an earlier line
has, naming that line (:func:`~mailwarden.accounts.passwdfile.read_accounts`), and
names the line of each account the directory refused. Kept in dicts, those names
cost about 300 bytes a line (356 MiB at a million lines, issue #18); here they go
to a private temporary database with a page cache of :data:`CACHE_KIB`, so what
the import holds stays the same whatever the size of the file. SQLite deletes the
file when the book is closed (and a temporary file is unlinked as soon as it is
opened, so not even a killed import leaves it behind); it takes about 50 bytes of
disk a name, in ``$SQLITE_TMPDIR`` or ``$TMPDIR`` (else ``/var/tmp``, ``/tmp``).

:class:`DiskLineBook` is a :class:`~mailwarden.accounts.passwdfile.LineBook`:
asked a batch of lines at a time, one statement looks up a batch's names and one
keeps them (each with the batch as JSON).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection, Mapping
from types import TracebackType

from mailwarden.errors import ImportError_

#: The book's page cache, in KiB: all the memory it holds, however many names.
CACHE_KIB = 16 * 1024

_LOOKUP = "SELECT l.key, l.line FROM json_each(?) AS j JOIN lines AS l ON l.key = j.value"
# A batch's keys and lines as one JSON object: a third cheaper than executemany,
# which binds every row from Python.
_KEEP = "INSERT INTO lines (key, line) SELECT key, value FROM json_each(?)"


def _json_array(keys: list[str]) -> str:
    """``keys`` as a JSON array; joined as they are when none needs an escape (a
    fifth of what json.dumps costs, and this runs for every name of an import)."""
    joined = '","'.join(keys)
    if not keys or '"' in joined or "\\" in joined or not joined.isprintable():
        return json.dumps(keys, ensure_ascii=False)
    return f'["{joined}"]'


def _failed(exc: sqlite3.Error) -> ImportError_:
    # Not the directory's failure (a full temporary folder, say): the import stops,
    # and on SQLite its one transaction leaves nothing behind.
    return ImportError_(f"the temporary file of the import's names failed: {exc}")


class DiskLineBook:
    """Keys and their lines in a temporary database (see the module docstring);
    close it, or use it as a context manager."""

    def __init__(self, *, cache_kib: int = CACHE_KIB) -> None:
        # An empty name: a private temporary database. check_same_thread is off
        # because an import makes the book on the event loop's thread and reads the
        # file on the directory's writer thread; one thread uses it at a time.
        conn = sqlite3.connect("", isolation_level=None, check_same_thread=False)
        try:
            # Nothing here must survive a crash: no journal, no syncs, and one
            # transaction for the book's whole life (it is never committed).
            conn.execute("PRAGMA journal_mode = OFF")
            conn.execute("PRAGMA synchronous = OFF")
            conn.execute(f"PRAGMA cache_size = {-int(cache_kib)}")
            conn.execute(
                "CREATE TABLE lines (key TEXT PRIMARY KEY, line INTEGER NOT NULL) WITHOUT ROWID"
            )
            conn.execute("BEGIN")
        except sqlite3.Error as exc:
            conn.close()
            raise _failed(exc) from exc
        self._conn = conn

    def lines_of(self, keys: Collection[str]) -> Mapping[str, int]:
        if not keys:
            return {}
        try:
            return dict(self._conn.execute(_LOOKUP, (_json_array(list(keys)),)).fetchall())
        except sqlite3.Error as exc:
            raise _failed(exc) from exc

    def keep(self, lines: Mapping[str, int]) -> None:
        try:
            self._conn.execute(_KEEP, (json.dumps(dict(lines), ensure_ascii=False),))
        except sqlite3.Error as exc:
            raise _failed(exc) from exc

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> DiskLineBook:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
