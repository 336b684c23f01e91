"""The SQL state store's tables, per engine, and the versioned migrations ``init`` applies.

The tables live in the ``[sql]`` database beside the directory's (mailwarden's own
schema, or a site's Dovecot tables), every name starting with :data:`PREFIX`; the
version is the row :data:`APPLICATION` of ``mailwarden_schema``. Migrating is the
own schema's machinery (directories/sql/own/schema.py: one step and its version in
one transaction under an advisory lock on PostgreSQL; idempotent statements under
``GET_LOCK`` on MariaDB), so there is one way to change a schema.

Step N (1-based) brings the version from N-1 to N. Append, never edit.
"""

from __future__ import annotations

from mailwarden.directories.sql.database import Database
from mailwarden.directories.sql.dialect import Dialect, Sql
from mailwarden.directories.sql.own.schema import apply_step, schema_version
from mailwarden.errors import DirectoryMissing, DirectoryUnavailable

#: This store's row in ``mailwarden_schema``.
APPLICATION = "mailwarden_state"
#: Every table of the state store starts so (own/schema.py's OTHER_PARTS).
PREFIX = "mailwarden_state_"
#: Longest name, owner or digest, in characters: a primary key must fit MariaDB's
#: 3072-byte key limit at four bytes per character (with the audit index's id too).
MAX_KEY = 760


def table(name: str) -> str:
    """The full name of the state table ``name`` (``admins`` ...)."""
    return PREFIX + name


def _v1(d: Dialect) -> tuple[str, ...]:
    pg = d.name == "postgresql"
    text = d.text_type
    # Names compare byte for byte and sort by code point, as in the SQLite store.
    key = f'VARCHAR({MAX_KEY}) COLLATE "C"' if pg else f"VARCHAR({MAX_KEY})"
    real = "DOUBLE PRECISION"
    tail = "" if pg else " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin"
    exists = "IF NOT EXISTS "
    # The row "admins" of the locks table serialises the writers of administrators
    # (SELECT ... FOR UPDATE), so "only the first" is decided by one writer at a time.
    lock_row = (
        "INSERT INTO mailwarden_state_locks (name) VALUES ('admins') ON CONFLICT DO NOTHING"
        if pg
        else "INSERT IGNORE INTO mailwarden_state_locks (name) VALUES ('admins')"
    )
    return (
        f"""CREATE TABLE {exists}{table("audit")} (
            id {d.bigint_identity},
            time {real} NOT NULL,
            actor {key} NOT NULL,
            action {text} NOT NULL,
            target {key} NOT NULL,
            fields {text} NOT NULL,
            source {text} NOT NULL
        ){tail}""",
        f"CREATE INDEX {exists}{table('audit_by_target')} ON {table('audit')} (target, id)",
        f"CREATE INDEX {exists}{table('audit_by_actor')} ON {table('audit')} (actor, id)",
        f"""CREATE TABLE {exists}{table("admins")} (
            name {key} NOT NULL PRIMARY KEY,
            password {text} NOT NULL,
            role VARCHAR(32) NOT NULL,
            created {real} NOT NULL
        ){tail}""",
        f"""CREATE TABLE {exists}{table("tokens")} (
            name {key} NOT NULL PRIMARY KEY,
            digest {key} NOT NULL UNIQUE,
            scope VARCHAR(32) NOT NULL,
            created {real} NOT NULL,
            created_by {text} NOT NULL,
            expires {real}
        ){tail}""",
        f"""CREATE TABLE {exists}{table("factors")} (
            owner {key} NOT NULL PRIMARY KEY,
            secret {text} NOT NULL,
            confirmed SMALLINT NOT NULL CHECK (confirmed IN (0, 1)),
            last_step BIGINT NOT NULL,
            recovery {text} NOT NULL,
            failures INTEGER NOT NULL,
            failed_since {real} NOT NULL,
            version BIGINT NOT NULL
        ){tail}""",
        f"""CREATE TABLE {exists}{table("locks")} (
            name VARCHAR(32) NOT NULL PRIMARY KEY
        ){tail}""",
        lock_row,
    )


def _v2(d: Dialect) -> tuple[str, ...]:
    """The login history (mailwarden.history), where no Redis keeps it."""
    pg = d.name == "postgresql"
    text = d.text_type
    key = f'VARCHAR({MAX_KEY}) COLLATE "C"' if pg else f"VARCHAR({MAX_KEY})"
    tail = "" if pg else " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin"
    exists = "IF NOT EXISTS "
    return (
        f"""CREATE TABLE {exists}{table("logins")} (
            id {d.bigint_identity},
            uid {key} NOT NULL,
            time DOUBLE PRECISION NOT NULL,
            frontend VARCHAR(64) NOT NULL,
            service VARCHAR(64) NOT NULL,
            remote_ip VARCHAR(64),
            result VARCHAR(32) NOT NULL,
            credential VARCHAR(32) NOT NULL,
            app_password {text}
        ){tail}""",
        f"CREATE INDEX {exists}{table('logins_by_uid')} ON {table('logins')} (uid, id)",
        f"CREATE INDEX {exists}{table('logins_by_time')} ON {table('logins')} (time)",
    )


MIGRATIONS = (_v1, _v2)
SCHEMA_VERSION = len(MIGRATIONS)


async def ensure_state_schema(db: Database, *, create: bool, where: str) -> int:
    """Check (and with ``create``, create or upgrade) the state tables; their version.

    DirectoryMissing: none yet or older, and not ``create`` (run ``mailwarden
    init``). DirectoryUnavailable: a newer version, or the server failed. The state
    store turns both into StateUnavailable."""
    tables = await _state_tables(db)
    version = await schema_version(db, APPLICATION) if "mailwarden_schema" in tables else None
    if version is None and any(t.startswith(PREFIX) for t in tables):
        raise DirectoryUnavailable(
            f"{where}: tables named {PREFIX}* that mailwarden did not make (no version)"
        )
    if version is not None and version > SCHEMA_VERSION:
        raise DirectoryUnavailable(
            f"{where}: state schema version {version} is newer than this mailwarden "
            f"supports ({SCHEMA_VERSION}); upgrade mailwarden"
        )
    if version == SCHEMA_VERSION:
        return version
    if not create:
        what = "no state tables" if version is None else f"state schema version {version}"
        raise DirectoryMissing(f"{where}: {what}; run 'mailwarden init'")
    for target in range((version or 0) + 1, SCHEMA_VERSION + 1):
        await apply_step(db, APPLICATION, target, MIGRATIONS[target - 1](db.dialect))
    return SCHEMA_VERSION


async def _state_tables(db: Database) -> set[str]:
    """The names of ``mailwarden_schema`` and the state tables, if they exist."""
    where = (
        "table_schema = current_schema()"
        if db.dialect.name == "postgresql"
        else "table_schema = DATABASE()"
    )
    rows = await db.fetch(
        Sql.of(
            f"SELECT table_name FROM information_schema.tables WHERE {where}"  # noqa: S608
            " AND table_name LIKE 'mailwarden%'"
        ),
        primary=True,
    )
    return {str(row.values[0]).lower() for row in rows}
