"""The own schema's tables, per engine, and the versioned migrations ``init`` applies.

Migration step N (1-based) brings ``mailwarden_schema.version`` from N-1 to N.
Append, never edit. :func:`ensure_schema` is the one place that reads the version
and decides: create (``init`` on an empty database), upgrade (``init`` on an older
schema), use (the current one), or refuse (a newer schema, or a database that
holds tables of another application).

Transactions. PostgreSQL runs DDL inside transactions, so each step and its
version bump commit together under an advisory lock: a crash leaves the old or
the new schema, and two ``init`` runs at once apply each step once. MariaDB
commits implicitly around every DDL statement, so there a step cannot be atomic:
each statement is written to be idempotent instead (``IF NOT EXISTS``), the step
runs under ``GET_LOCK``, and the version is bumped after its last statement. A
step interrupted by a crash is simply applied again by the next ``init``.

Other parts of mailwarden may keep tables in the same database (the state store,
mailwarden/state/sqlschema.py): their names start with :data:`OTHER_PARTS`, their
versions are rows of their own in ``mailwarden_schema``, and they migrate with
:func:`schema_version` and :func:`apply_step`, under the same lock.
"""

from __future__ import annotations

from collections.abc import Sequence

from mailwarden.directories.sql.database import Database, Transaction
from mailwarden.directories.sql.dialect import Dialect, Param, Sql
from mailwarden.errors import DirectoryMissing, DirectoryUnavailable

#: The application name in ``mailwarden_schema`` (tells our schema from another's).
APPLICATION = "mailwarden"
#: Longest login (uid or address), in characters: the unique index on ``logins``
#: must fit MariaDB's 3072-byte key limit at four bytes per character.
MAX_LOGIN = 700
#: The advisory lock (PostgreSQL) that serialises migrations: "MWDN".
_PG_LOCK = 0x4D57444E
_MARIADB_LOCK = "mailwarden_schema"
#: Tables whose names start so belong to another part of mailwarden (never foreign).
OTHER_PARTS = "mailwarden_"


def _v1(d: Dialect) -> tuple[str, ...]:
    pg = d.name == "postgresql"
    text = d.text_type
    # Logins compare byte for byte (they are stored lower-cased) and sort by code
    # point, like the other directories: "C" on PostgreSQL, a binary NO PAD
    # collation on MariaDB (whose PAD SPACE collations ignore trailing spaces).
    login = f'VARCHAR({MAX_LOGIN}) COLLATE "C"' if pg else f"VARCHAR({MAX_LOGIN})"
    tail = "" if pg else " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin"
    exists = "" if pg else "IF NOT EXISTS "
    stamp = (
        "TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()"
        if pg
        else "TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)"
    )
    return (
        f"""CREATE TABLE {exists}accounts (
            id {d.bigint_identity},
            uid {login} NOT NULL,
            mail {login},
            password {text} NOT NULL,
            status VARCHAR(16) NOT NULL CHECK (status IN ('active', 'disabled', 'deleted')),
            mail_host {text},
            home {text},
            mail_location {text},
            uid_number BIGINT CHECK (uid_number >= 0),
            gid_number BIGINT CHECK (gid_number >= 0),
            quota_bytes BIGINT CHECK (quota_bytes >= 0),
            quota_messages BIGINT CHECK (quota_messages >= 0),
            master SMALLINT NOT NULL CHECK (master IN (0, 1)),
            allow_nets {text} NOT NULL,
            passdb_fields {text} NOT NULL,
            userdb_fields {text} NOT NULL,
            pgp_fingerprint {text},
            fingerprint_key {login},
            profile {text} NOT NULL,
            dns_records {text} NOT NULL
        ){tail}""",
        f"CREATE INDEX {exists}accounts_by_fingerprint ON accounts (fingerprint_key)",
        # login is lower-cased, name as given. Uids and addresses are two name
        # spaces: an address may equal another account's uid (find prefers the uid).
        f"""CREATE TABLE {exists}logins (
            login {login} NOT NULL,
            space VARCHAR(8) NOT NULL CHECK (space IN ('uid', 'address')),
            kind VARCHAR(16) NOT NULL CHECK (kind IN ('uid', 'mail', 'alternate')),
            account_id BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
            name {login} NOT NULL,
            position INTEGER NOT NULL DEFAULT 0,
            CHECK ((kind = 'uid') = (space = 'uid')),
            PRIMARY KEY (login, space)
        ){tail}""",
        f"CREATE INDEX {exists}logins_by_account ON logins (account_id, kind, position)",
        f"""CREATE TABLE {exists}services (
            account_id BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
            name {login} NOT NULL,
            enabled SMALLINT NOT NULL CHECK (enabled IN (0, 1)),
            PRIMARY KEY (account_id, name)
        ){tail}""",
        f"""CREATE TABLE {exists}ssh_keys (
            account_id BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            ssh_key {text} NOT NULL,
            PRIMARY KEY (account_id, position)
        ){tail}""",
        # The change log MariaDB nodes poll (PostgreSQL nodes LISTEN instead): the
        # lower-cased logins a write touched, as a JSON list (own/feed.py).
        f"""CREATE TABLE {exists}account_changes (
            id {d.bigint_identity},
            logins {text} NOT NULL,
            changed_at {stamp}
        ){tail}""",
        f"CREATE INDEX {exists}account_changes_by_time ON account_changes (changed_at)",
    )


