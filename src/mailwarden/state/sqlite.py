"""The state store in an SQLite file (by default ``state.db`` beside the directory's
database; ``[state] path``): nothing to set up, shared by the processes of one host.

Every call runs on one thread of its own with one connection (the records are few
and small; the event loop never waits on the disk). The file is created private
(0600). The schema is versioned as the SQLite directory's is: ``PRAGMA
user_version`` counts the :data:`MIGRATIONS` applied, each in one transaction, and
a file of a newer version is refused rather than misread.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from mailwarden import sqlitemigrations
from mailwarden.errors import AccountExists, StateUnavailable
from mailwarden.history.base import MAX_ROWS, LoginEvent, LoginResult, columns
from mailwarden.model import CredentialKind
from mailwarden.state.base import (
    MAX_AUDIT_ROWS,
    Administrator,
    ApiToken,
    AuditEntry,
    AuditQuery,
    SecondFactor,
)
from mailwarden.state.rows import admin_of, factor_columns, factor_of, token_of

T = TypeVar("T")

#: "mwst" in ASCII: tells our state file from the directory's database and others.
APPLICATION_ID = 0x6D777374

# Step N (1-based) brings user_version from N-1 to N. Append, never edit.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE audit (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            time REAL NOT NULL,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            target TEXT NOT NULL,
            fields TEXT NOT NULL,
            source TEXT NOT NULL)""",
        "CREATE INDEX audit_target ON audit (target, id)",
        "CREATE INDEX audit_actor ON audit (actor, id)",
        """CREATE TABLE admins (
            name TEXT PRIMARY KEY,
            password TEXT NOT NULL,
            role TEXT NOT NULL,
            created REAL NOT NULL)""",
        """CREATE TABLE tokens (
            name TEXT PRIMARY KEY,
            digest TEXT NOT NULL UNIQUE,
            scope TEXT NOT NULL,
            created REAL NOT NULL,
            created_by TEXT NOT NULL,
            expires REAL)""",
        """CREATE TABLE factors (
            owner TEXT PRIMARY KEY,
            secret TEXT NOT NULL,
            confirmed INTEGER NOT NULL,
            last_step INTEGER NOT NULL,
            recovery TEXT NOT NULL,
            failures INTEGER NOT NULL,
            failed_since REAL NOT NULL,
            version INTEGER NOT NULL)""",
    ),
    (
        # The login history (mailwarden.history), where no Redis keeps it.
        """CREATE TABLE logins (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            uid TEXT NOT NULL,
            time REAL NOT NULL,
            frontend TEXT NOT NULL,
            service TEXT NOT NULL,
            remote_ip TEXT,
            result TEXT NOT NULL,
            credential TEXT NOT NULL,
            app_password TEXT)""",
        "CREATE INDEX logins_uid ON logins (uid, id)",
        "CREATE INDEX logins_time ON logins (time)",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(conn: sqlite3.Connection) -> None:
    """Bring the file's schema up to :data:`SCHEMA_VERSION` (StateUnavailable if it
    is not ours or newer)."""
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    if app_id not in (0, APPLICATION_ID) or (version == 0 and tables):
        raise StateUnavailable("not a mailwarden state file")
    if version > SCHEMA_VERSION:
        raise StateUnavailable(
            f"state schema version {version} is newer than this mailwarden ({SCHEMA_VERSION})"
        )
    sqlitemigrations.apply(
        conn, version, MIGRATIONS, with_each=(f"PRAGMA application_id = {APPLICATION_ID}",)
    )


def _admin(row: Any) -> Administrator:
    return admin_of(row)


def _token(row: Any) -> ApiToken:
    return token_of(row)


def _factor(row: Any) -> SecondFactor:
    return factor_of(row)


def _login(row: Any) -> LoginEvent:
    return LoginEvent(
        uid=row[0],
        at=row[1],
        frontend=row[2],
        service=row[3],
        remote_ip=row[4],
        result=LoginResult(row[5]),
        credential=CredentialKind(row[6]),
        app_password=row[7],
    )


_ADD_LOGINS = (
    "INSERT INTO logins (uid, time, frontend, service, remote_ip, result, credential, "
    "app_password) SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), "
    "json_extract(value, '$[2]'), json_extract(value, '$[3]'), json_extract(value, '$[4]'), "
    "json_extract(value, '$[5]'), json_extract(value, '$[6]'), json_extract(value, '$[7]') "
    "FROM json_each(?) ORDER BY key"
)
#: Every account cut to its newest ``keep`` entries.
_TRIM_LOGINS = (
    "DELETE FROM logins WHERE id IN (SELECT id FROM (SELECT id, row_number() OVER "
    "(PARTITION BY uid ORDER BY id DESC) AS n FROM logins) WHERE n > ?)"
)
_ADMIN = "SELECT name, password, role, created FROM admins"
_TOKEN = "SELECT name, digest, scope, created, created_by, expires FROM tokens"  # noqa: S105
_FACTOR = (
    "SELECT owner, secret, confirmed, last_step, recovery, failures, failed_since, version "
    "FROM factors"
)


class SQLiteStateStore:
    """:class:`~mailwarden.state.base.StateStore` in one SQLite file."""

    def __init__(self, conn: sqlite3.Connection, executor: ThreadPoolExecutor, path: Path) -> None:
        self._conn = conn
        self._executor = executor
        self._path = path
        self._lock = threading.Lock()
        self._closed = False

    @classmethod
    async def open(cls, path: Path, *, timeout: float = 5.0) -> SQLiteStateStore:
        """Open (creating it, 0600, in an existing folder) and migrate the file at ``path``."""
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="state")

        def setup() -> sqlite3.Connection:
            # The folder is not created: it is the directory's (made by ``init``) or
            # the administrator's; a missing one is a StateUnavailable, never a new
            # folder somewhere in the file system.
            with contextlib.suppress(FileExistsError):
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            conn = sqlite3.connect(
                path, timeout=timeout, isolation_level=None, check_same_thread=False
            )
            try:
                conn.execute("PRAGMA synchronous = FULL")
                conn.execute("PRAGMA journal_mode = WAL")
                migrate(conn)
            except BaseException:
                conn.close()
                raise
            return conn

        loop = asyncio.get_running_loop()
        try:
            conn = await loop.run_in_executor(executor, setup)
        except (sqlite3.Error, OSError) as exc:
            executor.shutdown(wait=False)
            raise StateUnavailable(f"{path}: {exc}") from exc
        except StateUnavailable as exc:
            executor.shutdown(wait=False)
            raise StateUnavailable(f"{path}: {exc}") from exc
        return cls(conn, executor, path)

    async def _run(self, job: Callable[[sqlite3.Connection], T]) -> T:
        if self._closed:
            raise StateUnavailable("the state store is closed")

        def run() -> T:
            if self._closed:
                raise StateUnavailable("the state store is closed")
            with self._lock:
                try:
                    return job(self._conn)
                except sqlite3.IntegrityError:
                    raise
                except sqlite3.Error as exc:
                    raise StateUnavailable(f"{self._path}: {exc}") from exc

        return await asyncio.get_running_loop().run_in_executor(self._executor, run)

    async def record(self, entry: AuditEntry) -> None:
        def job(c: sqlite3.Connection) -> None:
            c.execute(
                "INSERT INTO audit (time, actor, action, target, fields, source) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (
                    entry.time,
                    entry.actor,
                    entry.action,
                    entry.target,
                    json.dumps(list(entry.fields)),
                    entry.source,
                ),
            )

        await self._run(job)

    async def audit(self, query: AuditQuery) -> list[AuditEntry]:
        where: list[str] = []
        params: list[object] = []
        for column, value in (("target", query.target), ("actor", query.actor)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if query.since is not None:
            where.append("time >= ?")
            params.append(query.since)
        sql = "SELECT id, time, actor, action, target, fields, source FROM audit"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC LIMIT ?"
        params.append(max(0, min(query.limit, MAX_AUDIT_ROWS)))

        def job(c: sqlite3.Connection) -> list[AuditEntry]:
            return [
                AuditEntry(
                    id=r[0],
                    time=r[1],
                    actor=r[2],
                    action=r[3],
                    target=r[4],
                    fields=tuple(json.loads(r[5])),
                    source=r[6],
                )
                for r in c.execute(sql, params)
            ]

        return await self._run(job)

    async def admin(self, name: str) -> Administrator | None:
        def job(c: sqlite3.Connection) -> Administrator | None:
            row = c.execute(_ADMIN + " WHERE name = ?", (name,)).fetchone()
            return None if row is None else _admin(row)

        return await self._run(job)

    async def admins(self) -> list[Administrator]:
        return await self._run(lambda c: [_admin(r) for r in c.execute(_ADMIN + " ORDER BY name")])

    async def add_admin(self, admin: Administrator, *, first: bool = False) -> bool:
        values = (admin.name, admin.password, admin.role, admin.created)

        def job(c: sqlite3.Connection) -> bool:
            if first:
                # One statement: no other writer can slip in between the check and
                # the insert (SQLite serialises writers).
                cur = c.execute(
                    "INSERT INTO admins (name, password, role, created) SELECT ?, ?, ?, ? "
                    "WHERE NOT EXISTS (SELECT 1 FROM admins)",
                    values,
                )
                return cur.rowcount == 1
            c.execute(
                "INSERT INTO admins (name, password, role, created) VALUES (?, ?, ?, ?)", values
            )
            return True

        try:
            return await self._run(job)
        except sqlite3.IntegrityError:
            raise AccountExists(f"administrator {admin.name} exists") from None

    async def replace_admin(self, admin: Administrator) -> bool:
        def job(c: sqlite3.Connection) -> bool:
            cur = c.execute(
                "UPDATE admins SET password = ?, role = ? WHERE name = ?",
                (admin.password, admin.role, admin.name),
            )
            return cur.rowcount == 1

        return await self._run(job)

    async def remove_admin(self, name: str) -> bool:
        return await self._run(
            lambda c: c.execute("DELETE FROM admins WHERE name = ?", (name,)).rowcount == 1
        )

    async def token(self, digest: str) -> ApiToken | None:
        def job(c: sqlite3.Connection) -> ApiToken | None:
            row = c.execute(_TOKEN + " WHERE digest = ?", (digest,)).fetchone()
            return None if row is None else _token(row)

        return await self._run(job)

    async def tokens(self) -> list[ApiToken]:
        return await self._run(lambda c: [_token(r) for r in c.execute(_TOKEN + " ORDER BY name")])

    async def add_token(self, token: ApiToken) -> None:
        def job(c: sqlite3.Connection) -> None:
            c.execute(
                "INSERT INTO tokens (name, digest, scope, created, created_by, expires) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (
                    token.name,
                    token.digest,
                    token.scope,
                    token.created,
                    token.created_by,
                    token.expires,
                ),
            )

        try:
            await self._run(job)
        except sqlite3.IntegrityError:
            raise AccountExists(f"token {token.name} exists") from None

    async def remove_token(self, name: str) -> bool:
        return await self._run(
            lambda c: c.execute("DELETE FROM tokens WHERE name = ?", (name,)).rowcount == 1
        )

    async def factor(self, owner: str) -> SecondFactor | None:
        def job(c: sqlite3.Connection) -> SecondFactor | None:
            row = c.execute(_FACTOR + " WHERE owner = ?", (owner,)).fetchone()
            return None if row is None else _factor(row)

        return await self._run(job)

    async def swap_factor(self, owner: str, expected: int | None, new: SecondFactor | None) -> bool:
        def job(c: sqlite3.Connection) -> bool:
            if new is None:
                if expected is None:
                    return (
                        c.execute("SELECT 1 FROM factors WHERE owner = ?", (owner,)).fetchone()
                        is None
                    )
                cur = c.execute(
                    "DELETE FROM factors WHERE owner = ? AND version = ?", (owner, expected)
                )
                return cur.rowcount == 1
            values = factor_columns(new)
            if expected is None:
                cur = c.execute(
                    "INSERT OR IGNORE INTO factors (secret, confirmed, last_step, recovery, "
                    "failures, failed_since, owner, version) VALUES (?, ?, ?, ?, ?, ?, ?, 0)",
                    (*values, owner),
                )
                return cur.rowcount == 1
            cur = c.execute(
                "UPDATE factors SET secret = ?, confirmed = ?, last_step = ?, recovery = ?, "
                "failures = ?, failed_since = ?, version = version + 1 "
                "WHERE owner = ? AND version = ?",
                (*values, owner, expected),
            )
            return cur.rowcount == 1

        return await self._run(job)

    # ------------------------------------------------------------------ login history

    async def add_logins(self, events: Sequence[LoginEvent], *, keep: int, ttl: float) -> None:
        # One statement over one JSON array, made here on the event loop: the writing
        # thread then runs no Python per row. Each sqlite3 call releases and takes the
        # GIL again, and taking it back from a busy event loop waits for its switch
        # interval: a statement per row made the loop hand the GIL over hundreds of
        # times a batch. Trimming to ``keep`` is the hourly prune's (prune_logins).
        if not events:
            return
        batch = json.dumps(
            [columns(e) for e in events],
            separators=(",", ":"),
        )
        await self._run(lambda c: c.execute(_ADD_LOGINS, (batch,)))

    async def logins(self, uid: str, *, limit: int, since: float) -> list[LoginEvent]:
        def job(c: sqlite3.Connection) -> list[LoginEvent]:
            return [
                _login(r)
                for r in c.execute(
                    "SELECT uid, time, frontend, service, remote_ip, result, credential, "
                    "app_password FROM logins WHERE uid = ? AND time >= ? "
                    "ORDER BY id DESC LIMIT ?",
                    (uid, since, max(0, min(limit, MAX_ROWS))),
                )
            ]

        return await self._run(job)

    async def prune_logins(self, before: float, *, keep: int) -> int:
        def job(c: sqlite3.Connection) -> int:
            old = c.execute("DELETE FROM logins WHERE time < ?", (before,)).rowcount
            return int(old + c.execute(_TRIM_LOGINS, (keep,)).rowcount)

        return await self._run(job)

    async def close(self) -> None:
        if self._closed:
            return

        def job() -> None:
            self._closed = True
            with self._lock:
                self._conn.close()

        await asyncio.get_running_loop().run_in_executor(self._executor, job)
        self._executor.shutdown(wait=True)
