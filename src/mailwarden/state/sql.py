"""The state store in PostgreSQL or MariaDB (``state.backend = "sql"``): every node of
a site that uses the same ``[sql]`` database shares the administrators, API tokens,
second factors and audit log.

The connection is the SQL directory's layer (directories/sql/: pool, deadline,
failover to the next of ``sql.hosts``), with a pool of its own of at most
:data:`POOL_SIZE` connections. Its failures (DirectoryUnavailable, DirectoryMissing)
are :class:`~mailwarden.errors.StateUnavailable` here, as the SQLite store's are;
the tables are :mod:`.sqlschema`'s, made by ``mailwarden init``.

Every read goes to a primary (``primary=True``): a replica behind would hand out an
old version of a second factor, and the state is small.

The guarantees of the SQLite store, kept across nodes:

- *One first administrator.* Writers of administrators serialise on one row
  (``mailwarden_state_locks``, ``SELECT ... FOR UPDATE``) inside a transaction, so
  "none yet, so add" is decided by one writer at a time on every node. (One
  ``INSERT ... WHERE NOT EXISTS`` is not enough here: under PostgreSQL's READ
  COMMITTED and InnoDB's consistent reads two such statements can both see none.)
- *Second factors over the version read.* :meth:`SqlStateStore.swap_factor` is one
  statement conditioned on ``version``; the server applies it or not, so of two
  nodes that read the same version and accept the same TOTP code only one
  writes, and the other refuses the code (accounts/staff.py).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from mailwarden.config import Config, SqlConfig, config_relative
from mailwarden.directories.sql.database import Database
from mailwarden.directories.sql.dialect import Param, Sql
from mailwarden.directories.sql.drivers import Row
from mailwarden.directories.sql.modes import read_password
from mailwarden.errors import AccountExists, DirectoryUnavailable, DuplicateKey, StateUnavailable
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
from mailwarden.state.sqlschema import ensure_state_schema

#: Connections the state store keeps at most (fewer if ``sql.pool_size`` is smaller):
#: its calls are few (administration, second factors), not one per login.
POOL_SIZE = 4


_ADMIN = "SELECT name, password, role, created FROM mailwarden_state_admins"
_TOKEN = "SELECT name, digest, scope, created, created_by, expires FROM mailwarden_state_tokens"  # noqa: S105
_FACTOR = (
    "SELECT owner, secret, confirmed, last_step, recovery, failures, failed_since, version "
    "FROM mailwarden_state_factors"
)


class _answering:  # noqa: N801 - used as a function: ``with _answering(where):``
    """The connection layer's failures as the state store's (package docstring).

    A class whose ``__exit__`` returns None, not a ``contextmanager``: it never
    swallows an exception, and the type checker knows a ``return`` inside is final."""

    __slots__ = ("_what",)

    def __init__(self, what: str) -> None:
        self._what = what

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if isinstance(exc, DirectoryUnavailable):  # DirectoryMissing too: run init
            raise StateUnavailable(f"state store ({self._what}): {exc}") from exc


def _admin(row: Row) -> Administrator:
    return admin_of(row.values)


def _token(row: Row) -> ApiToken:
    return token_of(row.values)


def _factor(row: Row) -> SecondFactor:
    return factor_of(row.values)


class SqlStateStore:
    """:class:`~mailwarden.state.base.StateStore` in the ``[sql]`` database."""

    def __init__(self, db: Database, where: str) -> None:
        self._db = db
        self._where = where

    @classmethod
    async def open(cls, config: SqlConfig, *, password: str, create: bool = False) -> SqlStateStore:
        """A store on ``config``'s servers; with ``create`` (``mailwarden init``) the
        tables are made or upgraded first. StateUnavailable if no server answers or
        the tables are missing, older (run ``init``) or newer."""
        where = f"{config.driver} database {config.database}"
        pool = dataclasses.replace(config, pool_size=min(config.pool_size, POOL_SIZE))
        with _answering(where):
            db = await Database.open(pool, password=password)
            try:
                await ensure_state_schema(db, create=create, where=where)
            except BaseException:
                await db.close()
                raise
        return cls(db, where)

    async def _fetch(self, query: Sql) -> list[Row]:
        with _answering(self._where):
            return await self._db.fetch(query, primary=True)

    async def _execute(self, query: Sql) -> int:
        with _answering(self._where):
            return await self._db.execute(query)

    async def record(self, entry: AuditEntry) -> None:
        await self._execute(
            Sql.of(
                "INSERT INTO mailwarden_state_audit (time, actor, action, target, fields, source)"
                " VALUES (",
                *_values(
                    entry.time,
                    entry.actor,
                    entry.action,
                    entry.target,
                    json.dumps(list(entry.fields)),
                    entry.source,
                ),
                ")",
            )
        )

    async def audit(self, query: AuditQuery) -> list[AuditEntry]:
        parts: list[str | Param] = [
            "SELECT id, time, actor, action, target, fields, source"
            " FROM mailwarden_state_audit WHERE 1 = 1"
        ]
        if query.target is not None:
            parts += [" AND target = ", Param(query.target)]
        if query.actor is not None:
            parts += [" AND actor = ", Param(query.actor)]
        if query.since is not None:
            parts += [" AND time >= ", Param(query.since)]
        parts += [" ORDER BY id DESC LIMIT ", Param(max(0, min(query.limit, MAX_AUDIT_ROWS)))]
        return [
            AuditEntry(
                id=int(r.values[0]),
                time=float(r.values[1]),
                actor=r.values[2],
                action=r.values[3],
                target=r.values[4],
                fields=tuple(json.loads(r.values[5])),
                source=r.values[6],
            )
            for r in await self._fetch(Sql(tuple(parts)))
        ]

    async def admin(self, name: str) -> Administrator | None:
        rows = await self._fetch(Sql.of(_ADMIN + " WHERE name = ", Param(name)))
        return _admin(rows[0]) if rows else None

    async def admins(self) -> list[Administrator]:
        return [_admin(r) for r in await self._fetch(Sql.of(_ADMIN + " ORDER BY name"))]

    async def add_admin(self, admin: Administrator, *, first: bool = False) -> bool:
        try:
            with _answering(self._where):
                async with self._db.transaction() as tx:
                    await tx.fetch(_lock_admins())
                    if first:
                        # A locking read: the newest committed rows, also on InnoDB.
                        found = await tx.fetch(
                            Sql.of("SELECT name FROM mailwarden_state_admins LIMIT 1 FOR UPDATE")
                        )
                        if found:
                            return False
                    await tx.execute(
                        Sql.of(
                            "INSERT INTO mailwarden_state_admins (name, password, role, created)"
                            " VALUES (",
                            *_values(admin.name, admin.password, admin.role, admin.created),
                            ")",
                        )
                    )
        except DuplicateKey:
            raise AccountExists(f"administrator {admin.name} exists") from None
        return True

    async def replace_admin(self, admin: Administrator) -> bool:
        # Not the UPDATE's row count: MariaDB counts only rows it changed, and the
        # same password and role again change none.
        with _answering(self._where):
            async with self._db.transaction() as tx:
                await tx.fetch(_lock_admins())
                found = await tx.fetch(
                    Sql.of(
                        "SELECT name FROM mailwarden_state_admins WHERE name = ", Param(admin.name)
                    )
                )
                if not found:
                    return False
                await tx.execute(
                    Sql.of(
                        "UPDATE mailwarden_state_admins SET password = ",
                        Param(admin.password),
                        ", role = ",
                        Param(admin.role),
                        " WHERE name = ",
                        Param(admin.name),
                    )
                )
        return True

    async def remove_admin(self, name: str) -> bool:
        deleted = await self._execute(
            Sql.of("DELETE FROM mailwarden_state_admins WHERE name = ", Param(name))
        )
        return deleted == 1

    async def token(self, digest: str) -> ApiToken | None:
        rows = await self._fetch(Sql.of(_TOKEN + " WHERE digest = ", Param(digest)))
        return _token(rows[0]) if rows else None

    async def tokens(self) -> list[ApiToken]:
        return [_token(r) for r in await self._fetch(Sql.of(_TOKEN + " ORDER BY name"))]

    async def add_token(self, token: ApiToken) -> None:
        try:
            await self._execute(
                Sql.of(
                    "INSERT INTO mailwarden_state_tokens"
                    " (name, digest, scope, created, created_by, expires) VALUES (",
                    *_values(
                        token.name,
                        token.digest,
                        token.scope,
                        token.created,
                        token.created_by,
                        token.expires,
                    ),
                    ")",
                )
            )
        except DuplicateKey:
            raise AccountExists(f"token {token.name} exists") from None

    async def remove_token(self, name: str) -> bool:
        deleted = await self._execute(
            Sql.of("DELETE FROM mailwarden_state_tokens WHERE name = ", Param(name))
        )
        return deleted == 1

    async def factor(self, owner: str) -> SecondFactor | None:
        rows = await self._fetch(Sql.of(_FACTOR + " WHERE owner = ", Param(owner)))
        return _factor(rows[0]) if rows else None

    async def swap_factor(self, owner: str, expected: int | None, new: SecondFactor | None) -> bool:
        if new is None:
            if expected is None:
                return await self.factor(owner) is None
            deleted = await self._execute(
                Sql.of(
                    "DELETE FROM mailwarden_state_factors WHERE owner = ",
                    Param(owner),
                    " AND version = ",
                    Param(expected),
                )
            )
            return deleted == 1
        fields = factor_columns(new)
        if expected is None:
            try:
                await self._execute(
                    Sql.of(
                        "INSERT INTO mailwarden_state_factors (secret, confirmed, last_step,"
                        " recovery, failures, failed_since, owner, version) VALUES (",
                        *_values(*fields, owner, 0),
                        ")",
                    )
                )
            except DuplicateKey:
                return False  # another writer made one first
            return True
        # version changes with every write, so MariaDB counts the row as changed.
        updated = await self._execute(
            Sql.of(
                "UPDATE mailwarden_state_factors SET secret = ",
                Param(fields[0]),
                ", confirmed = ",
                Param(fields[1]),
                ", last_step = ",
                Param(fields[2]),
                ", recovery = ",
                Param(fields[3]),
                ", failures = ",
                Param(fields[4]),
                ", failed_since = ",
                Param(fields[5]),
                ", version = version + 1 WHERE owner = ",
                Param(owner),
                " AND version = ",
                Param(expected),
            )
        )
        return updated == 1

    # ------------------------------------------------------------------ login history

    async def add_logins(self, events: Sequence[LoginEvent], *, keep: int, ttl: float) -> None:
        if not events:
            return
        # One statement per batch: one round trip, whatever its size. Trimming to
        # ``keep`` is the hourly prune's (prune_logins).
        parts: list[str | Param] = [
            "INSERT INTO mailwarden_state_logins (uid, time, frontend, service,"
            " remote_ip, result, credential, app_password) VALUES "
        ]
        for i, e in enumerate(events):
            parts.append(", (" if i else "(")
            parts += _values(*columns(e))
            parts.append(")")
        await self._execute(Sql(tuple(parts)))

    async def logins(self, uid: str, *, limit: int, since: float) -> list[LoginEvent]:
        rows = await self._fetch(
            Sql.of(
                "SELECT uid, time, frontend, service, remote_ip, result, credential,"
                " app_password FROM mailwarden_state_logins WHERE uid = ",
                Param(uid),
                " AND time >= ",
                Param(since),
                " ORDER BY id DESC LIMIT ",
                Param(max(0, min(limit, MAX_ROWS))),
            )
        )
        return [
            LoginEvent(
                uid=r.values[0],
                at=float(r.values[1]),
                frontend=r.values[2],
                service=r.values[3],
                remote_ip=r.values[4],
                result=LoginResult(r.values[5]),
                credential=CredentialKind(r.values[6]),
                app_password=r.values[7],
            )
            for r in rows
        ]

    async def prune_logins(self, before: float, *, keep: int) -> int:
        old = await self._execute(
            Sql.of("DELETE FROM mailwarden_state_logins WHERE time < ", Param(before))
        )
        # The derived table is read whole before the DELETE writes (MariaDB needs that).
        cut = await self._execute(
            Sql.of(
                "DELETE FROM mailwarden_state_logins WHERE id IN (SELECT id FROM (SELECT id,"
                " ROW_NUMBER() OVER (PARTITION BY uid ORDER BY id DESC) AS n"
                " FROM mailwarden_state_logins) AS ranked WHERE n > ",
                Param(keep),
                ")",
            )
        )
        return old + cut

    async def close(self) -> None:
        await self._db.close()


def _lock_admins() -> Sql:
    """Take the row that serialises writers of administrators (package docstring)."""
    return Sql.of("SELECT name FROM mailwarden_state_locks WHERE name = 'admins' FOR UPDATE")


def _values(*values: Any) -> list[str | Param]:
    """``v1, v2, ...`` as bound parameters."""
    parts: list[str | Param] = []
    for i, value in enumerate(values):
        parts.extend([", " if i else "", Param(value)])
    return parts


async def open_sql_state(config: Config, *, create: bool = False) -> SqlStateStore:
    """The store on ``config.sql`` (its password read as the directory reads it)."""
    password = read_password(config.sql, lambda p: Path(config_relative(config.source, p)))
    return await SqlStateStore.open(config.sql, password=password, create=create)