def _v2(d: Dialect) -> tuple[str, ...]:
    """App passwords (a digest each, never the value; the last use written in place,
    in batches) and the switch "app passwords only for mail"."""
    pg = d.name == "postgresql"
    text = d.text_type
    tail = "" if pg else " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin"
    exists = "" if pg else "IF NOT EXISTS "
    return (
        f"""CREATE TABLE {exists}app_passwords (
            account_id BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            id VARCHAR(32) NOT NULL,
            name {text} NOT NULL,
            digest VARCHAR(64) NOT NULL,
            services {text} NOT NULL,
            expires BIGINT,
            created BIGINT NOT NULL,
            last_used BIGINT,
            last_service {text},
            last_ip {text},
            PRIMARY KEY (account_id, id)
        ){tail}""",
        "ALTER TABLE accounts ADD COLUMN IF NOT EXISTS app_passwords_only SMALLINT NOT NULL"
        " DEFAULT 0",
    )


MIGRATIONS = (_v1, _v2)
SCHEMA_VERSION = len(MIGRATIONS)

_VERSION_TABLE = (
    "CREATE TABLE IF NOT EXISTS mailwarden_schema ("
    " application VARCHAR(64) NOT NULL PRIMARY KEY, version INTEGER NOT NULL)"
)


async def _tables(db: Database) -> set[str]:
    where = (
        "table_schema = current_schema()"
        if db.dialect.name == "postgresql"
        else "table_schema = DATABASE()"
    )
    rows = await db.fetch(
        Sql.of(f"SELECT table_name FROM information_schema.tables WHERE {where}"),  # noqa: S608
        primary=True,
    )
    return {str(row.values[0]).lower() for row in rows}


async def schema_version(db: Database | Transaction, application: str) -> int | None:
    """``application``'s version in ``mailwarden_schema`` (None: no row; the table
    must exist)."""
    query = Sql.of("SELECT version FROM mailwarden_schema WHERE application = ", Param(application))
    row = await (
        db.fetchrow(query, primary=True) if isinstance(db, Database) else db.fetchrow(query)
    )
    return None if row is None else int(row.values[0])


async def ensure_schema(db: Database, *, create: bool, where: str) -> int:
    """Check (and with ``create``, create or upgrade) the schema; its version.

    DirectoryMissing: no schema and not ``create``, or an older one (run ``mailwarden
    init``). DirectoryUnavailable: a newer schema, or a database with other tables.
    """
    tables = await _tables(db)
    version = await schema_version(db, APPLICATION) if "mailwarden_schema" in tables else None
    if version is None and {t for t in tables if not t.startswith(OTHER_PARTS)}:
        raise DirectoryUnavailable(
            f"{where}: not a mailwarden database (it has tables but no mailwarden_schema "
            f"version): give mailwarden a database of its own"
        )
    if version is not None and version > SCHEMA_VERSION:
        raise DirectoryUnavailable(
            f"{where}: schema version {version} is newer than this mailwarden supports "
            f"({SCHEMA_VERSION}); upgrade mailwarden"
        )
    if version == SCHEMA_VERSION:
        return version
    if not create:
        if version is None:
            raise DirectoryMissing(f"{where}: no mailwarden tables; run 'mailwarden init'")
        raise DirectoryMissing(
            f"{where}: schema version {version} is older than {SCHEMA_VERSION}; "
            "run 'mailwarden init' to upgrade it"
        )
    for target in range((version or 0) + 1, SCHEMA_VERSION + 1):
        await _apply(db, target)
    return SCHEMA_VERSION


async def _apply(db: Database, target: int) -> None:
    """Migration step ``target`` of the own schema (:func:`apply_step`)."""
    await apply_step(db, APPLICATION, target, MIGRATIONS[target - 1](db.dialect))


async def apply_step(
    db: Database, application: str, target: int, statements: Sequence[str]
) -> None:
    """Run ``statements`` and set ``application``'s version to ``target`` (module
    docstring: atomic on PostgreSQL, idempotent statements on MariaDB), unless another
    ``init`` brought it there meanwhile."""
    pg = db.dialect.name == "postgresql"
    async with db.transaction() as tx:
        if pg:
            await tx.execute(Sql.of("SELECT pg_advisory_xact_lock(", Param(_PG_LOCK), ")"))
        else:
            await tx.execute(Sql.of("SELECT GET_LOCK(", Param(_MARIADB_LOCK), ", 30)"))
        await tx.execute(Sql.of(_VERSION_TABLE))
        current = await schema_version(tx, application) or 0
        if current < target:
            for statement in statements:
                await tx.execute(Sql.of(statement))
            await tx.execute(
                Sql.of("DELETE FROM mailwarden_schema WHERE application = ", Param(application))
            )
            await tx.execute(
                Sql.of(
                    "INSERT INTO mailwarden_schema (application, version) VALUES (",
                    Param(application),
                    ", ",
                    Param(target),
                    ")",
                )
            )
        # A failure above drops the connection, which releases MariaDB's lock too.
        if not pg:
            await tx.execute(Sql.of("SELECT RELEASE_LOCK(", Param(_MARIADB_LOCK), ")"))
